"""``b2p review``: rank pseudo-masks by doubt; gallery, queue files and a correction bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import DeviceOpt, ImgszOpt, console, handle_errors, say


@handle_errors
def review_command(
    data_yaml: Annotated[Path, typer.Argument(help="The dataset's data.yaml (Ultralytics YOLO).")],
    masks: Annotated[Path, typer.Option("--masks", help="Pseudo-mask folder of `b2p label`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A trained model (run folder, model folder, Hub id or .onnx file): adds the "
            "disagreement and possible-missed-defect signals.",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split to review.")] = "train",
    top: Annotated[
        int, typer.Option("--top", min=1, help="Images in the gallery and the bundle.")
    ] = 50,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            help="Signal weights as NAME=VALUE pairs, e.g. teacher=2,missed=0.5 (0 turns one "
            "off). Defaults: coverage 1, extent 1, fragmentation 0.5, holes 0.5, offset 1, "
            "spill 1, appearance 1, teacher 1, disagreement 2, missed 1.",
        ),
    ] = None,
    ranking: Annotated[
        str,
        typer.Option(
            "--ranking",
            help="rank: each signal ranked among the split's boxes of its class (holds across "
            "teachers, see docs/review.md) | raw: the raw signals.",
        ),
    ] = "rank",
    power: Annotated[
        float,
        typer.Option(
            "--power",
            min=1.0,
            help="p of the power mean of a box's signals (1: weighted mean; higher: one "
            "signal far out counts more).",
        ),
    ] = 2.0,
    coco_encoding: Annotated[
        str,
        typer.Option(
            "--coco-encoding",
            help="polygon (pixel-edge polygons, exact and editable in CVAT) | rle (compact).",
        ),
    ] = "polygon",
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace an earlier bundle in OUT/correct/ whole, mask edits there included "
            "(its images/, masks/, annotations.json and bundle.json; other files are kept). "
            "Without it a rerun replaces only the files it wrote that are unchanged or "
            "imported, and stops if any was edited.",
        ),
    ] = False,
    imgsz: ImgszOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Rank the pseudo-masks of a split by how much they deserve an expert's look.

    Each box's signals (coverage, extent, fragmentation, holes, offset, spill, appearance,
    the teacher's own score when recorded and, with --model, the model's disagreement) are
    ranked among the split's boxes of their class and combined by a weighted power mean; an
    image is ranked by its worst box, raised by the model's possible missed defects. Writes
    OUT/queue.csv and OUT/queue.json (every image, ranked), OUT/gallery.html (the top K,
    self-contained) and OUT/correct/ (the top K as images + COCO annotations.json + PNG
    masks, for CVAT or Label Studio). Bring the corrections back with
    `b2p label ... --corrections FILE_OR_FOLDER`.

    A rerun into the same OUT never loses a mask you edited in OUT/correct/masks: it stops,
    naming the edited files, until they are imported (or --overwrite). Files of the earlier
    bundle that the new one lacks are removed, so an import takes only the current ones;
    files you added are kept.
    """
    from rich.progress import Progress

    from ..review import DoubtSettings, parse_weights, review_dataset

    settings = DoubtSettings(weights=parse_weights(weights), normalise=ranking, power=power)
    if model is None:
        named = {pair.partition("=")[0].strip() for pair in (weights or "").split(",")}
        for name in sorted(named & {"disagreement", "missed"}):
            if settings.weights[name] > 0:
                say(f"[yellow]note:[/] --weights {name}: ", "needs --model; left out of this run")
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("reviewing", total=None)
        result = review_dataset(
            data_yaml,
            masks,
            out,
            split=split,
            model=model,
            top=top,
            settings=settings,
            imgsz=imgsz,
            device=device,
            encoding=coco_encoding,
            overwrite=overwrite,
            on_image=lambda done, total: bar.update(task, completed=done, total=total),
        )
    queue = result.queue
    doubted = sum(r.score > 0 for r in queue.images)
    say(
        f"[bold green]done[/]: {len(queue.images)} images ranked, {doubted} with a doubt\n",
        f"  gallery: {result.gallery}\n  queue: {result.csv}, {result.json}\n"
        f"  bundle: {result.bundle or 'none (no image raised a doubt)'}",
    )


def register(app: typer.Typer) -> None:
    """Add ``b2p review`` to ``app``."""
    app.command("review")(review_command)
