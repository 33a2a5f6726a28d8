"""Teachers: the entry-point registry, plugins, built-in teachers and SAM checkpoints."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from boxes2pixels.cli.main import app
from boxes2pixels.errors import Boxes2PixelsError, CheckpointError, TeacherNotFoundError
from boxes2pixels.inference.openvino_cache import openvino_available
from boxes2pixels.inference.precision import choose_precision
from boxes2pixels.teachers import (
    TeacherDependencyError,
    available_teachers,
    load_teacher,
)
from boxes2pixels.teachers.base import box_masks, clip_to_boxes, remove_small_regions
from boxes2pixels.teachers.checkpoints import resolve_checkpoint, sha256_file

BUILTINS = {
    "sam": "boxes2pixels.teachers.sam:SamTeacher",
    "mobile-sam": "boxes2pixels.teachers.sam:MobileSamTeacher",
    "grabcut": "boxes2pixels.teachers.grabcut:GrabCutTeacher",
    "box": "boxes2pixels.teachers.box:BoxTeacher",
}


@pytest.fixture(scope="session")
def mobile_sam_ckpt(sam_checkpoint) -> Path:
    return sam_checkpoint("vit_t")


@pytest.fixture(scope="session")
def sam_vit_b_ckpt(sam_checkpoint) -> Path:
    return sam_checkpoint("vit_b")


def _make_distribution(root: Path, dist: str, version: str, entry_points: dict[str, str]) -> None:
    """An installed distribution in ``root``: a ``.dist-info`` folder with entry points."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = "\n".join(f"{name} = {value}" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[boxes2pixels.teachers]\n{lines}\n", encoding="utf-8")


PLUGIN_SOURCE = textwrap.dedent(
    '''
    import numpy as np

    class HalfBoxTeacher:
        """Fills the left half of each box."""

        name = "half"

        def __init__(self, fill: bool = True):
            self.fill = fill

        def segment(self, image, boxes):
            out = np.zeros((len(boxes), *image.shape[:2]), dtype=bool)
            for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
                out[i, y0:y1, x0:(x0 + x1) // 2] = self.fill
            return out

        def describe(self):
            return {"options": {"fill": self.fill}}

    class NotATeacher:
        pass
    '''
)


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A separate installed distribution 'acme-teachers' 1.2 registering teacher 'acme'."""
    (tmp_path / "acme_teachers").mkdir()
    (tmp_path / "acme_teachers" / "__init__.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    _make_distribution(tmp_path, "acme-teachers", "1.2", {"acme": "acme_teachers:HalfBoxTeacher"})
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("acme_teachers", None)


# ------------------------------------------------------------------------------- registry
def test_builtins_are_registered_through_entry_points() -> None:
    found = available_teachers()
    for name, value in BUILTINS.items():
        assert found[name].value == value
        assert found[name].distribution == "boxes2pixels"


def test_listing_teachers_imports_no_backend() -> None:
    code = (
        "import sys; from boxes2pixels.teachers import available_teachers; "
        "available_teachers(); "
        "print(sorted(m for m in sys.modules if m in ('torch', 'cv2', 'segment_anything', "
        "'mobile_sam', 'boxes2pixels.teachers.sam')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_teacher_from_another_distribution_is_found(plugin_dist: Path) -> None:
    entry = available_teachers()["acme"]
    assert (entry.distribution, entry.version) == ("acme-teachers", "1.2")
    assert "acme_teachers" not in sys.modules  # listing does not import it
    teacher = load_teacher("acme", fill=True)
    masks = teacher.segment(np.zeros((10, 10, 3), np.uint8), np.array([[0, 0, 10, 4]], np.float32))
    assert masks.sum() == 5 * 4 and masks[0, :4, :5].all()
    result = CliRunner().invoke(app, ["teachers"])
    assert result.exit_code == 0, result.output
    assert "acme" in result.output and "acme-teachers" in result.output


def test_duplicate_teacher_name_is_an_error(plugin_dist: Path) -> None:
    _make_distribution(plugin_dist, "other-box", "0.1", {"box": "acme_teachers:HalfBoxTeacher"})
    with pytest.raises(
        Boxes2PixelsError,
        match=r"registered twice.*(other-box.*boxes2pixels|boxes2pixels.*other-box)",
    ):
        available_teachers()


def test_object_path_loads_an_unregistered_teacher(plugin_dist: Path) -> None:
    teacher = load_teacher("acme_teachers:HalfBoxTeacher")
    assert teacher.describe() == {"options": {"fill": True}}
    with pytest.raises(TeacherNotFoundError, match="does not implement the Teacher protocol"):
        load_teacher("acme_teachers:NotATeacher")
    with pytest.raises(TeacherNotFoundError, match="has no attribute 'Nope'"):
        load_teacher("acme_teachers:Nope")


def test_unknown_teacher_and_bad_options() -> None:
    with pytest.raises(TeacherNotFoundError, match=r"no teacher named 'nope'.*box.*grabcut"):
        load_teacher("nope")
    with pytest.raises(Boxes2PixelsError, match=r"does not take option.*checkpoint.*shrink"):
        load_teacher("box", checkpoint="x.pth")


def test_missing_package_gives_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "needs_sam.py").write_text("import segment_anything_xyz\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TeacherDependencyError, match="pip install segment_anything_xyz"):
        load_teacher("needs_sam:Teacher")
    monkeypatch.setitem(sys.modules, "mobile_sam", None)  # simulate a missing package
    with pytest.raises(TeacherDependencyError, match="pip install mobilesam-mirror"):
        load_teacher("mobile-sam", checkpoint="unused.pt")


# ------------------------------------------------------------------------- weight-free ones
def test_box_teacher_fills_pixel_centres_inside_boxes() -> None:
    image = np.zeros((8, 10, 3), np.uint8)
    masks = load_teacher("box").segment(image, np.array([[1.0, 2.0, 4.0, 5.0]], np.float32))
    expected = np.zeros((8, 10), bool)
    expected[2:5, 1:4] = True
    np.testing.assert_array_equal(masks[0], expected)
    shrunk = load_teacher("box", shrink=1).segment(image, np.array([[0, 0, 6, 6]], np.float32))
    assert shrunk[0].sum() == 16 and shrunk[0, 1:5, 1:5].all()


def test_grabcut_finds_a_bright_blob_inside_its_box() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(20, 50, size=(80, 100, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:80, :100]
    blob = (xx - 50) ** 2 / 15**2 + (yy - 40) ** 2 / 10**2 <= 1
    image[blob] = (220, 200, 180)
    masks = load_teacher("grabcut").segment(image, np.array([[30, 25, 71, 56]], np.float32))
    inter = (masks[0] & blob).sum()
    iou = inter / (masks[0] | blob).sum()
    assert iou > 0.8
    assert not masks[0][:, :29].any()  # nothing outside the box


def test_grabcut_falls_back_to_the_box_when_it_cannot_run() -> None:
    image = np.full((20, 20, 3), 128, np.uint8)
    teacher = load_teacher("grabcut")
    masks = teacher.segment(image, np.array([[0, 0, 20, 20], [5, 5, 7, 7]], np.float32))
    assert masks[0].all() and masks[1].sum() == 4
    assert teacher.fallbacks == 2


def test_mask_postprocessing_helpers() -> None:
    masks = np.zeros((1, 20, 20), bool)
    masks[0, 2:12, 2:12] = True  # 100 px region
    masks[0, 15:17, 15:17] = True  # 4 px region
    np.testing.assert_array_equal(
        remove_small_regions(masks, 5)[0],
        box_masks(np.array([[2, 2, 12, 12]], np.float32), 20, 20)[0],
    )
    clipped = clip_to_boxes(masks, np.array([[4, 4, 8, 8]], np.float32), margin=1)
    assert clipped[0].sum() == 36 and clipped[0, 3:9, 3:9].all()


# --------------------------------------------------------------------------- SAM teachers
def test_mobile_sam_one_encoder_pass_for_all_boxes(mobile_sam_ckpt: Path) -> None:
    teacher = load_teacher("mobile-sam", checkpoint=str(mobile_sam_ckpt), device="cpu")
    calls = {"encoder": 0, "decoder": 0}
    encoder = teacher.predictor.model.image_encoder
    decoder = teacher.predictor.model.mask_decoder
    encoder.register_forward_hook(lambda *a: calls.__setitem__("encoder", calls["encoder"] + 1))
    decoder.register_forward_hook(lambda *a: calls.__setitem__("decoder", calls["decoder"] + 1))
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3)).astype(np.uint8)
    boxes = np.array([[2, 2, 20, 20], [30, 10, 60, 40], [5, 25, 25, 45]], np.float32)
    masks = teacher.segment(image, boxes)
    assert masks.shape == (3, 48, 64) and masks.dtype == bool
    assert calls == {"encoder": 1, "decoder": 1}
    info = teacher.describe()
    assert info["options"]["model_type"] == "vit_t"
    assert info["sha256"] == sha256_file(mobile_sam_ckpt)
    # the defaults: auto precision; OpenVINO runs the encoder on the CPU when it is installed
    assert info["options"]["precision"] == choose_precision(torch.device("cpu")).precision
    assert info["options"]["runtime"] == ("openvino" if openvino_available() else "torch")

    teacher.clip_margin, teacher.multimask = 2.0, True
    clipped = teacher.segment(image, boxes)
    allowed = box_masks(boxes, 48, 64, margin=2)
    assert not (clipped & ~allowed).any()


def test_sam_vit_b_random_checkpoint_loads_and_type_is_inferred(sam_vit_b_ckpt: Path) -> None:
    teacher = load_teacher("sam", checkpoint=str(sam_vit_b_ckpt), device="cpu", runtime="torch")
    assert teacher.model_type == "vit_b"
    weight = teacher.predictor.model.image_encoder.patch_embed.proj.weight
    saved = torch.load(sam_vit_b_ckpt, weights_only=True)["image_encoder.patch_embed.proj.weight"]
    assert torch.equal(weight.cpu(), saved)
    with pytest.raises(CheckpointError, match=r"looks like a vit_b checkpoint.*sam_vit_l_0b3195"):
        load_teacher("sam", checkpoint=str(sam_vit_b_ckpt), model_type="vit_l")
    with pytest.raises(CheckpointError, match="--teacher sam --model-type vit_b"):
        load_teacher("mobile-sam", checkpoint=str(sam_vit_b_ckpt))


def test_wrong_or_missing_checkpoints_give_one_paragraph(
    mobile_sam_ckpt: Path, tmp_path: Path
) -> None:
    with pytest.raises(CheckpointError, match=r"looks like a vit_t.*--teacher mobile-sam") as err:
        load_teacher("sam", checkpoint=str(mobile_sam_ckpt), model_type="vit_b")
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match=r"needs a checkpoint.*sam_vit_b_01ec64\.pth.*https"):
        load_teacher("sam")
    with pytest.raises(CheckpointError, match=r"does not exist.*mobile_sam\.pt.*MobileSAM"):
        load_teacher("mobile-sam", checkpoint=str(tmp_path / "missing.pt"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"garbage\.pth: cannot load weights.*mobile_sam\.pt"):
        load_teacher("mobile-sam", checkpoint=str(garbage))
    partial = tmp_path / "partial.pt"
    state = torch.load(mobile_sam_ckpt, weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("mask_decoder.")}, partial)
    with pytest.raises(CheckpointError, match="does not fit the mobile-sam teacher") as err:
        load_teacher("mobile-sam", checkpoint=str(partial))
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="has sha256"):
        resolve_checkpoint(mobile_sam_ckpt, "vit_t", "mobile-sam", expected_sha256="0" * 64)


def test_checkpoint_with_pickled_code_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pth"
    torch.save({"x": torch.zeros(1), "f": Path("/etc/passwd")}, evil)
    with pytest.raises(CheckpointError, match="holds Python objects other than tensors") as err:
        load_teacher("mobile-sam", checkpoint=str(evil))
    assert "weights_only" not in str(err.value)  # never suggest loading it unsafely
    assert "\n" not in str(err.value)


def test_hub_checkpoint_address(monkeypatch: pytest.MonkeyPatch, mobile_sam_ckpt: Path) -> None:
    import huggingface_hub

    seen = {}

    def fake_download(
        repo_id: str, filename: str, revision: str | None = None, repo_type: str = "model"
    ) -> str:
        seen.update(repo_id=repo_id, filename=filename, revision=revision)
        return str(mobile_sam_ckpt)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    resolved = resolve_checkpoint("hf://acme/sam-weights@v1/w/mobile_sam.pt", "vit_t", "mobile-sam")
    assert seen == {"repo_id": "acme/sam-weights", "filename": "w/mobile_sam.pt", "revision": "v1"}
    resolve_checkpoint("hf://acme/sam-weights@refs/pr/1/mobile_sam.pt", "vit_t", "mobile-sam")
    assert seen["revision"] == "refs/pr/1"
    assert seen["filename"] == "mobile_sam.pt"
    assert resolved.path == mobile_sam_ckpt
    with pytest.raises(CheckpointError, match="not a Hub checkpoint address"):
        resolve_checkpoint("hf://only-owner", "vit_t", "mobile-sam")


def test_hub_checkpoint_offline_is_a_checkpoint_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"Cannot get checkpoint 'hf://acme/x/mobile_sam.pt'"):
        resolve_checkpoint("hf://acme/x/mobile_sam.pt", "vit_t", "mobile-sam")
