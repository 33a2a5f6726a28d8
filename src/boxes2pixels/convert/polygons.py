"""Outlines and polygons of label map regions: OpenCV outer outlines (YOLO-seg) and exact
pixel-edge polygons (COCO, CVAT)."""

from __future__ import annotations

from itertools import pairwise

import cv2
import numpy as np

from ..data.labelmaps import Region


def instance_outlines(instance: Region) -> list[np.ndarray]:
    """Outer outlines of a component as (K, 2) ``int`` pixel coordinates (x, y).

    One outline for an 8-connected component; OpenCV's ``findContours`` with
    ``CHAIN_APPROX_SIMPLE`` (only the corners of straight runs are kept). Outlines with fewer
    than 3 points (a single pixel, a short straight line) are padded by repeating points so
    every outline is a valid polygon for COCO and Ultralytics.
    """
    x, y, w, h = instance.bbox
    crop = np.ascontiguousarray(instance.mask[y : y + h, x : x + w].astype(np.uint8))
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outlines = []
    for contour in contours:
        points = contour.reshape(-1, 2) + np.array([x, y])
        while len(points) < 3:
            points = np.concatenate([points, points[-1:]])
        outlines.append(points)
    return outlines


def _outside(mask: np.ndarray) -> np.ndarray:
    """True on the background pixels of ``mask`` that reach its border through background
    (4-connectivity); the other background pixels are holes."""
    padded = np.pad(mask.astype(np.uint8), 1)
    flood = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(padded, flood, (0, 0), 2, flags=4)
    return (padded == 2)[1:-1, 1:-1]


def _hole_free_pieces(
    mask: np.ndarray, limit: int | None = None
) -> list[tuple[int, int, np.ndarray]] | None:
    """``mask`` (bool) cut into 4-connected pieces without holes, each ``(x, y, crop)``: the
    mask is cut between the top row of each hole and the row below (which opens every hole),
    then split into its 4-connected components. Each piece's pixel-edge outline is one simple
    closed curve. ``None`` when there would be more than ``limit`` pieces."""
    holes = (~mask & ~_outside(mask)).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(holes, connectivity=4)
    cuts = sorted({int(stats[i, cv2.CC_STAT_TOP]) + 1 for i in range(1, count)})
    pieces: list[tuple[int, int, np.ndarray]] = []
    bounds = [0, *cuts, mask.shape[0]]
    for top, bottom in pairwise(bounds):
        band = mask[top:bottom].astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(band, connectivity=4)
        if limit is not None and len(pieces) + count - 1 > limit:
            return None
        for i in range(1, count):
            x, y, w, h = (int(v) for v in stats[i, :4])
            pieces.append((x, top + y, labels[y : y + h, x : x + w] == i))
    return pieces


def _edge_loop(piece: np.ndarray) -> np.ndarray:
    """The pixel-edge outline of a hole-free 4-connected piece: (K, 2) corner coordinates
    (x, y) of the pixel squares (pixel ``(x, y)`` spans ``[x, x+1] × [y, y+1]``), clockwise on
    screen, only the corners where the outline turns."""
    padded = np.pad(piece, 1)
    ys, xs = np.nonzero(piece)
    # (side free, start corner offset, end corner offset), the piece on the right-hand side
    sides = (
        (~padded[ys, xs + 1], (0, 0), (1, 0)),  # top
        (~padded[ys + 1, xs + 2], (1, 0), (1, 1)),  # right
        (~padded[ys + 2, xs + 1], (1, 1), (0, 1)),  # bottom
        (~padded[ys + 1, xs], (0, 1), (0, 0)),  # left
    )
    width = piece.shape[1] + 2
    starts, ends = [], []
    for free, (sx, sy), (ex, ey) in sides:
        starts.append((ys[free] + sy) * width + xs[free] + sx)
        ends.append((ys[free] + ey) * width + xs[free] + ex)
    following = dict(
        zip(np.concatenate(starts).tolist(), np.concatenate(ends).tolist(), strict=True)
    )
    first = next(iter(following))
    loop, point = [first], following[first]
    while point != first:
        loop.append(point)
        point = following[point]
    corners = np.asarray(loop)
    points = np.stack([corners % width, corners // width], axis=1)
    before, after = points - np.roll(points, 1, 0), np.roll(points, -1, 0) - points
    turns = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0] != 0
    return points[turns]


def pixel_polygons(mask: np.ndarray, max_polygons: int | None = None) -> list[np.ndarray] | None:
    """Polygons whose union is exactly the pixels of ``mask`` (H×W ``bool``).

    Each polygon follows the edges of the pixel squares (corner coordinates: pixel ``(x, y)``
    spans ``[x, x+1] × [y, y+1]``, the COCO and CVAT convention), so its area is its pixel
    count and pycocotools rasterises it back to exactly those pixels. A component with holes
    is cut into hole-free pieces (a COCO polygon cannot hold a hole) and pixels that touch
    only at a corner become separate polygons, so every polygon is simple (no self-touching)
    with at least 4 corners: a lone pixel is a unit square.

    Args:
        mask: the pixels to outline.
        max_polygons: give up (``None``) when more polygons would be needed (a diagonal 1-px
            crack needs one per pixel).

    Returns:
        (K, 2) ``int`` arrays of (x, y) corners, one per polygon; or ``None``.
    """
    pieces = _hole_free_pieces(np.asarray(mask, dtype=bool), max_polygons)
    if pieces is None:
        return None
    return [_edge_loop(crop) + np.array([x, y]) for x, y, crop in pieces]


def polygon_area(points: np.ndarray) -> float:
    """The area of a simple polygon ((K, 2) points; the shoelace formula)."""
    x, y = np.asarray(points, dtype=np.float64).T
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)
