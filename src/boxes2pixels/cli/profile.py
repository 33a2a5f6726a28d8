"""`b2p profile`: parameters, MACs, latency and throughput of the student and the baselines."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import BatchOpt, DeviceOpt, ImgszOpt, handle_errors, say


@handle_errors
def profile_command(
    imgsz: ImgszOpt = 518,
    batch: BatchOpt = 1,
    device: DeviceOpt = "cpu",
    models: str = typer.Option(
        "student,student-onnx,student-openvino,unet,deeplabv3,segformer",
        "--models",
        help="Comma-separated: student, student-onnx (onnxruntime), student-openvino "
        "(OpenVINO), unet, deeplabv3, segformer. Rows whose runtime is not installed are "
        "skipped.",
    ),
    precision: str | None = typer.Option(
        None,
        "--precision",
        help="Comma-separated fp32 | bf16 | fp16 | auto; one table each "
        "(default: fp32,bf16 on CPUs with bf16 matrix instructions, else fp32).",
    ),
    repeats: int = typer.Option(10, "--repeats", min=1, help="Timed calls; the median is shown."),
    warmup: int = typer.Option(3, "--warmup", min=0, help="Untimed calls before timing."),
    threads: int | None = typer.Option(
        None,
        "--threads",
        min=1,
        help="CPU threads for torch, onnxruntime and OpenVINO (default: torch's).",
    ),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the torch models."),
    model: Path | None = typer.Option(
        None, "--model", help="Profile this trained student instead of a random-weight one."
    ),
    json_file: Path | None = typer.Option(
        None,
        "--json",
        help="Write the rows as JSON (keys name, params_total, params_trainable, gmacs, "
        "latency_ms, images_per_s, latency_ratio); rows of a second precision are named "
        "NAME@PRECISION.",
    ),
) -> None:
    """Compare the student with the baselines: size, compute, latency, throughput.

    Baselines run at the multiple of 32 nearest to --imgsz (512 for 518). Latency is the
    median of --repeats calls after --warmup calls, under torch.inference_mode; bf16 runs use
    autocast and channels-last. The last column is each model's latency over the student's.

    Examples:

      b2p profile

      b2p profile --models student,segformer --precision bf16 --json profile.json
    """
    import torch

    from ..inference.precision import machine_summary, resolve_device
    from ..io import write_json_atomic
    from ..profile import format_table, latency_ratio, profile_json, profile_precisions

    threads_now = threads or torch.get_num_threads()
    typer.echo("\n".join(machine_summary(resolve_device(device))) + "\n")
    tables = []
    for prec, rows in profile_precisions(
        models,
        precision,
        imgsz=imgsz,
        batch=batch,
        device=device,
        repeats=repeats,
        warmup=warmup,
        threads=threads,
        compile_model=compile,
        student=model,
        progress=lambda msg: say("[dim]", msg),
    ):
        tables.append((prec, rows))
        shown = f"auto → {rows[0].precision}" if prec.strip().lower() == "auto" and rows else prec
        title = (
            f"{shown}, batch {batch}, {device}, {threads_now} threads, median of {repeats} "
            f"after {warmup} warm-up"
        )
        typer.echo(format_table(rows, title=title) + "\n")
        ratio = latency_ratio(rows, "student", "segformer")
        if ratio is not None:
            typer.echo(f"student / segformer latency ({prec}): {ratio:.2f}\n")
    if json_file is not None:
        write_json_atomic(json_file, profile_json(tables))
        say("wrote ", str(json_file))


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("profile")(profile_command)
