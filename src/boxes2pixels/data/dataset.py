"""Training samples: (image, pseudo-mask) pairs of a dataset split, streamed from disk."""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DatasetError
from ..geometry import letterbox, letterbox_mask
from ..io import read_image
from .crops import WindowSampler
from .labelmaps import check_label_values, read_mask
from .transforms import JointTransform
from .yolo import YoloDataset, load_data_yaml


class PseudoMaskDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images of a split with their masks at ``<masks>/<split>/<mask_name>``.

    Each item is read from disk when asked for (memory does not grow with the dataset),
    optionally augmented, and letterboxed onto a square ``imgsz``×``imgsz`` canvas (aspect
    ratio kept; mask padding is 255 = ignore) so items stack into batches.

    Args:
        data: a ``YoloDataset`` or the path of its ``data.yaml``.
        masks: the mask folder (holding one sub-folder per split).
        split: ``train``, ``val`` or ``test``.
        imgsz: side of the square canvas, used as given: a multiple of the student's patch
            size (14 for DINOv2, 16 for DINOv3; ``TrainConfig`` checks it).
        transform: joint augmentation (``None`` for validation).
        missing: ``"error"`` raises on the first image without a mask; ``"skip"`` leaves
            such images out with a warning.
        seed: base seed of the augmentation; item ``i`` in epoch ``e`` always gets the same
            random draws, whatever the number of workers or processes.
        repeats: times an image appears per epoch, by mask name (default once; 0 leaves it
            out), e.g. to weight human-corrected masks.
        only: keep only the images with these mask names (``None``: all).
        window: draw one N×N window at native resolution per item instead of letterboxing
            the whole image (``b2p train --crop-size``, :mod:`boxes2pixels.data.crops`);
            ``transform`` then adds its flips and colour jitter, not its scale-crop.
        native: items are whole images at their own size, unscaled (validation of a
            crop-trained student, which predicts tiled); they do not stack, so batch 1.

    Items:
        ``(image, mask)``: ``uint8`` tensors 3×S×S (RGB, not normalised) and S×S; N×N with
        ``window``; 3×H×W and H×W with ``native``.

    Raises:
        DatasetError: the split has no images, or a mask is missing (``missing="error"``).
    """

    def __init__(
        self,
        data: YoloDataset | str | Path,
        masks: str | Path,
        split: str,
        imgsz: int = 518,
        transform: JointTransform | None = None,
        missing: Literal["error", "skip"] = "error",
        seed: int = 0,
        repeats: Mapping[str, int] | None = None,
        only: Collection[str] | None = None,
        window: WindowSampler | None = None,
        native: bool = False,
    ) -> None:
        self.data = data if isinstance(data, YoloDataset) else load_data_yaml(data)
        self.masks_root = Path(masks)
        self.split = split
        self.imgsz = imgsz
        self.transform = transform
        self.window = window
        self.native = native
        self.seed = seed
        self.epoch = 0
        mask_names = self.data.mask_names(split)
        if not mask_names:
            raise DatasetError(f"{self.data.yaml_path}: split '{split}' holds no images")
        split_dir = self.masks_root / split
        samples: list[tuple[Path, Path]] = []
        skipped: list[Path] = []
        for image, mask_name in mask_names.items():
            copies = 1 if repeats is None else repeats.get(mask_name, 1)
            if (only is not None and mask_name not in only) or copies == 0:
                continue
            mask = split_dir / mask_name
            if mask.is_file():
                samples.extend([(image, mask)] * copies)
            elif missing == "error":
                raise DatasetError(
                    f"{mask}: mask of image {image} not found (run `b2p label` for split "
                    f"'{split}', or pass --missing-masks skip to leave such images out)"
                )
            else:
                skipped.append(mask)
        if skipped:
            warnings.warn(
                f"{len(skipped)} image(s) of split '{split}' have no mask in {split_dir} and "
                f"are skipped (first: {skipped[0]})",
                stacklevel=2,
            )
        if not samples:
            raise DatasetError(f"{split_dir}: no masks for any image of split '{split}'")
        self.samples = samples
        self.skipped = skipped

    @property
    def class_names(self) -> list[str]:
        """Names of the label values: ``["background", *names]``."""
        return ["background", *self.data.names]

    @property
    def num_classes(self) -> int:
        """Number of label values including background."""
        return self.data.num_classes

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentation draws ``__getitem__`` makes."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The image (RGB uint8 H×W×3) and mask (H×W uint8) of item ``index``, unchanged."""
        image_path, mask_path = self.samples[index]
        image = read_image(image_path)
        mask = read_mask(mask_path)
        if mask.shape != image.shape[:2]:
            raise DatasetError(
                f"{mask_path}: mask is {mask.shape[1]}×{mask.shape[0]} but image {image_path} "
                f"is {image.shape[1]}×{image.shape[0]}"
            )
        check_label_values(mask, self.data.num_classes, mask_path)
        return image, mask

    def _window_item(
        self, image: np.ndarray, mask: np.ndarray, index: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """A window of item ``index`` (see ``window``), flipped and colour-jittered."""
        assert self.window is not None
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, mask = self.window.sample(image, mask, rng)
        if self.transform is not None:
            image, mask = replace(self.transform, scale_crop=0.0).geometric(image, mask, rng)
            image = self.transform.photometric(image, rng)
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        if self.window is not None or self.native:
            if self.window is not None:
                image, mask = self._window_item(image, mask, index)
            return (
                torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                torch.from_numpy(np.ascontiguousarray(mask)),
            )
        rng = None
        if self.transform is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, mask = self.transform.geometric(image, mask, rng)
        image_lb, (ch, cw) = letterbox(image, self.imgsz, multiple=1, square=True)
        mask_lb, _ = letterbox_mask(mask, self.imgsz, multiple=1, square=True)
        if self.transform is not None and rng is not None:
            image_lb[:ch, :cw] = self.transform.photometric(image_lb[:ch, :cw], rng)
        return (
            torch.from_numpy(np.ascontiguousarray(image_lb.transpose(2, 0, 1))),
            torch.from_numpy(np.ascontiguousarray(mask_lb)),
        )
