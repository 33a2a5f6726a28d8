"""`b2p convert`: pseudo-masks or predictions as a YOLO-seg dataset, COCO instances, a CVAT /
Datumaro COCO dataset or Label Studio tasks."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import handle_errors, say


@handle_errors
def convert_command(
    masks: Path = typer.Argument(
        ...,
        help="Masks folder: `b2p label` output (one sub-folder per split) or, with --split, "
        "one split's masks (`b2p predict` output).",
    ),
    to: str = typer.Option(
        ...,
        "--to",
        help="yolo-seg (Ultralytics dataset: images/, labels/, data.yaml) | coco "
        "(annotations/instances_<split>.json) | cvat (the same beside images/<split>/: "
        "Datumaro's COCO layout, for CVAT) | label-studio (tasks.json with brush masks, "
        "label_config.xml, images/).",
    ),
    data: Path = typer.Option(..., "--data", help="The dataset's data.yaml (images, names)."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    split: str | None = typer.Option(
        None, "--split", help="MASKS holds this split's masks directly (e.g. val)."
    ),
    encoding: str | None = typer.Option(
        None,
        "--encoding",
        help="COCO segmentation: rle | polygon (pixel-edge outlines; both exact, components "
        "that need over 32 polygons stay RLE). Default: rle for coco, polygon for cvat.",
    ),
    copy_images: bool = typer.Option(
        False,
        "--copy-images",
        help="yolo-seg, cvat, label-studio: copy the images (default: symbolic links).",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace an earlier conversion's outputs in OUT (the format's images/, labels/, "
        "data.yaml, annotations/, tasks.json, label_config.xml; other files are kept). "
        "Without it, an OUT that holds any of them is refused.",
    ),
    image_url: str = typer.Option(
        "/data/local-files/?d=",
        "--image-url",
        help="label-studio: prefix of each task's image reference, followed by "
        "<split>/<name> (default: Label Studio's local files, document root OUT/images).",
    ),
) -> None:
    """Convert label-map PNGs into the formats other trainers and annotation tools read.

    One instance per connected component per class; 255 (ignore) is left out.

    Examples:

      b2p convert masks --to yolo-seg --data data.yaml --out yolo_seg

      b2p convert masks --to coco --data data.yaml --out coco

      b2p convert masks --to cvat --data data.yaml --out cvat

      b2p convert masks --to label-studio --data data.yaml --out ls

      b2p convert predictions --split val --to coco --data data.yaml --out coco_pred
    """
    from ..convert_folder import convert_masks, listed

    summary = convert_masks(
        masks,
        data,
        out,
        to,
        split=split,
        encoding=encoding,
        copy_images=copy_images,
        image_url=image_url,
        overwrite=overwrite,
    )
    for path, reason in summary.skipped:
        say("[yellow]skipped[/] ", f"{path}: {reason}")
    if summary.unmatched:
        say(
            "[yellow]warning:[/] ",
            f"{len(summary.unmatched)} mask(s) belong to no image of {data} and were not "
            f"converted (renamed or deleted images?): {listed(summary.unmatched)}",
        )
    for split_name in summary.empty_splits:
        say("[yellow]warning:[/] ", f"split {split_name}: no image converted, no file written")
    changed = {name: d for name, d in summary.differences.items() if d[0]}
    if changed:
        differ = sum(d[0] for d in changed.values())
        defect = sum(d[1] for d in summary.differences.values())
        worst = max(changed, key=lambda name: changed[name][0])
        say(
            "[yellow]warning:[/] ",
            f"YOLO-seg is approximate: read back as Ultralytics rasterises them, the labels "
            f"of {len(changed)} of {len(summary.differences)} images differ from their masks "
            f"in {differ} pixels ({differ / max(1, defect):.1%} of the {defect} defect pixels;"
            f" most in {worst}: {changed[worst][0]}). A polygon holds no hole, and a lone pixel "
            "or a straight 1-px line has none; --to coco keeps the masks exactly",
        )
    for split_name, root in summary.image_roots.items():
        say(f"[dim]{split_name}: file_name entries are relative to[/] ", str(root))
    counts = ", ".join(f"{s} {n}" for s, n in summary.images.items()) or "no images"
    kind = {"coco": "instances", "cvat": "instances", "label-studio": "brush regions"}
    instances = f", {summary.instances} {kind[to]}" if to in kind else ""
    say("[green]done:[/] ", f"{counts}{instances}; wrote {', '.join(map(str, summary.files))}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("convert")(convert_command)
