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
from .cache import CachedPair, DecodedCache
from .crops import DefectIndex, WindowSampler
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
        windows_per_image: with ``window``, the windows each item draws from one decoded
            photo (``b2p train --windows-per-image``); above 1 the items are stacks.
        cache: a :class:`~boxes2pixels.data.cache.DecodedCache` that decodes each photo and
            mask once (``b2p train --cache``); built by :meth:`prepare_cache`, or at the first
            item. Items are the same with and without it.

    Items:
        ``(image, mask)``: ``uint8`` tensors 3×S×S (RGB, not normalised) and S×S; N×N with
        ``window``; K×3×N×N and K×N×N with ``windows_per_image`` K > 1; 3×H×W and H×W with
        ``native``.

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
        windows_per_image: int = 1,
        cache: DecodedCache | None = None,
    ) -> None:
        if windows_per_image < 1:
            raise ValueError(f"windows_per_image must be at least 1, got {windows_per_image}")
        self.data = data if isinstance(data, YoloDataset) else load_data_yaml(data)
        self.masks_root = Path(masks)
        self.split = split
        self.imgsz = imgsz
        self.transform = transform
        self.window = window
        self.native = native
        self.windows_per_image = windows_per_image if window is not None else 1
        self.cache = cache
        self._cached: list[CachedPair] | None = None
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

    def prepare_cache(self) -> None:
        """Build (or check) the cache entries of every item now; nothing without a cache.

        Raises:
            CacheError: the disk or memory cannot hold the cache.
        """
        if self.cache is not None and self._cached is None:
            self._cached = self.cache.prepare(self.samples, self.data.num_classes)

    def source(self, index: int) -> tuple[np.ndarray, np.ndarray, DefectIndex | None]:
        """Image, mask and (from the cache) the mask's defect index of item ``index``; from
        the cache they are memory maps (``disk``), read only where they are indexed."""
        if self.cache is None:
            image, mask = self.load(index)
            return image, mask, None
        self.prepare_cache()
        assert self._cached is not None
        return self._cached[index].arrays()

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The image (RGB uint8 H×W×3) and mask (H×W uint8) of item ``index``, unchanged."""
        if self.cache is not None:
            image, mask, _ = self.source(index)
            return np.array(image), np.array(mask)
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
        self,
        image: np.ndarray,
        mask: np.ndarray,
        rng: np.random.Generator,
        defects: DefectIndex | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """A window (see ``window``) drawn with ``rng``, flipped and colour-jittered."""
        assert self.window is not None
        image, mask = self.window.sample(image, mask, rng, defects)
        if self.transform is not None:
            image, mask = replace(self.transform, scale_crop=0.0).geometric(image, mask, rng)
            image = self.transform.photometric(image, rng)
        return image, mask

    def _windows(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Window item ``index``: one window, or a stack of ``windows_per_image`` from one
        decode (window ``j`` drawn with the seed ``(seed, epoch, index, j)``)."""
        image, mask, defects = self.source(index)
        if defects is None and self.windows_per_image > 1:
            defects = DefectIndex.of_mask(mask)  # counted once for all the windows
        k = self.windows_per_image
        if k == 1:
            rngs = [np.random.default_rng([self.seed, self.epoch, index])]
        else:
            rngs = [np.random.default_rng([self.seed, self.epoch, index, j]) for j in range(k)]
        pairs = [self._window_item(image, mask, rng, defects) for rng in rngs]
        images = np.stack([im.transpose(2, 0, 1) for im, _ in pairs])
        masks = np.stack([m for _, m in pairs])
        if k == 1:
            images, masks = images[0], masks[0]
        return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(
            np.ascontiguousarray(masks)
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.window is not None:
            return self._windows(index)
        image, mask = self.load(index)
        if self.native:
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


class ValidationWindows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A fixed, seeded sample of windows of each validation photo (``b2p train
    --val-windows``): the per-epoch validation score of a crop-trained student, whose cost is
    bounded by the sample, not by the photos' size.

    Item ``i`` holds ``per_image`` windows of ``size``×``size`` at native resolution (no
    scale jitter, no augmentation) of photo ``i`` of ``data``: the first half (rounded up)
    centred near a random defect pixel (anywhere when the photo has none), the rest anywhere.
    The draws depend only on ``seed`` and ``i``, so every epoch (and a resumed run) scores the
    same windows. A window is exactly one tile of ``size``, so segmenting it tiled is the
    same as ``b2p predict --tile`` on that tile.

    Args:
        data: the validation photos: a ``PseudoMaskDataset`` (with ``native``; its cache,
            if any, is used) or any dataset of ``(image 3×H×W, mask H×W)`` tensors.
        size: the window side (the training ``crop_size``).
        per_image: windows per photo.
        seed: the run's seed.

    Items:
        ``(images, masks)``: ``uint8`` tensors K×3×N×N and K×N×N (K = ``per_image``).
    """

    SEED_TAG = 0x76616C  # keeps these draws apart from the training windows'

    def __init__(self, data: Dataset, size: int, per_image: int, seed: int = 0) -> None:
        if per_image < 1:
            raise ValueError(f"per_image must be at least 1, got {per_image}")
        self.data = data
        self.size = size
        self.per_image = per_image
        self.seed = seed
        self._defect = WindowSampler(size, defect_prob=1.0, jitter=0.0)
        self._anywhere = WindowSampler(size, defect_prob=0.0, jitter=0.0)

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    @property
    def windows(self) -> int:
        """Windows scored per validation pass."""
        return len(self) * self.per_image

    def prepare_cache(self) -> None:
        """Build the photos' cache (see :meth:`PseudoMaskDataset.prepare_cache`)."""
        prepare = getattr(self.data, "prepare_cache", None)
        if callable(prepare):
            prepare()

    def _source(self, index: int) -> tuple[np.ndarray, np.ndarray, DefectIndex]:
        source = getattr(self.data, "source", None)
        if callable(source):
            image, mask, defects = source(index)
        else:
            image_t, mask_t = self.data[index]
            image, mask, defects = image_t.permute(1, 2, 0).numpy(), mask_t.numpy(), None
        return image, mask, defects if defects is not None else DefectIndex.of_mask(mask)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask, defects = self._source(index)
        rng = np.random.default_rng([self.seed, self.SEED_TAG, index])
        on_defect = (self.per_image + 1) // 2
        images, masks = [], []
        for j in range(self.per_image):
            sampler = self._defect if j < on_defect else self._anywhere
            win, win_mask = sampler.sample(image, mask, rng, defects)
            images.append(win.transpose(2, 0, 1))
            masks.append(win_mask)
        return (
            torch.from_numpy(np.ascontiguousarray(np.stack(images))),
            torch.from_numpy(np.ascontiguousarray(np.stack(masks))),
        )
