"""What a training run shows while it runs: a Rich progress bar with a summary line per
epoch, and TensorBoard scalars when the optional ``tensorboard`` package is installed."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class EpochProgress:
    """Rich progress bar with the running loss and a summary line per epoch.

    Args:
        show: display anything at all (rank 0 with ``config.progress``); when False every
            method only keeps the running loss.
    """

    def __init__(self, show: bool) -> None:
        self.show = show
        self._loss = 0.0
        self._n = 0
        self._console = Console(stderr=True)
        self._progress: Progress | None = None
        if show:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()

    def start(self, epoch: int, epochs: int, steps: int) -> TaskID | None:
        """Open the bar of 0-based ``epoch`` (``steps`` long); returns its task."""
        self._loss, self._n = 0.0, 0
        if self._progress is None:
            return None
        return self._progress.add_task(f"epoch {epoch + 1}/{epochs}", total=steps, info="")

    def advance(self, task: TaskID | None, loss: float, skipped: int) -> None:
        """One step done with ``loss`` (non-finite losses are left out of the mean)."""
        if math.isfinite(loss):
            self._loss += loss
            self._n += 1
        if self._progress is not None and task is not None:
            info = f"loss {self._loss / max(self._n, 1):.4f}"
            if skipped:
                info += f" skipped {skipped}"
            self._progress.update(task, advance=1, info=info)

    def finish(self, task: TaskID | None, row: dict[str, Any]) -> None:
        """Close the epoch's bar and print its ``metrics.csv`` row as one line."""
        if self._progress is None or task is None:
            return
        self._progress.remove_task(task)

        def fmt(v: Any) -> str:
            return "—" if v is None else f"{v:.4f}"

        self._console.print(
            f"epoch {row['epoch']}: loss {row['loss']:.4f} (binary {row['loss_binary']:.4f}, "
            f"fine {row['loss_fine']:.4f}), corrected {100 * row['corrected_share']:.3g}%"
            f"{', skipped ' + str(row['skipped_steps']) if row['skipped_steps'] else ''} | val "
            f"mIoU {fmt(row['val_miou'])}, anomaly mIoU {fmt(row['val_anomaly_miou'])}, "
            f"binary IoU {fmt(row['val_binary_iou'])} | {row['time_s']:.1f}s",
            highlight=False,
        )

    def close(self) -> None:
        """Stop the live display."""
        if self._progress is not None:
            self._progress.stop()


@contextmanager
def epoch_progress(show: bool) -> Iterator[EpochProgress]:
    """An :class:`EpochProgress` that is closed however the block ends."""
    reporter = EpochProgress(show)
    try:
        yield reporter
    finally:
        reporter.close()


def open_tensorboard(run: Path, step: int) -> Any:
    """A ``SummaryWriter`` on ``run/tensorboard`` (events after ``step`` are dropped, so a
    resumed run does not repeat them), or None without the ``tensorboard`` package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(run / "tensorboard"), purge_step=step or None)


def log_tensorboard(writer: Any, row: dict[str, Any]) -> None:
    """Log the finite numbers of an epoch's row (``val_*`` under ``val/``, the rest under
    ``train/``) at the epoch number."""
    for key, value in row.items():
        if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
            group = "val" if key.startswith("val_") else "train"
            writer.add_scalar(f"{group}/{key.removeprefix('val_')}", value, row["epoch"])
    writer.flush()
