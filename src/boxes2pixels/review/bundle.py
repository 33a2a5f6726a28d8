"""The correction bundle: the top of the queue in a form annotation tools import.

Layout of ``<out>/``::

    images/<split>/<name>.<ext>     copies of the images
    masks/<split>/<name>.png        their current pseudo-masks (label-map PNGs)
    annotations.json                COCO instances of those masks (CVAT, Datumaro)
    label-studio.json               Label Studio tasks: image references, brush masks
    label_config.xml                the Label Studio labeling config of those tasks
    bundle.json                     the sha256 of every file above, as written

``annotations.json`` names each image ``<split>/<name>.<ext>`` relative to ``images/``; it is
written by :func:`boxes2pixels.convert.masks_to_coco`, with the ignore pixels (255) as the
category ``ignore`` (id 255), so that every format holds the masks exactly: pycocotools
decodes the polygons (or RLE) to the same pixels and Label Studio's brush RLE is lossless. An
unedited round trip gives byte-identical masks. The Label Studio tasks reference
``/data/local-files/?d=<split>/<name>``: serve the bundle's ``images/`` as Label Studio's
local files document root. After correction, any of them goes back with ``b2p label ...
--corrections``: the COCO file exported by CVAT, Label Studio's JSON export, or the bundle
folder (its ``masks/``) after editing the PNGs.

Writing into an earlier bundle never loses an edit and never leaves a file of the earlier
bundle that an import would take: a file that ``bundle.json`` records and that still holds
what was written (or, for a mask, whose content the pseudo-mask folder holds now: imported)
is replaced or removed; a recorded file changed since (an edit not imported) stops the write
before anything is written; files the bundle never wrote are left alone, and one standing
where the new bundle writes stops it too. ``bundle.json`` is rewritten first to cover both
bundles' files, so that a crash halfway leaves every file accounted for.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ..atomic import copy_file_atomic
from ..convert import (
    label_studio_config,
    label_studio_task,
    masks_to_coco,
)
from ..data.labelmaps import read_mask
from ..errors import Boxes2PixelsError, ConfigError
from ..io import remove_outputs, write_bytes_atomic, write_json_atomic
from .queue import ImageReview

COCO_NAME = "annotations.json"
LS_TASKS_NAME = "label-studio.json"
LS_CONFIG_NAME = "label_config.xml"
MANIFEST_NAME = "bundle.json"
_FILES = (COCO_NAME, LS_TASKS_NAME, LS_CONFIG_NAME)
"""The files a bundle writes at its top."""
_OWNED = ("masks", "images", *_FILES)
"""What a bundle writes (besides ``bundle.json``); ``overwrite`` removes these whole."""
LS_IMAGE_URL = "/data/local-files/?d="
"""Prefix of the Label Studio tasks' image references (then ``<split>/<name>``)."""
_SHOWN = 5
"""Files named in an error message, at most."""
_ABOUT = (
    "what b2p review wrote here, by sha256: a rerun replaces or removes these files while "
    "they are unchanged, and no other file"
)


def bundle_name(review: ImageReview) -> str:
    """The image's name inside the bundle's ``images/``: ``<split>/<mask name>`` with the
    image's own suffix."""
    return str(PurePosixPath(review.key).with_suffix(Path(review.image).suffix))


def _sha256(source: Path | bytes) -> str:
    """sha256 (hex) of ``source``'s bytes, or of the file ``source``."""
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256()
    with open(source, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _png(label_map: np.ndarray) -> bytes:
    """``label_map`` as a plain 8-bit grayscale PNG (what :func:`~boxes2pixels.io.write_mask`
    writes), in memory so that its sha256 is known before it is written."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(label_map.astype(np.uint8))).save(buf, format="PNG")
    return buf.getvalue()


def _refuse(out: Path, problem: str, files: Sequence[str], advice: str) -> ConfigError:
    """One error naming ``files`` (the first few) below ``out``."""
    named = ", ".join(str(out / rel) for rel in files[:_SHOWN])
    more = f" and {len(files) - _SHOWN} more" if len(files) > _SHOWN else ""
    return ConfigError(
        f"{out}: {problem}: {named}{more}. Nothing was written. {advice} --overwrite replaces "
        f"the bundle in {out} whole (its masks/, images/, {', '.join(_FILES)} and "
        f"{MANIFEST_NAME}; other files are kept); another --out leaves it as it is."
    )


def _recorded(out: Path) -> dict[str, list[str]] | None:
    """``{relative path: sha256 values it may hold}`` from ``bundle.json``; ``None`` when
    there is no ``bundle.json``.

    Raises:
        ConfigError: ``bundle.json`` is unreadable, or names a file outside the bundle's
            ``images/``, ``masks/`` and ``annotations.json``.
    """
    path = out / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        records: dict[str, list[str]] = {rel: [str(sha)] for rel, sha in data["files"].items()}
        for rel, sha in data.get("replacing", {}).items():
            records.setdefault(rel, []).append(str(sha))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{path}: cannot read the record of what b2p review wrote in {out} ({exc}), so "
            "edited files cannot be told from written ones. Nothing was written. Import your "
            f"corrections first (b2p label ... --corrections {out}), then rerun with "
            "--overwrite (it replaces the bundle whole), or choose another --out."
        ) from exc
    for rel in records:
        parts = PurePosixPath(rel).parts
        if rel not in _FILES and (len(parts) < 2 or parts[0] not in _OWNED or ".." in parts):
            raise ConfigError(
                f"{path}: names '{rel}', which is no file of a correction bundle. Nothing was "
                f"written. Import your corrections first (b2p label ... --corrections {out}), "
                "then rerun with --overwrite (it replaces the bundle whole), or choose another "
                "--out."
            )
    return records


def _imported(out: Path, rel: str, masks: Path | None) -> bool:
    """True when ``rel`` is a bundle mask whose label map the pseudo-mask folder ``masks``
    holds for its image (the edit was imported with ``b2p label --corrections``)."""
    parts = PurePosixPath(rel).parts
    if masks is None or parts[0] != "masks":
        return False
    current = masks.joinpath(*parts[1:])
    try:
        return current.is_file() and np.array_equal(read_mask(out / rel), read_mask(current))
    except Boxes2PixelsError:  # an unreadable edit is not the imported one
        return False


def check_bundle(
    out: str | Path, masks: str | Path | None = None, writes: Collection[str] = ()
) -> dict[str, str]:
    """The files of an earlier bundle in ``out`` that a new one may replace or remove:
    ``{path relative to out: its sha256 now}``, for each file ``bundle.json`` records that
    still holds what was written or (with ``masks``, the pseudo-mask folder) was imported.

    Args:
        out: the bundle folder.
        masks: the pseudo-mask folder; ``None``: no edit counts as imported.
        writes: the paths (relative to ``out``) the new bundle writes.

    Raises:
        ConfigError: a recorded file was edited and not imported; ``out`` holds bundle files
            but no ``bundle.json`` (so edits cannot be told apart) or an unreadable one; or a
            file that the bundle did not write stands at one of ``writes``.
    """
    out = Path(out)
    masks = None if masks is None else Path(masks)
    records = _recorded(out)
    if records is None:
        found = [
            path.relative_to(out).as_posix()
            for name in _OWNED
            for path in sorted([out / name, *(out / name).rglob("*")])
            if path.is_file()
        ]
        if found:
            raise _refuse(
                out,
                f"holds files of a correction bundle but no {out / MANIFEST_NAME} recording "
                "what b2p review wrote (a bundle of an earlier version, or the record was "
                "deleted), so mask edits cannot be told from written masks",
                found,
                f"Import your corrections first (b2p label ... --corrections {out}), then rerun "
                "with --overwrite.",
            )
        return {}
    ours: dict[str, str] = {}
    edited = []
    for rel, shas in records.items():
        if not (out / rel).is_file():
            continue  # deleted since: nothing to lose
        sha = _sha256(out / rel)
        if sha in shas or _imported(out, rel, masks):
            ours[rel] = sha
        else:
            edited.append(rel)
    if edited:
        raise _refuse(
            out,
            f"{len(edited)} file(s) written by an earlier b2p review were changed since "
            "(your corrections?) and would be lost",
            sorted(edited),
            f"Import the corrected masks first (b2p label ... --corrections {out}); a rerun "
            "then replaces them; or move the edited files out of the bundle.",
        )
    foreign = sorted(rel for rel in writes if rel not in ours and (out / rel).exists())
    if foreign:
        raise _refuse(
            out,
            f"b2p review would replace file(s) it did not write (not in {MANIFEST_NAME})",
            foreign,
            "Move them out of the bundle and rerun.",
        )
    return ours


def _prune(folder: Path, root: Path) -> None:
    """Remove ``folder`` and its parents up to ``root`` (included) while they are empty."""
    while folder == root or root in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (or already gone)
            return
        folder = folder.parent


def _replace(
    out: Path, files: Mapping[str, bytes | Path], masks: Path | None, overwrite: bool
) -> None:
    """Make ``files`` (``{relative path: bytes, or a file to copy}``) the bundle in ``out``,
    replacing an earlier one as the module's description says."""
    if overwrite:
        remove_outputs(out, [*_OWNED, MANIFEST_NAME])
    ours = check_bundle(out, masks, files)
    written = {rel: _sha256(source) for rel, source in files.items()}
    stale = {rel: sha for rel, sha in ours.items() if rel not in written}
    replacing = {rel: sha for rel, sha in ours.items() if rel in written and sha != written[rel]}
    if written or stale:
        write_json_atomic(
            out / MANIFEST_NAME,
            {"about": _ABOUT, "files": written | stale, "replacing": replacing},
        )
    for rel, source in files.items():
        if isinstance(source, bytes):
            write_bytes_atomic(out / rel, source)
        else:
            copy_file_atomic(source, out / rel)
    for rel in stale:
        (out / rel).unlink(missing_ok=True)
        _prune((out / rel).parent, out)
    if written:
        write_json_atomic(out / MANIFEST_NAME, {"about": _ABOUT, "files": written})
    elif out.is_dir():
        (out / MANIFEST_NAME).unlink(missing_ok=True)
        _prune(out, out)


def write_bundle(
    reviews: Sequence[ImageReview],
    names: Sequence[str],
    out: str | Path,
    encoding: str = "polygon",
    *,
    masks: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Copy the images and masks of ``reviews`` into ``out`` and write ``annotations.json``,
    the Label Studio tasks and config and ``bundle.json``; an earlier bundle in ``out`` is
    replaced without losing an edit (see the module's description).

    Args:
        reviews: the images to correct (e.g. ``queue.top(k)``).
        names: YOLO class names (COCO category ``k + 1`` is ``names[k]``).
        out: the bundle folder.
        encoding: ``annotations.json``: ``polygon`` (pixel-edge polygons, editable as
            polygons in CVAT; a component needing over 32 of them, e.g. a diagonal 1-px
            crack, is RLE) or ``rle`` (imported as masks). Both are exact.
        masks: the pseudo-mask folder: an edited bundle mask equal to its image's mask there
            has been imported and may be replaced.
        overwrite: remove an earlier bundle's ``images/``, ``masks/``, ``annotations.json``
            and ``bundle.json`` first, edits included.

    Returns:
        The path of ``annotations.json``.

    Raises:
        ConfigError: an earlier bundle in ``out`` holds edits (see :func:`check_bundle`);
            nothing is written.
    """
    out = Path(out)
    files: dict[str, bytes | Path] = {}
    for review in reviews:
        files[f"images/{bundle_name(review)}"] = Path(review.image)
        files[f"masks/{review.key}"] = _png(read_mask(review.mask))
    coco = masks_to_coco(
        [bundle_name(r) for r in reviews],
        (read_mask(r.mask) for r in reviews),
        list(names),
        encoding=encoding,
        ignore=True,
    )
    files[COCO_NAME] = (json.dumps(coco, indent=2) + "\n").encode("utf-8")
    tasks = [
        label_studio_task(
            bundle_name(r), read_mask(r.mask), list(names), image_url=LS_IMAGE_URL, ignore=True
        )
        for r in reviews
    ]
    files[LS_TASKS_NAME] = (json.dumps(tasks) + "\n").encode("utf-8")
    files[LS_CONFIG_NAME] = label_studio_config(list(names), ignore=True).encode("utf-8")
    _replace(out, files, None if masks is None else Path(masks), overwrite)
    return out / COCO_NAME


def remove_bundle(
    out: str | Path, masks: str | Path | None = None, overwrite: bool = False
) -> None:
    """Remove the files of an earlier bundle in ``out`` (for a review that exports none):
    unchanged or imported ones, or with ``overwrite`` all; other files are left alone.

    Raises:
        ConfigError: the earlier bundle holds edits (see :func:`check_bundle`); nothing is
            removed.
    """
    _replace(Path(out), {}, None if masks is None else Path(masks), overwrite)
