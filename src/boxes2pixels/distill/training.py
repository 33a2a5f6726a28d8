"""What ``b2p train`` does, as functions: build the datasets and the student of a
configuration, then run the :class:`~.loop.Distiller`."""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from ..config import TrainConfig
from ..data.cache import DecodedCache
from ..data.crops import WindowSampler
from ..data.dataset import PseudoMaskDataset
from ..data.transforms import JointTransform
from ..data.yolo import load_data_yaml
from ..errors import Boxes2PixelsError
from ..student import Student
from ..student.backbone import no_backbone_weights
from .checkpoint import CONFIG_NAME, resumable, run_dir_problem
from .corrected import corrected_images, corrected_val_data, train_repeats
from .ddp import launched_as_main
from .loop import Distiller
from .state import FitResult


def build_student(
    config: TrainConfig, class_names: list[str], load_backbone_weights: bool = True
) -> nn.Module:
    """A ``Student`` with the architecture and backbone choices of ``config``.

    Args:
        config: the training configuration (backbone, init, weights, mode, switches, imgsz).
        class_names: names of the label values, background first.
        load_backbone_weights: load the pretrained or file backbone weights now; ``False``
            when every weight comes from a checkpoint next (resuming), so nothing is
            downloaded or read twice. The student still records its original initialisation.
    """
    with nullcontext() if load_backbone_weights else no_backbone_weights():
        return Student(
            num_classes=len(class_names),
            class_names=list(class_names),
            backbone=config.backbone,
            feature_indices=config.feature_indices,
            decoder_channels=config.decoder_channels,
            detail_branch=config.detail_branch,
            binary_head=config.binary_head,
            backbone_mode=config.backbone_mode,
            backbone_init=config.backbone_init,
            backbone_weights=(
                str(config.backbone_weights) if config.backbone_weights is not None else None
            ),
            imgsz=config.imgsz,
            train_layerscale=config.train_layerscale,
            crop_size=config.crop_size,
        )


def build_datasets(config: TrainConfig) -> tuple[Dataset, Dataset | None]:
    """Training and validation datasets of ``config``, as ``b2p train`` builds them.

    The training split is augmented (unless ``config.augment`` is off); validation uses the
    ``val_split`` when ``data.yaml`` defines it, otherwise ``None`` (with a warning). With
    ``validate_on`` ``corrected`` it is the human-corrected images instead, and corrected
    training images appear ``corrected_repeat`` times per epoch (see :mod:`.corrected`).

    Raises:
        Boxes2PixelsError: ``config.data`` or ``config.masks`` is unset.
        DatasetError: the dataset or its masks are unusable.
    """
    _require_data(config)
    data = load_data_yaml(config.data)
    corrected = corrected_images(config)
    cache = decoded_cache(config)
    transform = None
    if config.augment:
        transform = JointTransform(
            hflip=config.hflip,
            vflip=config.vflip,
            scale_crop=config.scale_crop,
            min_scale=config.min_scale,
            colour=config.colour_jitter,
            hue=config.hue_jitter,
        )
    train_data = PseudoMaskDataset(
        data,
        config.masks,
        config.train_split,
        imgsz=config.imgsz,
        transform=transform,
        missing=config.missing_masks,
        seed=config.seed,
        repeats=train_repeats(config, corrected),
        window=training_windows(config),
        windows_per_image=config.windows_per_image,
        cache=cache,
    )
    if config.validate_on == "corrected":
        return train_data, corrected_val_data(data, config, corrected)
    if config.val_split not in data.splits:
        warnings.warn(
            f"{data.yaml_path}: no '{config.val_split}' split; training without validation "
            "(best/ will hold the final weights)",
            stacklevel=2,
        )
        return train_data, None
    val_data = PseudoMaskDataset(
        data,
        config.masks,
        config.val_split,
        imgsz=config.imgsz,
        missing=config.missing_masks,
        native=config.crop_size > 0,  # validated tiled, as b2p predict will run it
        cache=cache,
    )
    return train_data, val_data


def decoded_cache(config: TrainConfig) -> DecodedCache | None:
    """The decoded-image cache of ``config.cache`` (``None`` when off). Nothing is decoded
    here: the datasets build their entries when ``Distiller.fit`` starts (after the run
    directory is checked) or at their first item."""
    if config.cache == "off":
        return None
    report = None
    if config.progress:
        import sys

        def report(message: str) -> None:
            print(message, file=sys.stderr, flush=True)

    root = config.resolved_cache_root() if config.cache == "disk" else None
    return DecodedCache(config.cache, root, workers=max(1, config.workers), report=report)


def training_windows(config: TrainConfig) -> WindowSampler | None:
    """The window sampler of ``config.crop_size`` (``None`` when 0: whole images resized)."""
    if config.crop_size == 0:
        return None
    return WindowSampler(config.crop_size, config.crop_defect_prob, config.crop_jitter)


def train(config: TrainConfig) -> FitResult:
    """Everything ``b2p train`` does: :func:`build_datasets`, a new student from ``config``,
    and ``Distiller.fit``.

    Raises:
        Boxes2PixelsError: ``config.data`` or ``config.masks`` is unset, or the dataset or
            run directory is unusable.
    """
    _require_data(config)
    if launched_as_main():  # fail before the (slow) model construction
        problem = run_dir_problem(Path(config.out), config.resume, config.overwrite)
        if problem:
            raise Boxes2PixelsError(problem)
    train_data, val_data = build_datasets(config)
    torch.manual_seed(config.seed)
    # a resumed run takes every weight from its checkpoint; a run with nothing to resume
    # starts again and needs its backbone weights like a new one
    resuming = bool(config.resume) and resumable(Path(config.out))
    student = build_student(config, train_data.class_names, load_backbone_weights=not resuming)
    return Distiller(student, config).fit(train_data, val_data)


def settings_file(out: Path, resume: bool, config_file: Path | None = None) -> Path | None:
    """The settings file a run reads: ``config_file`` when given, else, when resuming, the
    run's own ``out/config.yaml`` (if it is there), else none."""
    if config_file is None and resume and (Path(out) / CONFIG_NAME).is_file():
        return Path(out) / CONFIG_NAME
    return config_file


def _require_data(config: TrainConfig) -> None:
    if config.data is None or config.masks is None:
        raise Boxes2PixelsError("training needs a data.yaml (data) and a mask folder (masks)")
