"""``review_dataset``: everything ``b2p review`` writes, as one function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..convert_folder import check_output_folder
from ..data.yolo import load_data_yaml
from ..inference import load_model
from .bundle import check_bundle, remove_bundle, write_bundle
from .gallery import gallery_document, write_gallery
from .queue import ReviewQueue, describe_model, review_split
from .scores import teacher_scores
from .settings import DoubtSettings, check_measurable

BUNDLE_DIR = "correct"


@dataclass
class ReviewResult:
    """What :func:`review_dataset` wrote, and the queue itself."""

    queue: ReviewQueue
    csv: Path
    json: Path
    gallery: Path
    bundle: Path | None


def _commands(data: Path, masks: Path, bundle: Path, split: str) -> str:
    return (
        f"# 1. correct {bundle}/images in CVAT or Label Studio (import {bundle}/annotations.json\n"
        f"#    as COCO 1.0), export the result as COCO; or edit the PNGs in {bundle}/masks\n"
        "# 2. bring the corrections in (the teacher never relabels those images again):\n"
        f"b2p label {data} --teacher TEACHER --out {masks} --splits {split} "
        f"--corrections exported.json\n"
        "# 3. train, validating on the corrected images:\n"
        f"B2P_VALIDATE_ON=corrected b2p train {data} --masks {masks} --out runs/corrected"
    )


def review_dataset(
    data_yaml: str | Path,
    masks: str | Path,
    out: str | Path,
    *,
    split: str = "train",
    model: Any = None,
    top: int = 50,
    settings: DoubtSettings | None = None,
    imgsz: int | None = None,
    device: str = "auto",
    encoding: str = "polygon",
    overwrite: bool = False,
    on_image: Callable[[int, int], None] | None = None,
) -> ReviewResult:
    """Rank the pseudo-masks of ``split``; write the queue, the gallery and the bundle.

    Writes ``out/queue.csv`` and ``out/queue.json`` (every image, ranked),
    ``out/gallery.html`` (self-contained; also ``gallery.md``) of the ``top`` images and the
    correction bundle ``out/correct/`` of those images (see :mod:`.bundle`). An earlier
    bundle there is replaced, its files that the new one lacks removed (all of them when no
    image raises a doubt); one that holds edits not yet imported into ``masks`` is refused
    before anything is written.

    Args:
        data_yaml: the dataset's ``data.yaml``.
        masks: the pseudo-mask folder written by ``b2p label``.
        out: output folder, not the dataset's or the masks' folder nor inside one of them.
        split: the split to review.
        model: a model or what :func:`~boxes2pixels.models.load_model` loads; ``None``: the
            signals that need a model are left out.
        top: images in the gallery and the bundle.
        settings: signal weights and thresholds.
        imgsz: the model's input long side (default: its own).
        device: where the model runs.
        encoding: COCO segmentation of the bundle: ``polygon`` or ``rle``.
        overwrite: replace an earlier bundle whole, edits included (its ``images/``,
            ``masks/``, ``annotations.json`` and ``bundle.json``; other files are kept).
        on_image: progress callback ``on_image(done, total)``.

    Raises:
        ConfigError: ``out`` is or lies inside the dataset or the masks folder; without
            ``overwrite``, the earlier bundle holds edits, has no readable ``bundle.json``,
            or a file it did not write where the new one writes (see
            :func:`.bundle.check_bundle`).
        DatasetError: unknown split, or a missing pseudo-mask or one of another size
            (checked before anything is written).
        CheckpointError: the model cannot be loaded.
    """
    ds = load_data_yaml(data_yaml)
    masks, out = Path(masks), Path(out)
    check_output_folder(out, ds, masks, containing=False)
    bundle = out / BUNDLE_DIR
    if not overwrite:
        check_bundle(bundle, masks)  # before the review runs; the write checks again
    scores = teacher_scores(masks)
    check_measurable(settings or DoubtSettings(), model is not None, scores)  # before loading
    loaded = None if model is None else load_model(model, device=device)
    queue = review_split(
        ds,
        masks,
        split=split,
        model=loaded,
        settings=settings,
        teacher_scores=scores,
        imgsz=imgsz,
        on_image=on_image,
    )
    if model is not None:
        queue.model = describe_model(model, loaded)
    chosen = [r for r in queue.top(top) if r.score > 0]
    doc = gallery_document(  # drawn before the first write: a failure leaves earlier files
        queue, chosen, loaded, imgsz, _commands(ds.yaml_path, masks, out / BUNDLE_DIR, split)
    )
    if chosen:  # first: a refused bundle leaves the earlier queue and gallery too
        write_bundle(chosen, ds.names, bundle, encoding, masks=masks, overwrite=overwrite)
    else:
        remove_bundle(bundle, masks, overwrite)
    csv_path, json_path = queue.write(out)
    gallery = write_gallery(doc, out)
    return ReviewResult(queue, csv_path, json_path, gallery, bundle if chosen else None)
