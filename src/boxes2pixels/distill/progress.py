"""What a training run shows while it runs: on a terminal a Rich progress bar, elsewhere (a
scheduler's log file, a pipe) a plain line every ``log_every`` steps with windows/s and ETA;
a summary line per epoch either way; and TensorBoard scalars when the optional
``tensorboard`` package is installed."""

from __future__ import annotations

import math
import time
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


def format_duration(seconds: float) -> str:
    """``seconds`` as ``1h02m03s``, ``2m03s`` or ``45s``."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


class EpochProgress:
    """Progress of the epochs: the running loss and a summary line per epoch, shown as a Rich
    progress bar on a terminal, else as a plain line every ``log_every`` steps.

    Args:
        show: display anything at all (rank 0 with ``config.progress``); when False every
            method only keeps the running loss.
        log_every: steps between two plain lines (when the output is not a terminal).
        interactive: draw the bar (True) or write plain lines (False); None: a bar exactly
            when standard error is a terminal.
    """

    def __init__(self, show: bool, log_every: int = 50, interactive: bool | None = None) -> None:
        self.show = show
        self.log_every = max(1, log_every)
        self._loss = 0.0
        self._n = 0
        self._console = Console(stderr=True)
        self.interactive = self._console.is_terminal if interactive is None else interactive
        self._progress: Progress | None = None
        self._lines = show and not self.interactive
        self._epoch_label = ""
        self._steps = 0
        self._done = 0
        self._windows = 0
        self._started = 0.0
        if show and self.interactive:
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
        self._epoch_label = f"epoch {epoch + 1}/{epochs}"
        self._steps, self._done, self._windows = steps, 0, 0
        self._started = time.perf_counter()
        if self._progress is None:
            return None
        return self._progress.add_task(self._epoch_label, total=steps, info="")

    def advance(self, task: TaskID | None, loss: float, skipped: int, windows: int = 0) -> None:
        """One step of ``windows`` training samples done with ``loss`` (non-finite losses are
        left out of the mean)."""
        if math.isfinite(loss):
            self._loss += loss
            self._n += 1
        self._done += 1
        self._windows += windows
        if self._lines and (self._done % self.log_every == 0 or self._done == self._steps):
            self._line(skipped)
        if self._progress is not None and task is not None:
            info = f"loss {self._loss / max(self._n, 1):.4f}"
            if skipped:
                info += f" skipped {skipped}"
            self._progress.update(task, advance=1, info=info)

    def _line(self, skipped: int) -> None:
        elapsed = time.perf_counter() - self._started
        rate = self._windows / elapsed if elapsed > 0 else 0.0
        eta = elapsed / self._done * (self._steps - self._done) if self._done else 0.0
        self._console.print(
            f"{self._epoch_label}: step {self._done}/{self._steps}, loss "
            f"{self._loss / max(self._n, 1):.4f}"
            + (f", skipped {skipped}" if skipped else "")
            + f", {rate:.1f} windows/s, ETA {format_duration(eta)}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )

    def note(self, message: str) -> None:
        """A one-line message (e.g. a validation pass starting), when showing anything."""
        if self.show:
            self._console.print(message, highlight=False, markup=False, soft_wrap=True)

    def finish(self, task: TaskID | None, row: dict[str, Any]) -> None:
        """Close the epoch's bar and print its ``metrics.csv`` row as one line."""
        if not self.show:
            return
        if self._progress is not None and task is not None:
            self._progress.remove_task(task)

        def fmt(v: Any) -> str:
            return "—" if v is None else f"{v:.4f}"

        self._console.print(
            f"epoch {row['epoch']}: loss {row['loss']:.4f} (binary {row['loss_binary']:.4f}, "
            f"fine {row['loss_fine']:.4f}), corrected {100 * row['corrected_share']:.3g}%"
            f"{', skipped ' + str(row['skipped_steps']) if row['skipped_steps'] else ''} | val "
            f"mIoU {fmt(row['val_miou'])}, anomaly mIoU {fmt(row['val_anomaly_miou'])}, "
            f"binary IoU {fmt(row['val_binary_iou'])}"
            + (
                f" | full tiled anomaly mIoU {fmt(row['val_full_anomaly_miou'])}"
                if row.get("val_full_anomaly_miou") is not None
                else ""
            )
            + f" | {row['time_s']:.1f}s"
            + (f" (validation {row['val_time_s']:.1f}s)" if row.get("val_time_s") else ""),
            highlight=False,
            soft_wrap=True,
        )

    def close(self) -> None:
        """Stop the live display."""
        if self._progress is not None:
            self._progress.stop()


@contextmanager
def epoch_progress(
    show: bool, log_every: int = 50, interactive: bool | None = None
) -> Iterator[EpochProgress]:
    """An :class:`EpochProgress` that is closed however the block ends."""
    reporter = EpochProgress(show, log_every, interactive)
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
