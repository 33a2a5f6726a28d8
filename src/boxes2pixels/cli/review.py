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
            help="Signal weights as NAME=VALUE pairs, e.g. coverage=1,fragmentation=0.5,"
            "teacher=1,disagreement=1,missed=0.5 (those are the defaults; 0 turns one off).",
        ),
    ] = None,
    coco_encoding: Annotated[
        str,
        typer.Option(
            "--coco-encoding",
            help="polygon (editable in CVAT / Label Studio) | rle (exact for 1-2 px cracks).",
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

    The doubt score of an image is the weighted mean of the signals that could be measured:
    box coverage (too little and too much both count), fragmentation, the teacher's own score
    (when recorded) and, with --model, the model's disagreement with the pseudo-mask and
    confident defects outside every box. Writes OUT/queue.csv and OUT/queue.json (every
    image, ranked), OUT/gallery.html (the top K, self-contained) and OUT/correct/ (the top K
    as images + COCO annotations.json + PNG masks, for CVAT or Label Studio). Bring the
    corrections back with `b2p label ... --corrections FILE_OR_FOLDER`.

    A rerun into the same OUT never loses a mask you edited in OUT/correct/masks: it stops,
    naming the edited files, until they are imported (or --overwrite). Files of the earlier
    bundle that the new one lacks are removed, so an import takes only the current ones;
    files you added are kept.
    """
    from rich.progress import Progress

    from ..review import DoubtSettings, parse_weights, review_dataset

    settings = DoubtSettings(weights=parse_weights(weights))
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
