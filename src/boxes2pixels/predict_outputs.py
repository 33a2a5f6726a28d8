"""What a ``b2p predict`` run may write into its output folder, and how a cut-short run resumes.

A run records itself in ``OUT/b2p_predict.json`` twice: when it starts (``finished``: false,
the model's sha256 and the settings asked) and when it ends (``finished``: true, every file
written under ``outputs``). Between the two, ``OUT/.b2p_predict.journal.jsonl`` gets one
flushed line per finished image. A rerun with the same model and settings after a kill
resumes: the images of the journal whose files are all there are not predicted again. Any
other file the run would write, or an earlier run's outputs, make the folder refused unless
``overwrite`` (:func:`plan_folder`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Boxes2PixelsError

SUMMARY_NAME = "b2p_predict.json"
"""File written into the output folder: settings, model, skipped images, outputs."""
JOURNAL_NAME = ".b2p_predict.journal.jsonl"
"""One line per image finished by a run that has not ended yet (``{"outputs": [...]}``)."""


def image_files(stem: Path, overlay: bool, json_report: bool) -> list[Path]:
    """The files one image gets (``stem``: its output path without suffix)."""
    suffixes = [".png"] + (["_overlay.jpg"] if overlay else []) + ([".json"] if json_report else [])
    return [stem.parent / (stem.name + s) for s in suffixes]


@dataclass
class FolderPlan:
    """What a run does in its output folder.

    Attributes:
        todo: the images to predict (all but those a resumed run finished).
        resumed: outputs (relative to the folder) of the images finished before a kill.
        remove: an earlier run's outputs that ``overwrite`` removes once the model loads.
    """

    todo: list[Path]
    resumed: list[str] = field(default_factory=list)
    remove: list[Path] = field(default_factory=list)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _journal(out: Path) -> list[list[str]]:
    """The journal's complete lines (a line cut by a kill is left out)."""
    try:
        lines = (out / JOURNAL_NAME).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        try:
            entries.append([str(name) for name in json.loads(line)["outputs"]])
        except (ValueError, KeyError, TypeError):
            continue
    return entries


def _inside(out: Path, names: Iterable[str]) -> list[Path]:
    """The existing files of ``names`` (relative to ``out``) that stay inside it."""
    paths = (Path(n) for n in names)
    inside = (out / p for p in paths if not p.is_absolute() and ".." not in p.parts)
    return [p for p in inside if p.is_file()]


def plan_folder(
    out: Path,
    stems: dict[Path, Path],
    identity: dict[str, Any],
    *,
    overlay: bool,
    json_report: bool,
    overwrite: bool,
) -> FolderPlan:
    """Decide what a run does in ``out`` (``stems``: each image's output path without suffix;
    ``identity``: the model's sha256 and the settings asked, as recorded at the start).

    Resumes a cut-short run of the same identity (never with ``overwrite``); refuses a file
    the run would write that is already there (ground-truth masks or another model's would be
    replaced) or an earlier run's outputs (they would be mixed with this run's under its
    summary), unless ``overwrite``, which removes the earlier outputs and replaces the rest.

    Raises:
        Boxes2PixelsError: naming the files, without ``overwrite``.
    """
    earlier = _read_json(out / SUMMARY_NAME)
    journal = _journal(out)
    same = (
        earlier.get("finished") is False
        and identity.get("model_sha256") is not None
        and {k: earlier.get(k) for k in identity} == identity
    )
    done: set[str] = set()
    if same and not overwrite:
        for outputs in journal:
            if len(_inside(out, outputs)) == len(outputs):
                done.update(outputs)
    todo, resumed = [], []
    for image, stem in stems.items():
        files = [p.relative_to(out).as_posix() for p in image_files(stem, overlay, json_report)]
        if done and set(files) <= done:
            resumed += files
        else:
            todo.append(image)
    listed = earlier.get("outputs")
    listed = [str(n) for n in listed] if isinstance(listed, list) else []
    recorded = _inside(out, [n for entry in journal for n in entry] + listed)
    planned = [p for image in todo for p in image_files(stems[image], overlay, json_report)]
    # resuming, the files of unfinished images are the cut-short run's own: rewritten
    present = [] if same else [p for p in planned if p.exists() or p.is_symlink()]
    kept = {out / n for n in resumed}
    present += sorted(set(recorded) - set(planned) - kept)
    if present and not overwrite:
        shown = ", ".join(str(p) for p in present[:3])
        more = f" and {len(present) - 3} more" if len(present) > 3 else ""
        raise Boxes2PixelsError(
            f"--out {out} already holds {len(present)} file(s) of an earlier prediction or "
            f"that this run would write ({shown}{more}). Nothing was written; choose a new "
            "folder, or pass --overwrite to replace them (an earlier b2p predict run's "
            "outputs are removed first; other files are kept). A run cut short resumes by "
            "itself when rerun with the same model and settings"
        )
    remove = sorted(set(recorded) - kept) if overwrite else []
    return FolderPlan(todo, sorted(resumed), remove)


class Journal:
    """``OUT/.b2p_predict.journal.jsonl`` of a running prediction: one flushed line per image."""

    def __init__(self, out: Path, resume: bool) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / JOURNAL_NAME
        self._file = open(self.path, "a" if resume else "w", encoding="utf-8")  # noqa: SIM115

    def add(self, outputs: list[str]) -> None:
        """Record an image whose files are written (flushed to the disk)."""
        self._file.write(json.dumps({"outputs": outputs}) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def finish(self) -> None:
        """Close and remove the journal (the run's summary now lists every output)."""
        self._file.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the journal, keeping it (the run stopped early: a rerun resumes)."""
        self._file.close()
