"""Hugging Face Hub conventions: ``hf://`` addresses, revisions, offline errors, what a saved
model carries (no local paths; base_model, datasets and model-index in the card).

Hub repositories are served offline from a Hugging Face cache laid out on disk, so the real
``huggingface_hub`` download code runs (also under the declared minimum versions).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard, constants, file_download
from PIL import Image
from typer.testing import CliRunner

from boxes2pixels.cli.main import app
from boxes2pixels.errors import CheckpointError, ConfigError
from boxes2pixels.hub import HubPath, parse_hf_uri
from boxes2pixels.inference import load_model
from boxes2pixels.student import Student, no_backbone_weights

REPO = "acme/blade-defects"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("hf://o/r", ("model", "o/r", None, "")),
        ("hf://o/r/w/sam.pth", ("model", "o/r", None, "w/sam.pth")),
        ("hf://o/r@v1.0/w/sam.pth", ("model", "o/r", "v1.0", "w/sam.pth")),
        ("hf://o/r@refs/pr/1/sam.pth", ("model", "o/r", "refs/pr/1", "sam.pth")),
        ("hf://o/r@refs/pr/12", ("model", "o/r", "refs/pr/12", "")),
        ("hf://o/r@refs/convert/parquet/d/x", ("model", "o/r", "refs/convert/parquet", "d/x")),
        ("hf://o/r@feature%2Fx/m.pth", ("model", "o/r", "feature/x", "m.pth")),
        ("hf://datasets/o/r@main/x.json", ("dataset", "o/r", "main", "x.json")),
        ("hf://spaces/o/r/app.py", ("space", "o/r", None, "app.py")),
        ("hf://models/o/r/x.pt", ("model", "o/r", None, "x.pt")),
        ("hf://o/r/sam.pth@v1", ("model", "o/r", None, "sam.pth@v1")),  # '@' in a file name
    ],
)
def test_hf_uri_parsed_like_huggingface_hub(spec: str, expected: tuple) -> None:
    parsed = parse_hf_uri(spec)
    assert parsed == HubPath(*expected)
    assert parse_hf_uri(str(parsed)) == parsed


@pytest.mark.parametrize("spec", ["hf://o", "hf://dataset/o/r/x", "hf://o/r@/x", "o/r/x"])
def test_malformed_hf_uri_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="is not a Hub address"):
        parse_hf_uri(spec)


def _student(**kwargs) -> Student:
    import warnings

    from boxes2pixels.student.model import RandomBackboneWarning

    kwargs.setdefault("backbone_init", "random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomBackboneWarning)
        return Student(feature_indices=[0], decoder_channels=8, imgsz=28, **kwargs)


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face cache folder with REPO at revisions ``v1`` (2 classes) and
    ``refs/pr/1`` (4 classes)."""
    cache = tmp_path_factory.mktemp("hf-cache")
    repo = cache / f"models--{REPO.replace('/', '--')}"
    for revision, classes, commit in (("v1", 2, "1" * 40), ("refs/pr/1", 4, "2" * 40)):
        _student(num_classes=classes).save_pretrained(repo / "snapshots" / commit)
        ref = repo / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    return cache


@pytest.fixture
def hub_cache(hub_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``hub_folder`` as the Hugging Face cache, offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_folder))
    # huggingface_hub < 1.0 reads the default cache folder from its own import-time copy
    monkeypatch.setattr(file_download, "HF_HUB_CACHE", str(hub_folder), raising=False)
    return hub_folder


def test_revisions_of_a_hub_id(hub_cache: Path) -> None:
    assert Student.from_pretrained(REPO, revision="v1").num_classes == 2
    assert Student.from_pretrained(REPO, revision="refs/pr/1").num_classes == 4
    assert load_model(REPO, revision="refs/pr/1", device="cpu").num_classes == 4
    assert load_model(f"hf://{REPO}@v1", device="cpu").num_classes == 2
    with pytest.raises(CheckpointError, match="contradicts"):
        load_model(f"hf://{REPO}@v1", revision="v2", device="cpu")


def test_offline_error_names_repo_revision_and_file(hub_cache: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        load_model(REPO, revision="v9", device="cpu")
    message = str(info.value)
    for part in (REPO, "'v9'", "config.json", "HF_HUB_OFFLINE"):
        assert part in message


def test_predict_takes_a_revision(hub_cache: Path, tmp_path: Path) -> None:
    Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "pred"
    args = ["predict", REPO, str(tmp_path / "a.png"), "--out", str(out), "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--revision", "refs/pr/1"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "b2p_predict.json").read_text())["class_names"][3] == "class_2"


def test_from_pretrained_accepts_what_older_hubs_pass(tmp_path: Path) -> None:
    _student(num_classes=2).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    # huggingface_hub 0.2x-0.36 call _from_pretrained with these keywords, always
    model = Student._from_pretrained(
        model_id=str(tmp_path),
        revision=None,
        cache_dir=None,
        force_download=False,
        proxies=None,
        resume_download=None,
        local_files_only=False,
        token=None,
        config=config,
        **config,
    )
    assert model.num_classes == 2


def test_saved_model_has_no_local_paths_and_records_the_weights(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = _student(num_classes=2)
    weights = tmp_path / "weights" / "dinov2_backbone.safetensors"
    weights.parent.mkdir()
    save_file(source.backbone.model.state_dict(), str(weights))
    model = _student(num_classes=2, backbone_init="file", backbone_weights=str(weights))
    model.save_pretrained(tmp_path / "saved", metrics={"miou": 0.5, "anomaly_miou": 0.25})
    config_text = (tmp_path / "saved" / "config.json").read_text()
    card_text = (tmp_path / "saved" / "README.md").read_text()
    for text in (config_text, card_text):
        assert str(tmp_path) not in text
    record = json.loads(config_text)["backbone_weights"]
    assert record["name"] == "dinov2_backbone.safetensors"
    assert len(record["sha256"]) == 64
    assert Student.from_pretrained(tmp_path / "saved").config["backbone_weights"] == record
    with pytest.raises(ConfigError, match="records a weights file"):
        _student(num_classes=2, backbone_init="file", backbone_weights=record)
    with no_backbone_weights():  # an older config with a path loads, keeping only the name
        old = Student(backbone_init="file", backbone_weights="/data/w/x.pth", feature_indices=[0])
    assert old.config["backbone_weights"] == {"name": "x.pth", "sha256": None}


def test_model_card_metadata(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    weights = tmp_path / "w.safetensors"
    save_file(_student().backbone.model.state_dict(), str(weights))
    model = _student(backbone_init="file", backbone_weights=str(weights))
    model.save_pretrained(
        tmp_path / "m",
        metrics={"val_miou": 0.61, "val_anomaly_miou": 0.42, "epoch": 3},
        model_card_kwargs={"dataset": "acme/blade-photos"},
    )
    data = ModelCard.load(tmp_path / "m" / "README.md").data
    # a local weights file: nothing proves it holds timm/vit_small_patch14_dinov2.lvd142m
    assert data.base_model is None
    assert data.datasets == ["acme/blade-photos"]
    results = {r.metric_type: r for r in data.eval_results}
    assert set(results) == {"mean_iou", "anomaly_miou"}  # the Hub's id of mIoU
    assert results["mean_iou"].metric_value == pytest.approx(0.61)
    assert results["mean_iou"].metric_name == "miou"
    assert results["mean_iou"].dataset_split == "validation"
    from boxes2pixels.student.card import base_model_id

    class Pretrained:  # what base_model_id reads of a Hub-pretrained student
        random_backbone, backbone_init = False, "pretrained"
        backbone = model.backbone

    assert base_model_id(Pretrained()) == "timm/vit_small_patch14_dinov2.lvd142m"
    random_model = _student()
    random_model.save_pretrained(tmp_path / "r")
    data = ModelCard.load(tmp_path / "r" / "README.md").data
    assert data.base_model is None and not data.eval_results
    shutil.rmtree(tmp_path / "r")
