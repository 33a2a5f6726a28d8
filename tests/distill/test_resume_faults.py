"""A training run killed at any point of an epoch's saving can be resumed (issue 19)."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest

import boxes2pixels.distill.loop as loop


class Killed(KeyboardInterrupt):
    """What Ctrl-C or a scheduler's SIGINT raises in the middle of a write."""


@pytest.fixture
def dataset(tmp_path: Path, make_square_dataset) -> Path:
    return make_square_dataset(tmp_path / "ds", n_train=2, n_val=1, size=28)


def _train(invoke_cli, dataset: Path, out: Path, *more: str) -> tuple[int, str]:
    return invoke_cli(
        "train", dataset / "data.yaml", "--masks", dataset / "masks", "--out", out,
        "--epochs", "2", "--imgsz", "28", "--batch", "2", "--backbone-init", "random",
        "--backbone-mode", "full", "--device", "cpu", "--precision", "fp32", "--workers", "0",
        *more,
    )  # fmt: skip


def _epochs(run: Path) -> list[str]:
    path = run / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as fh:
        return [row["epoch"] for row in csv.DictReader(fh)]


@pytest.mark.parametrize("kill_epoch", [1, 2])
def test_a_kill_while_saving_the_checkpoint_is_resumed(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, invoke_cli, tree_digest,
    kill_epoch: int,
) -> None:  # fmt: skip
    before = tree_digest(dataset)
    real_save = loop.save_checkpoint
    calls = {"n": 0}

    def save_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == kill_epoch:
            raise Killed
        return real_save(*args, **kwargs)

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    run = tmp_path / "run"
    code, _ = _train(invoke_cli, dataset, run)
    assert code == 130
    # no metrics row announces an epoch whose checkpoint was never written
    assert _epochs(run) == [str(e) for e in range(1, kill_epoch)]

    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    code, output = _train(invoke_cli, dataset, run, "--resume")
    assert code == 0, output
    assert ("starting from epoch 1" in output) == (kill_epoch == 1)
    assert _epochs(run) == ["1", "2"]
    assert (run / "best" / "model.safetensors").is_file()
    assert tree_digest(dataset) == before


def test_resume_never_replaces_a_folder_that_is_not_a_run(
    dataset: Path, tmp_path: Path, invoke_cli, tree_digest
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("inspection notes")
    before = tree_digest(folder)
    code, output = _train(invoke_cli, dataset, folder, "--resume")
    assert code == 1
    assert str(folder) in output and "notes.txt" in output and "Traceback" not in output
    assert tree_digest(folder) == before


def test_a_better_epoch_keeps_the_files_added_to_the_earlier_best(tmp_path: Path) -> None:
    """`b2p export` writes RUN/best/model.onnx by default; a resumed run's better epoch
    replaced best/ whole and deleted the export without a word."""
    from boxes2pixels.distill.checkpoint import save_best

    class Saved:
        def save_pretrained(self, path: Path, metrics: dict) -> None:
            path.mkdir()
            (path / "model.safetensors").write_text(f"epoch {metrics['epoch']}")

    run = tmp_path / "run"
    run.mkdir()
    save_best(Saved(), run, {"epoch": 1})  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing added: no warning, nothing kept
        save_best(Saved(), run, {"epoch": 2})  # type: ignore[arg-type]
    assert not (run / "replaced").exists()
    (run / "best" / "model.onnx").write_bytes(b"export of epoch 2")
    with pytest.warns(UserWarning, match=r"model\.onnx.*Export the new best again"):
        save_best(Saved(), run, {"epoch": 3})  # type: ignore[arg-type]
    assert sorted(p.name for p in (run / "best").iterdir()) == ["model.safetensors"]
    assert (run / "best" / "model.safetensors").read_text() == "epoch 3"
    kept = run / "replaced" / "best-before-epoch-3" / "model.onnx"
    assert kept.read_bytes() == b"export of epoch 2"
