"""boxes2pixels: pixel-level defect segmentation learned from bounding boxes."""

from __future__ import annotations

__version__ = "0.1.0"
