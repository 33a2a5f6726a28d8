"""`b2p demo --quick` end to end, the checkpoint rule, and the report's pictures and choices
in isolation."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from boxes2pixels import demo as demo_module
from boxes2pixels.cli.main import app
from boxes2pixels.data.labelmaps import class_colour
from boxes2pixels.demo import backbone as demo_backbone
from boxes2pixels.demo.panels import choose_panel_images, panel_scale, render_panel
from boxes2pixels.demo.report import CURVES_DPI, CURVES_FIGSIZE
from boxes2pixels.evaluate import evaluate
from boxes2pixels.viz import ERROR_COLOURS

QUICK = demo_module.DemoSettings.for_mode(quick=True)


def _decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One `b2p demo --quick` run (offline: the backbone must come out random)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(
        demo_backbone,
        "pretrained_backbone_available",
        lambda name: (False, "the test offers no pretrained weights"),
    )
    out = tmp_path_factory.mktemp("demo") / "b2p-demo"
    threads = torch.get_num_threads()
    # one thread: two OpenMP threads on a 2-core machine busy with other work wait on each
    # other and run many times slower than one
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(
            app, ["demo", "--out", str(out), "--quick", "--quiet", "--device", "cpu"]
        )
    finally:
        mp.undo()
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return out, result.output


def _md_row(md: str, label: str) -> list[str]:
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no table row '{label}' in report.md")


@pytest.mark.slow
def test_quick_demo_writes_reports_that_state_random_weights(quick_demo: tuple[Path, str]) -> None:
    out, output = quick_demo
    html, md = out / "report.html", out / "report.md"
    assert html.is_file() and md.is_file()
    first = "\n".join(md.read_text(encoding="utf-8").splitlines()[:5]).lower()
    assert "random weights" in first
    assert "demonstrates the pipeline, not the paper's accuracy" in first
    page = html.read_text(encoding="utf-8")
    before_sections = page[: page.index("<h2>")].lower()
    assert "random weights" in before_sections
    assert "report.html" in output and "student" in output


@pytest.mark.slow
def test_quick_demo_metrics_equal_evaluate_on_the_same_files(quick_demo: tuple[Path, str]) -> None:
    out, _ = quick_demo
    md = (out / "report.md").read_text(encoding="utf-8")
    gt = out / "data" / "gt_masks"
    keys = ("miou", "anomaly_miou", "anomaly_f1", "binary_iou", "binary_f1")
    keys += ("binary_precision", "binary_recall")
    for label, pred in (
        ("student", out / "predictions" / "test"),
        ("teacher pseudo-masks", out / "pseudo_masks"),
    ):
        d = evaluate(pred=pred, masks=gt, split="test", progress=False).to_dict()
        expected = ["-" if d[k] is None else f"{d[k]:.4f}" for k in keys]
        assert _md_row(md, label) == expected
    n_test = len(list((gt / "test").glob("*.png")))
    assert n_test == QUICK.test
    assert len(list((out / "predictions" / "test").glob("*.png"))) == n_test


@pytest.mark.slow
def test_quick_demo_embeds_pictures_of_the_expected_sizes(quick_demo: tuple[Path, str]) -> None:
    out, _ = quick_demo
    page = (out / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == 1 + QUICK.panels
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    pictures = [_decode_png(base64.b64decode(s.split(",", 1)[1])) for s in sources]
    curves, panels = pictures[0], pictures[1:]
    assert curves.shape[:2] == (
        round(CURVES_FIGSIZE[1] * CURVES_DPI),
        round(CURVES_FIGSIZE[0] * CURVES_DPI),
    )
    w, h = QUICK.size
    s = panel_scale(h)
    for panel in panels:
        ph, pw = panel.shape[:2]
        assert 5 * w * s <= pw <= 5 * w * s + 4 * max(2, h * s // 100)
        assert ph > h * s  # titles and legends around the tiles
    # the Markdown shows the same pictures from files next to it
    md = (out / "report.md").read_text(encoding="utf-8")
    files = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(files) == len(sources)
    for name, src in zip(files, sources, strict=True):
        assert (out / name).read_bytes() == base64.b64decode(src.split(",", 1)[1])


@pytest.mark.slow
def test_quick_demo_panels_include_an_unboxed_defect(quick_demo: tuple[Path, str]) -> None:
    out, _ = quick_demo
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "(no box)" in md


@pytest.mark.slow
def test_rerun_reuses_outputs_and_other_settings_are_refused(quick_demo: tuple[Path, str]) -> None:
    out, _ = quick_demo
    weights = out / "runs" / "student" / "best" / "model.safetensors"
    # a finished demo keeps no training checkpoint, and a rerun does not need one
    assert not (out / "runs" / "student" / "last.ckpt").exists()
    stamp = weights.stat().st_mtime_ns
    scores = (out / "report.md").read_text(encoding="utf-8").split("## Training curves")[0]
    result = demo_module.run_demo(out, quick=True, device="cpu", progress=False)
    assert {"data", "label", "train", "predict"} <= set(result.reused)
    assert weights.stat().st_mtime_ns == stamp
    assert (out / "report.md").read_text(encoding="utf-8").split("## Training curves")[0] == scores
    assert not (out / "runs" / "student" / "last.ckpt").exists()
    assert result.backbone_init == "random" and result.backbone_mode == "full"
    assert result.evaluations_agree
    refused = CliRunner().invoke(app, ["demo", "--out", str(out), "--quick", "--seed", "1"])
    assert refused.exit_code == 1
    assert "--overwrite" in refused.output


@pytest.mark.slow
def test_keep_checkpoint_keeps_it_and_a_finished_rerun_drops_it(tmp_path: Path) -> None:
    tiny = replace(
        QUICK, train=4, val=2, test=2, size=(96, 64), imgsz=28, epochs=1, batch=2, panels=1
    )
    options = dict(settings=tiny, backbone_init="random", device="cpu", progress=False)
    checkpoint = tmp_path / "runs" / "student" / "last.ckpt"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        demo_module.run_demo(tmp_path, keep_checkpoint=True, **options)
        assert checkpoint.is_file()
        again = demo_module.run_demo(tmp_path, **options)
    finally:
        torch.set_num_threads(threads)
    assert {"data", "label", "train", "predict"} <= set(again.reused)
    assert not checkpoint.exists()
    assert (tmp_path / "runs" / "student" / "best" / "model.safetensors").is_file()


def test_cli_passes_keep_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    def stop(*args: object, **kwargs: object) -> None:
        raise demo_module.DemoError(f"keep_checkpoint={kwargs['keep_checkpoint']}")

    monkeypatch.setattr(demo_module, "run_demo", stop)
    for flags, expected in (([], "False"), (["--keep-checkpoint"], "True")):
        result = CliRunner().invoke(app, ["demo", "--quick", *flags])
        assert result.exit_code == 1
        assert f"keep_checkpoint={expected}" in result.output


def test_demo_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(demo_module.DemoError, match="holds no b2p demo"):
        demo_module.run_demo(tmp_path, quick=True, progress=False)
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_backbone_init_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        demo_backbone, "pretrained_backbone_available", lambda n: (False, "offline")
    )
    assert demo_module.resolve_backbone_init("random", "x")[:2] == ("random", "full")
    init, mode, note = demo_module.resolve_backbone_init("auto", "x")
    assert (init, mode) == ("random", "full") and "offline" in note
    with pytest.raises(demo_module.WeightsUnavailableError, match="offline"):
        demo_module.resolve_backbone_init("pretrained", "x")
    with pytest.raises(demo_module.DemoError):
        demo_module.resolve_backbone_init("imagenet", "x")
    monkeypatch.setattr(demo_backbone, "pretrained_backbone_available", lambda n: (True, "cached"))
    assert demo_module.resolve_backbone_init("auto", "x")[:2] == ("pretrained", "bitfit")


def test_offline_availability_check_says_why(monkeypatch) -> None:
    import huggingface_hub

    # as on a machine without a cached copy and without network
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    ok, why = demo_module.pretrained_backbone_available("vit_small_patch14_dinov2.lvd142m")
    assert not ok
    assert "HF_HUB_OFFLINE" in why and "timm/vit_small_patch14_dinov2.lvd142m" in why


def test_render_panel_keeps_masks_and_boxes_aligned() -> None:
    h, w = 70, 90
    image = np.full((h, w, 3), 128, np.uint8)
    gt = np.zeros((h, w), np.uint8)
    gt[20:30, 40:60] = 2  # a damage region
    pred = np.zeros_like(gt)
    pred[20:30, 40:50] = 2  # finds its left half
    pred[50:55, 10:15] = 1  # and a false dirt region
    boxes = np.array([[35, 15, 65, 35]], np.float32)
    names = ["background", "dirt", "damage"]
    picture = render_panel(image, boxes, np.array([1]), gt, pred, gt, names, [(40, 20, 60, 30)])
    s = panel_scale(h)
    gap = max(2, h * s // 100)
    tile_w = w * s
    # find the tiles' top row: the first row of the image tile that is image grey
    top = int(np.argmax((picture[:, 1] == 128).all(axis=1)))

    def tile(k: int) -> np.ndarray:
        x0 = k * (tile_w + gap)
        return picture[top : top + h * s, x0 : x0 + tile_w]

    errors = tile(4)
    assert tuple(errors[25 * s, 45 * s]) == ERROR_COLOURS["true positive"]
    assert tuple(errors[25 * s, 55 * s]) == ERROR_COLOURS["false negative"]
    assert tuple(errors[52 * s, 12 * s]) == ERROR_COLOURS["false positive"]
    assert tuple(errors[5 * s, 5 * s]) == (0, 0, 0)
    boxed = tile(0)
    assert tuple(boxed[25 * s, 35 * s]) == class_colour(2)  # left edge of the damage box
    assert tuple(boxed[60 * s, 20 * s]) == (128, 128, 128)
    student = tile(2)
    assert tuple(student[5 * s, 5 * s]) == (128, 128, 128)
    assert tuple(student[25 * s, 45 * s]) != (128, 128, 128)  # coloured where predicted
    assert picture.shape[0] > top + h * s  # legends below


def _manifest(test: dict[str, list[dict]], val: dict[str, list[dict]]) -> dict:
    return {
        "images": {
            "test": {n: {"defects": d} for n, d in test.items()},
            "val": {n: {"defects": d} for n, d in val.items()},
        }
    }


def _defect(cls: str, boxed: bool, pixels: int = 50) -> dict:
    return {"class": cls, "box": [0, 0, 1, 1] if boxed else None, "pixels": pixels}


def test_choose_panel_images_puts_an_unboxed_defect_first() -> None:
    manifest = _manifest(
        {
            "t0": [],
            "t1": [_defect("dirt", True)],
            "t2": [_defect("damage", True)],
            "t3": [_defect("dirt", True), _defect("damage", False)],
            "t4": [_defect("dirt", True)],
        },
        {"v0": [_defect("dirt", False)]},
    )
    chosen = choose_panel_images(manifest, 4)
    assert chosen[0][:2] == ("test", "t3")
    assert [c[1] for c in chosen[1:3]] == ["t2", "t1"]  # one of each class
    assert chosen[3][1] == "t0"  # a defect-free image
    # no unboxed defect in the test split: taken from val
    manifest["images"]["test"]["t3"]["defects"][1]["box"] = [0, 0, 1, 1]
    assert choose_panel_images(manifest, 2)[0][:2] == ("val", "v0")


@pytest.mark.slow
def test_report_compares_student_and_teacher_from_the_run_numbers(
    quick_demo: tuple[Path, str],
) -> None:
    from boxes2pixels.demo.report import comparison_sentence
    from boxes2pixels.reporting import format_metric

    out, _ = quick_demo
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "about 0.1 after 10 epochs" not in md and "teacher's 0.5" not in md
    import json

    scores = json.loads((out / "demo.json").read_text())["scores"]
    student = format_metric(scores["student"]["anomaly_miou"])
    teacher = format_metric(scores["teacher"]["anomaly_miou"])
    assert f"anomaly mIoU {student} after {QUICK.epochs} epochs" in md
    assert f"against the teacher's {teacher}" in md

    class Scores:
        def __init__(self, v: float) -> None:
            self.anomaly_miou = v

    def sentence(s: float, t: float) -> str:
        result = demo_module.DemoResult(
            out=out, report_html=out, report_md=out, data_yaml=out, run_dir=out,
            backbone_init="random", backbone_mode="full", backbone_note="", teacher={},
            scores={"teacher": Scores(t), "student": Scores(s)}, evaluations_agree=True,
            ablation_note=None, settings=QUICK,
        )  # fmt: skip
        return comparison_sentence(result)

    assert "did not beat its teacher" in sentence(0.1, 0.5)
    assert "scored above its teacher" in sentence(0.6, 0.5)


def test_a_busy_cpu_trains_on_the_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from boxes2pixels.demo import run as demo_run

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(demo_run.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(demo_run.os, "getloadavg", lambda: (3.8, 3.0, 3.0))
    assert demo_run.cpu_threads("auto") == (1, 3.8)
    assert demo_run.cpu_threads("cuda") is None
    monkeypatch.setattr(demo_run.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert demo_run.cpu_threads("cpu") is None
