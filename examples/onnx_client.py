"""Segment photos with an ``.onnx`` file written by ``b2p export``, without boxes2pixels.

Needs only numpy, opencv-python-headless, Pillow and onnxruntime. Everything else comes from
the file's ``boxes2pixels`` metadata (``preprocessing`` and ``postprocessing`` spell out every
rule), and the label maps equal those of ``b2p predict MODEL.onnx --runtime onnx`` (whole
images, fp32) pixel for pixel::

    python examples/onnx_client.py model.onnx photo.jpg photos/ --out masks

writes ``masks/<name>.png``: 8-bit label maps at each photo's size (0 background, k class k of
the metadata's ``class_names``). A static export (``b2p export --static``) is handled too: its
metadata says to pad every image to the graph's fixed size.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

METADATA_KEY = "boxes2pixels"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ExportedFile:
    """An onnxruntime session on the file and the pipeline its metadata describes."""

    def __init__(self, path: Path) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise SystemExit(f"{path}: cannot load ONNX model ({exc})") from exc
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise SystemExit(f"{path}: no '{METADATA_KEY}' metadata (not written by b2p export)")
        meta = json.loads(raw)
        if "preprocessing" not in meta:
            raise SystemExit(f"{path}: metadata format {meta.get('format')}: re-export it")
        self.pre: dict[str, Any] = meta["preprocessing"]
        self.post: dict[str, Any] = meta["postprocessing"]
        self.class_names: list[str] = meta["class_names"]
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, image: np.ndarray) -> np.ndarray:
        """The H×W uint8 label map of an RGB uint8 image."""
        padded, content = self.letterbox(image)
        x = self.normalize(padded)
        logits = self.session.run(["fine"], {self.input_name: x})[0][0]
        logits = logits[:, : content[0], : content[1]]
        if logits.shape[1:] != image.shape[:2]:
            logits = resize_bilinear(logits, image.shape[:2])
        return logits.argmax(axis=0).astype(np.uint8)

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """Resize to the long side (aspect kept), pad black at the bottom and right."""
        h, w = image.shape[:2]
        scale = self.pre["resize"]["long_side"] / max(h, w)
        ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
        if (ch, cw) != (h, w):
            interpolation = cv2.INTER_AREA if ch < h else cv2.INTER_LINEAR
            image = cv2.resize(image, (cw, ch), interpolation=interpolation)
        pad = self.pre["pad"]
        if "to_size" in pad:
            ph, pw = pad["to_size"]
        else:
            m = pad["to_multiple"]
            ph, pw = -(-ch // m) * m, -(-cw // m) * m
        out = np.full((ph, pw, 3), pad["value"], dtype=np.uint8)
        out[:ch, :cw] = image
        return out, (ch, cw)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """uint8 H×W×3 RGB -> normalised float32 1×3×H×W."""
        x = image.astype(np.float32) / np.float32(255)
        mean = np.asarray(self.pre["mean"], dtype=np.float32)
        std = np.asarray(self.pre["std"], dtype=np.float32)
        x = (x - mean) / std
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear source indices and weights along one axis (half-pixel centres)."""
    s = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = np.minimum(np.floor(s).astype(np.int64), n_in - 1)
    frac = s - i0
    w0, w1 = (1.0 - frac).astype(np.float32), frac.astype(np.float32)
    return i0, np.minimum(i0 + 1, n_in - 1), w0, w1


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """C×h×w float32 -> C×H×W: along the width, then the height; plain float32 arithmetic."""
    j0, j1, v0, v1 = taps(x.shape[2], size[1])
    cols = x[:, :, j0] * v0 + x[:, :, j1] * v1
    i0, i1, w0, w1 = taps(x.shape[1], size[0])
    return cols[:, i0] * w0[:, None] + cols[:, i1] * w1[:, None]


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 H×W×3, decoded as the metadata's ``decode`` rule says."""
    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(img, dtype=np.float64)
            hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
            grey = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
            return np.repeat(grey[..., None], 3, axis=2)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
        return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def image_paths(sources: list[str]) -> list[Path]:
    """The image files named, and those directly inside the folders named, sorted."""
    found: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found += sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif source.is_file():
            found.append(source)
        else:
            raise SystemExit(f"{source}: no such file or folder")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="an .onnx file written by `b2p export`")
    parser.add_argument("images", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG label maps")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: ONNX file not found")
    model = ExportedFile(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in image_paths(args.images):
        try:
            image = read_image(path)
        except OSError as exc:  # PIL's UnidentifiedImageError is one
            raise SystemExit(f"{path}: cannot read image ({exc})") from exc
        labels = model.predict(image)
        Image.fromarray(labels).save(args.out / f"{path.stem}.png")
        print(f"{path} -> {args.out / (path.stem + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
