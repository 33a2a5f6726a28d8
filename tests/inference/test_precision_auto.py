"""``--precision auto``: CPU feature detection and the precision it picks per device."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from boxes2pixels.inference import precision as cpu
from boxes2pixels.inference.precision import (
    CpuInfo,
    choose_precision,
    machine_summary,
    parse_cpuinfo,
    resolve_precision,
)

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: ignored second core
flags\t\t: fpu
"""


def _cpu(*flags: str) -> CpuInfo:
    return CpuInfo(model="Test CPU", flags=frozenset(flags), capability="AVX512", cores=2)


def test_parse_cpuinfo_reads_the_first_model_and_the_relevant_flags() -> None:
    model, flags = parse_cpuinfo(CPUINFO)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert flags == {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}
    assert parse_cpuinfo("") == ("", frozenset())


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("amx_bf16", "avx512_bf16", "avx512_vnni"), "bf16"),  # Sapphire Rapids and later
        (("avx512_bf16", "avx512_vnni", "avx512f"), "bf16"),  # AMD Zen 4
        (("avx512_vnni", "avx512f", "avx2"), "fp32"),  # Cascade Lake: bf16 would be emulated
        (("avx2",), "fp32"),
        ((), "fp32"),
    ],
)
def test_cpu_choice_follows_bf16_matrix_instructions(flags: tuple[str, ...], expected: str) -> None:
    choice = choose_precision(torch.device("cpu"), _cpu(*flags))
    assert choice.precision == expected
    assert choice.reason
    assert _cpu(*flags).bf16_matrix is (expected == "bf16")


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bf16"), (False, "fp16")])
def test_cuda_choice_is_bf16_where_native_else_fp16(
    monkeypatch: pytest.MonkeyPatch, native_bf16: bool, expected: str
) -> None:
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: native_bf16
    )
    assert choose_precision(torch.device("cuda")).precision == expected
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[expected]
    assert resolve_precision("auto", torch.device("cuda")) is dtype


def test_other_devices_stay_fp32() -> None:
    assert choose_precision(torch.device("mps")).precision == "fp32"
    assert resolve_precision("auto", torch.device("mps")) is None


def test_resolve_auto_on_cpu_uses_the_detected_features(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "cpu_info", lambda: _cpu("amx_bf16"))
    assert resolve_precision("auto", torch.device("cpu")) is torch.bfloat16
    assert cpu.cpu_info().bf16_matrix
    monkeypatch.setattr(cpu, "cpu_info", lambda: _cpu("avx2"))
    assert resolve_precision("auto", torch.device("cpu")) is None
    assert not cpu.cpu_info().bf16_matrix
    lines = machine_summary(torch.device("cpu"))
    assert lines[0] == "CPU: Test CPU (2 CPUs; torch kernels AVX512; avx2)"
    assert lines[-1].startswith("--precision auto on cpu: fp32 (no bf16")


def test_this_machine_is_described() -> None:
    info = cpu.cpu_info()
    assert info.model and info.cores >= 1
    assert info.capability == str(torch.backends.cpu.get_cpu_capability())
    assert info.flags <= frozenset(cpu.FEATURES)


def test_profile_prints_the_cpu_and_the_auto_choice(
    monkeypatch: pytest.MonkeyPatch, tiny_student, tmp_path
) -> None:
    from boxes2pixels.cli.main import app

    monkeypatch.setattr(cpu, "cpu_info", lambda: _cpu("avx512_bf16"))
    tiny_student.save_pretrained(tmp_path / "student")
    args = ["profile", "--model", str(tmp_path / "student"), "--models", "student"]
    args += ["--imgsz", "28", "--precision", "auto", "--repeats", "1", "--warmup", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "CPU: Test CPU (2 CPUs; torch kernels AVX512; avx512_bf16)" in result.output
    assert "--precision auto on cpu: bf16 (AVX512-bf16" in result.output
    assert "### auto → bf16, batch 1" in result.output
    assert "| student | 28×28 | bf16 |" in result.output


def test_sam_teacher_records_what_auto_chose(
    monkeypatch: pytest.MonkeyPatch, sam_checkpoint
) -> None:
    from boxes2pixels.teachers import load_teacher

    ckpt = str(sam_checkpoint("vit_t"))
    monkeypatch.setattr(cpu, "cpu_info", lambda: _cpu("amx_bf16"))
    teacher = load_teacher("mobile-sam", checkpoint=ckpt, device="cpu", precision="auto")
    assert teacher.autocast_dtype is torch.bfloat16
    assert teacher.describe()["options"]["precision"] == "bf16"
    monkeypatch.setattr(cpu, "cpu_info", lambda: _cpu("avx2"))
    teacher = load_teacher("mobile-sam", checkpoint=ckpt, device="cpu", precision="auto")
    assert teacher.autocast_dtype is None
    assert teacher.describe()["options"]["precision"] == "fp32"
