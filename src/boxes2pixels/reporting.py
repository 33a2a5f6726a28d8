"""Generic pieces of the written reports (``b2p demo``'s report, ``b2p benchmark``'s summary).

- :class:`Document`: headings, paragraphs, bullets, tables, code and pictures, rendered
  identically to Markdown (pictures as PNG files next to it) and to one self-contained HTML
  page (the same PNG bytes embedded as base64 ``data:`` URIs); :func:`write_document`.
- Metrics: :data:`METRIC_LABELS` and :func:`format_metric` (as ``b2p evaluate`` prints them).
- Pictures: :func:`png_bytes`, :func:`plot_curves` (matplotlib line plots per epoch) and the
  panel helpers :func:`enlarge`, :func:`fit_height` and :func:`labelled_row` (tiles side by
  side with titles and colour legends, built on :mod:`boxes2pixels.viz`).
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import viz
from .io import write_bytes_atomic, write_text_atomic

METRIC_LABELS: dict[str, str] = {
    "miou": "mIoU",
    "anomaly_miou": "anomaly mIoU",
    "anomaly_f1": "anomaly F1",
    "binary_iou": "binary IoU",
    "binary_f1": "binary F1",
    "binary_precision": "binary precision",
    "binary_recall": "binary recall",
}
"""Column titles of the summary metrics, by key of ``SegmentationScores.to_dict()``."""


def format_metric(value: float | None, missing: str = "-") -> str:
    """A metric as ``b2p evaluate`` prints it: 4 decimals, ``missing`` when undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{float(value):.4f}"


# --------------------------------------------------------------------------------------------
# document


@dataclass
class Picture:
    """A PNG picture of a document: file name (in the Markdown's picture folder) and bytes."""

    name: str
    png: bytes
    alt: str
    caption: str = ""


@dataclass
class Document:
    """Blocks rendered identically to Markdown and HTML.

    Inline text may use ``**bold**`` and ```code```; everything else is escaped for HTML.
    """

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        """A section heading."""
        self.blocks.append(("h2", text))

    def paragraph(self, text: str) -> None:
        """A paragraph of inline text."""
        self.blocks.append(("p", text))

    def bullets(self, items: Sequence[str]) -> None:
        """A bulleted list of inline texts."""
        self.blocks.append(("ul", list(items)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A table of inline texts."""
        self.blocks.append(("table", (list(header), [list(r) for r in rows])))

    def code(self, text: str) -> None:
        """A preformatted block (shell commands)."""
        self.blocks.append(("code", text))

    def picture(self, picture: Picture) -> None:
        """A picture with its caption."""
        self.blocks.append(("img", picture))

    @property
    def pictures(self) -> list[Picture]:
        """Every picture, in order."""
        return [b for kind, b in self.blocks if kind == "img"]

    def to_markdown(self, picture_dir: str = ".") -> str:
        """Markdown; pictures are referenced as ``picture_dir/<name>``."""
        lines = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "h2":
                lines += [f"## {value}", ""]
            elif kind == "p":
                lines += [value, ""]
            elif kind == "ul":
                lines += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                header, rows = value
                lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
                lines.append("|" + "|".join("---" for _ in header) + "|")
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                lines.append("")
            elif kind == "code":
                lines += ["```bash", value, "```", ""]
            elif kind == "img":
                lines += [f"![{value.alt}]({picture_dir}/{value.name})", ""]
                if value.caption:
                    lines += [f"*{value.caption}*", ""]
        return "\n".join(lines).rstrip() + "\n"

    def to_html(self) -> str:
        """A self-contained HTML page; pictures embedded as base64 PNG."""
        body: list[str] = [f"<h1>{html.escape(self.title)}</h1>"]
        body += [_html_block(kind, value) for kind, value in self.blocks]
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(self.title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
        )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1400px;
margin:2em auto;padding:0 1em;line-height:1.45;color:#222}
h1{margin-bottom:.3em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .6em}
th{background:#f3f3f3}td{font-variant-numeric:tabular-nums}
pre{background:#f6f6f6;padding:.7em;overflow-x:auto}code{font-size:.92em}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.92em;color:#444;margin-top:.3em}
"""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _inline_html(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def _html_block(kind: str, value: Any) -> str:
    if kind == "h2":
        return f"<h2>{_inline_html(value)}</h2>"
    if kind == "p":
        return f"<p>{_inline_html(value)}</p>"
    if kind == "ul":
        return "<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in value) + "</ul>"
    if kind == "table":
        header, rows = value
        head = "".join(f"<th>{_inline_html(h)}</th>" for h in header)
        rows_html = "".join(
            "<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>"
    if kind == "code":
        return f"<pre><code>{html.escape(value)}</code></pre>"
    data = base64.b64encode(value.png).decode("ascii")
    caption = f"<figcaption>{_inline_html(value.caption)}</figcaption>" if value.caption else ""
    return (
        f'<figure><img alt="{html.escape(value.alt)}" '
        f'src="data:image/png;base64,{data}">{caption}</figure>'
    )


def write_document(
    doc: Document,
    out: str | Path,
    *,
    stem: str = "report",
    files_dir: str = "report_files",
    with_html: bool = True,
    prune: bool = False,
) -> list[Path]:
    """Write ``out/<stem>.md`` (pictures in ``out/<files_dir>/``) and ``out/<stem>.html``.

    ``prune``: also remove the PNG files in ``files_dir`` that this document does not show
    (an earlier, longer document's pictures), after the Markdown that shows these is written.

    Returns:
        The Markdown file, then the HTML page when ``with_html``.
    """
    out = Path(out)
    for pic in doc.pictures:
        write_bytes_atomic(out / files_dir / pic.name, pic.png)
    written = [out / f"{stem}.md"]
    write_text_atomic(written[0], doc.to_markdown(files_dir))
    if prune:
        shown = {pic.name for pic in doc.pictures}
        for old in (out / files_dir).glob("*.png"):
            if old.name not in shown:
                old.unlink()
    if with_html:
        written.append(out / f"{stem}.html")
        write_text_atomic(written[1], doc.to_html())
    return written


# --------------------------------------------------------------------------------------------
# pictures


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB ``uint8`` image encoded as PNG."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 RGB image
        raise RuntimeError("OpenCV could not encode the picture as PNG")
    return buf.tobytes()


@dataclass(frozen=True)
class Curve:
    """One plot of :func:`plot_curves`: the row key it draws, its title, a factor (100 for
    percentages) and whether its y axis starts at zero."""

    key: str
    title: str
    factor: float = 1.0
    from_zero: bool = False


def plot_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    curves: Sequence[Curve],
    *,
    mark_epoch: int | None = None,
    figsize: tuple[float, float] = (12.0, 3.6),
    dpi: int = 100,
) -> bytes:
    """Per-epoch line plots side by side, one line per history, as a PNG of figsize × dpi.

    Args:
        histories: label → rows (one per epoch; ``epoch`` and the curves' keys, NaN when
            missing).
        curves: the plots, left to right.
        mark_epoch: an epoch (1-based) marked by a dotted line just before it.
        figsize: figure size in inches.
        dpi: pixels per inch.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    styles = ("-", "--", ":", "-.")
    for ax, curve in zip(axes, curves, strict=True):
        for i, (label, rows) in enumerate(histories.items()):
            epochs = [r.get("epoch", j + 1) for j, r in enumerate(rows)]
            values = [r.get(curve.key, math.nan) * curve.factor for r in rows]
            ax.plot(epochs, values, styles[i % len(styles)], marker="o", markersize=3, label=label)
        if mark_epoch is not None and any(histories.values()):
            ax.axvline(mark_epoch - 0.5, color="grey", linewidth=0.8, linestyle=":")
        if curve.from_zero:
            ax.set_ylim(bottom=0.0)
        ax.set_title(curve.title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if len(histories) > 1:
        axes[0].legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def enlarge(array: np.ndarray, scale: int) -> np.ndarray:
    """An image or mask enlarged ``scale`` times with nearest neighbours (pixels stay aligned)."""
    if scale == 1:
        return array
    h, w = array.shape[:2]
    return cv2.resize(array, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)


def fit_height(image: np.ndarray, height: int) -> np.ndarray:
    """An image shrunk (nearest neighbours) to at most ``height`` pixels, aspect kept."""
    if image.shape[0] <= height:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)


def labelled_row(
    tiles: Sequence[np.ndarray],
    titles: Sequence[str],
    class_names: Sequence[str],
    *,
    error_legend: bool = False,
) -> np.ndarray:
    """Tiles side by side under their titles, with the class-colour legend below them.

    Args:
        tiles: RGB images (resized to a common height by :func:`boxes2pixels.viz.panel`).
        titles: one title per tile.
        class_names: names of the label values, background first.
        error_legend: also explain the error-map colours (:func:`boxes2pixels.viz.error_map`).
    """
    row = viz.add_legend(viz.panel(list(tiles), list(titles)), list(class_names))
    return viz.add_error_legend(row) if error_legend else row
