"""Efficiency profile: counting, timing, the table and ``b2p profile --json``."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from boxes2pixels.errors import Boxes2PixelsError
from boxes2pixels.measure import (
    count_gmacs,
    count_params,
    precision_context,
    time_call,
    time_interleaved,
)
from boxes2pixels.profile import (
    JSON_KEYS,
    ProfileRow,
    format_table,
    latency_ratio,
    parse_models,
    profile_json,
    profile_models,
)


@pytest.fixture(scope="module")
def small_student(make_student):
    """A test_vit student (patch 16) at 32 px: the fastest model to time."""
    return make_student(backbone="test_vit", backbone_mode="full", decoder_channels=32, imgsz=32)


def test_count_params_splits_trainable() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)
    assert count_params(model) == (4 * 3 + 3 + 3 * 2 + 2, 3 + 3 * 2 + 2)


def test_count_gmacs_matches_hand_count() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    # 8 outputs × 3 inputs × 9 taps at each of 16×16 positions, per image
    assert count_gmacs(conv, torch.randn(2, 3, 16, 16)) == pytest.approx(8 * 3 * 9 * 256 / 1e9)
    linear = nn.Linear(10, 5)
    assert count_gmacs(linear, torch.randn(4, 10)) == pytest.approx(50 / 1e9)


def test_time_call_warms_up_then_times_each_repeat() -> None:
    calls = []
    times = time_call(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6
    assert len(times) == 4 and all(t >= 0 for t in times)
    with pytest.raises(Boxes2PixelsError, match="repeats"):
        time_call(lambda: None, repeats=0, warmup=0)


def test_parse_models() -> None:
    assert parse_models("student, segformer,student") == ["student", "segformer"]
    with pytest.raises(Boxes2PixelsError, match="unknown model"):
        parse_models("student,pspnet")


def test_profile_rows_and_ratios(small_student) -> None:
    rows = profile_models("student,unet", imgsz=48, repeats=2, warmup=0, student=small_student)
    assert [r.name for r in rows] == ["student", "unet"]
    student, unet = rows
    assert student.input_hw == (48, 48)
    assert unet.input_hw == (32, 32)  # nearest multiple of 32 to 48 (ties go down)
    assert "nearest multiple of 32" in unet.note
    assert student.latency_ratio == pytest.approx(1.0)
    assert unet.latency_ratio == pytest.approx(unet.latency_ms / student.latency_ms)
    assert unet.params_total == unet.params_trainable > 20_000_000
    assert student.gmacs > 0 and unet.gmacs > 0
    assert unet.images_per_s == pytest.approx(1000.0 / unet.latency_ms)


def test_profile_bf16_uses_autocast(small_student) -> None:
    with precision_context("bf16", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with precision_context("fp32", torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
    rows = profile_models(
        "student", imgsz=32, precision="bf16", repeats=1, warmup=0, student=small_student
    )
    assert rows[0].precision == "bf16" and rows[0].latency_ms > 0


def test_student_imgsz_must_fit_patch(small_student) -> None:
    with pytest.raises(Boxes2PixelsError, match="patch size 16"):
        profile_models("student", imgsz=40, repeats=1, warmup=0, student=small_student)


def test_format_table_shows_every_row() -> None:
    rows = [
        ProfileRow("student", 10, 5, 1.0, 10.0, 100.0, 1.0, (518, 518), "fp32"),
        ProfileRow("segformer", 20, 20, 2.0, 25.0, 40.0, 2.5, (512, 512), "fp32", note="x"),
    ]
    text = format_table(rows, title="t")
    assert "| segformer | 512×512 | fp32 | torch |" in text
    assert "| 2.50 |" in text
    assert "- segformer: x" in text


def test_cli_json_keys(small_student, tmp_path) -> None:
    from typer.testing import CliRunner

    from boxes2pixels.cli.main import app

    small_student.save_pretrained(tmp_path / "student")
    out = tmp_path / "profile.json"
    result = CliRunner().invoke(
        app,
        [
            "profile",
            "--model",
            str(tmp_path / "student"),
            "--models",
            "student,unet",
            "--imgsz",
            "32",
            "--precision",
            "fp32",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["name"] for r in rows] == ["student", "unet"]
    assert all(tuple(r) == JSON_KEYS for r in rows)
    assert rows[0]["latency_ratio"] == 1.0
    assert "| student | 32×32 |" in result.output


def test_time_interleaved_runs_round_robin() -> None:
    order: list[str] = []
    times = time_interleaved(
        [lambda: order.append("a"), lambda: order.append("b")], repeats=2, warmup=1
    )
    assert order == ["a", "b"] * 3
    assert [len(t) for t in times] == [2, 2]


def test_json_names_rows_of_later_precisions_and_ratios() -> None:
    fp32 = [
        ProfileRow("student", 10, 5, 1.0, 10.0, 100.0, 1.0, (518, 518), "fp32"),
        ProfileRow("segformer", 20, 20, 2.0, 25.0, 40.0, 2.5, (512, 512), "fp32"),
    ]
    bf16 = [ProfileRow("student", 10, 5, 1.0, 5.0, 200.0, 1.0, (518, 518), "bf16")]
    items = profile_json([("fp32", fp32), ("bf16", bf16)])
    assert [i["name"] for i in items] == ["student", "segformer", "student@bf16"]
    assert latency_ratio(fp32, "student", "segformer") == pytest.approx(0.4)
    assert latency_ratio(bf16, "student", "segformer") is None
