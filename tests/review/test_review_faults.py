"""`b2p review` never gives a wrong result with exit code 0 (issue 19): masks of another size,
bad --weights and an --out inside the dataset or the masks are refused before anything is
written, and a rerun into an earlier output folder leaves it as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from boxes2pixels.data.labelmaps import write_mask


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, labelled_dataset: Callable) -> Path:
    """``ds/`` (3 train images of 96×64) and the box teacher's ``masks/``, built once."""
    return labelled_dataset(
        tmp_path_factory.mktemp("review-faults"), train=3, val=0, splits="train"
    )


@pytest.fixture
def work(base: Path, tmp_path: Path, fresh_copy: Callable) -> Path:
    """A fresh copy of ``base`` in this test's folder."""
    return fresh_copy(base, tmp_path)


def review(invoke_cli: Callable, work: Path, out: Path | str, *more: str):
    """``b2p review ds/data.yaml --masks masks --out OUT --device cpu``."""
    return invoke_cli(
        "review", work / "ds" / "data.yaml", "--masks", work / "masks", "--out", out,
        "--device", "cpu", *more,
    )  # fmt: skip


def test_a_mask_of_another_size_is_named_before_anything_is_written(
    work: Path, invoke_cli: Callable, tree_digest: Callable
) -> None:
    mask = work / "masks" / "train" / "train_00001.png"
    write_mask(mask, np.zeros((32, 48), np.uint8))
    before = tree_digest(work)
    code, text = review(invoke_cli, work, work / "out")
    assert code == 1, text
    assert str(mask) in text and "48×32" in text and "96×64" in text
    assert not (work / "out").exists()
    assert tree_digest(work) == before


def test_a_rerun_that_fails_keeps_the_earlier_outputs(
    work: Path, invoke_cli: Callable, tree_digest: Callable
) -> None:
    out = work / "out"
    code, text = review(invoke_cli, work, out)
    assert code == 0, text
    assert (out / "correct" / "annotations.json").is_file()  # the box teacher fills its boxes
    write_mask(work / "masks" / "train" / "train_00002.png", np.zeros((64, 95), np.uint8))
    before = tree_digest(work)
    code, text = review(invoke_cli, work, out, "--weights", "fragmentation=0")
    assert code == 1, text
    assert "train_00002.png" in text and "95×64" in text
    assert tree_digest(work) == before


def test_bundle_images_are_complete_regular_copies(work: Path, invoke_cli: Callable) -> None:
    code, text = review(invoke_cli, work, work / "out")
    assert code == 0, text
    copies = sorted((work / "out" / "correct" / "images").rglob("*.jpg"))
    assert copies
    for copy in copies:
        original = work / "ds" / "images" / copy.relative_to(copy.parents[1])
        assert not copy.is_symlink() and copy.read_bytes() == original.read_bytes()
    assert not list((work / "out").rglob(".*.tmp*"))


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("coverage=nan", "nan"),
        ("coverage=inf", "inf"),
        ("missed=-infinity", "-infinity"),
        ("teacher=-0.5", "-0.5"),
        ("colour=1", "colour"),
        (
            "coverage=0,extent=0,fragmentation=0,holes=0,offset=0,spill=0,appearance=0,"
            "teacher=0,disagreement=0,missed=0",
            "every weight is 0",
        ),
        ("coverage", "coverage"),
        ("coverage=1,coverage=5", "given twice"),
        (  # only signals this run cannot measure without --model
            "coverage=0,extent=0,fragmentation=0,holes=0,offset=0,spill=0,appearance=0,"
            "teacher=0,disagreement=2,missed=1",
            "disagreement needs --model",
        ),
    ],
)
def test_bad_weights_are_refused(
    spec: str, named: str, work: Path, invoke_cli: Callable, tree_digest: Callable
) -> None:
    before = tree_digest(work)
    code, text = review(invoke_cli, work, work / "out", "--weights", spec)
    assert code == 1, text
    assert "--weights" in text and named in text
    assert not (work / "out").exists()
    assert tree_digest(work) == before


@pytest.mark.parametrize(
    ("out", "named"),
    [
        ("ds", "ds"),
        ("ds/images/train/review", "ds/images/train"),
        ("masks", "masks"),
        ("masks/train/review", "masks"),
        ("masks/../ds/images/train", "ds/images/train"),
    ],
)
def test_out_in_the_dataset_or_the_masks_is_refused(
    out: str,
    named: str,
    work: Path,
    monkeypatch: pytest.MonkeyPatch,
    invoke_cli: Callable,
    tree_digest: Callable,
) -> None:
    monkeypatch.chdir(work)
    before = tree_digest(work)
    code, text = review(invoke_cli, work, out)
    assert code == 1, text
    assert f"--out {out} " in text and f"({(work / named).resolve()})" in text
    assert tree_digest(work) == before


def test_a_model_signal_weighted_without_a_model_is_named(work: Path, invoke_cli: Callable) -> None:
    code, text = review(invoke_cli, work, work / "out", "--weights", "disagreement=5")
    assert code == 0, text
    assert "--weights disagreement" in text and "needs --model" in text
    code, text = review(invoke_cli, work, work / "out2")  # the defaults name it too: no note
    assert code == 0 and "needs --model" not in text


def test_review_split_refuses_weights_it_cannot_measure(work: Path) -> None:
    """The Python API refuses as the command does: without a model and without teacher scores,
    weights on disagreement and teacher alone would score every image 0."""
    from boxes2pixels.errors import ConfigError
    from boxes2pixels.review import DoubtSettings, review_split

    only = {s: 0.0 for s in ("coverage", "extent", "fragmentation", "holes", "offset", "spill",
                             "appearance", "missed")}  # fmt: skip
    settings = DoubtSettings(weights={**only, "teacher": 1.0, "disagreement": 1.0})
    with pytest.raises(ConfigError, match="teacher needs the teacher's scores"):
        review_split(work / "ds" / "data.yaml", work / "masks", settings=settings)
    scores = {"train/x.png": [0.9]}  # with scores, teacher can be measured: it runs
    queue = review_split(
        work / "ds" / "data.yaml", work / "masks", settings=settings, teacher_scores=scores
    )
    assert queue.images
