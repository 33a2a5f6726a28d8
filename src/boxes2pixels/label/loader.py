"""Images and their labels decoded in a background thread, a few ahead of the teacher."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.yolo import ImageLabels, YoloDataset
from ..errors import ImageReadError, LabelFormatError
from ..io import read_image
from .records import WorkItem


@dataclass
class Loaded:
    """One work item with its labels and pixels, or the error that reading them raised."""

    item: WorkItem
    labels: ImageLabels | None = None
    image: np.ndarray | None = None
    error: BaseException | None = None


def load(ds: YoloDataset, item: WorkItem, strict: bool) -> Loaded:
    """Read one item's labels and image; a bad label file or image becomes ``error``."""
    try:
        labels = ds.labels(item.image, strict=strict)
        image = read_image(item.image)
    except (ImageReadError, LabelFormatError) as exc:
        return Loaded(item, error=exc)
    return Loaded(item, labels=labels, image=image)


def prefetch(
    ds: YoloDataset, items: Sequence[WorkItem], strict: bool, depth: int
) -> Iterator[Loaded]:
    """Decode images in a background thread, at most ``depth`` ahead of the consumer."""
    q: queue.Queue[Loaded | None] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(obj: Loaded | None) -> bool:
        """Queue ``obj`` unless the consumer has stopped; False when it has."""
        while not stop.is_set():
            try:
                q.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def worker() -> None:
        try:
            for item in items:
                if not put(load(ds, item, strict)):
                    return
        except BaseException as exc:  # surface unexpected loader failures in the main thread
            put(Loaded(WorkItem("?", Path("?"), "?"), error=exc))
        put(None)

    thread = threading.Thread(target=worker, name="b2p-image-loader", daemon=True)
    thread.start()
    try:
        while (loaded := q.get()) is not None:
            yield loaded
    finally:
        stop.set()
        thread.join(timeout=5)
