"""Training configuration: every hyper-parameter of the paper, settable in four layers.

Precedence, lowest to highest: the defaults below < a config file (YAML or TOML, given as
``TrainConfig.load(config_file=...)`` or ``b2p train --config``) < environment variables
``B2P_<FIELD>`` (for example ``B2P_EPOCHS=50``) < explicit arguments (the CLI's flags).
"""

from __future__ import annotations

import contextvars
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from .errors import ConfigError

_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "b2p_config_file", default=None
)


# NumPy's seed sequences refuse negative seeds and torch's generators overflow past 2^64
# (the loop seeds with seed + epoch), so a seed is checked here, not deep in the data loader.
MAX_SEED = 2**32 - 1


class TrainConfig(BaseSettings):
    """Resolved configuration of a training run (``b2p train`` / ``Distiller``).

    Defaults are the paper's (DESIGN.md), except where a run-time choice has no paper value
    (workers, device, precision, batch: the research code used batch 1; any size works).
    """

    model_config = SettingsConfigDict(
        env_prefix="B2P_", extra="forbid", validate_assignment=True, case_sensitive=False
    )

    # --- data and run -----------------------------------------------------------------
    data: Path | None = Field(None, description="data.yaml of the YOLO dataset")
    masks: Path | None = Field(None, description="pseudo-mask folder with <split>/ sub-folders")
    out: Path = Field(Path("runs/train"), description="run directory")
    train_split: str = "train"
    val_split: str = "val"
    missing_masks: Literal["error", "skip"] = Field(
        "error",
        description="an image without a mask: stop with an error, or skip it with a warning",
    )
    corrected_images: list[str] | None = Field(
        None,
        description="keys <split>/<mask name> of human-corrected masks; None: read from the "
        "mask folder's manifest.json (b2p label --corrections records them there)",
    )
    corrected_repeat: int = Field(
        1,
        ge=0,
        description="times each human-corrected training image is seen per epoch; 0 keeps "
        "them out of training (then validating on them is an unbiased check)",
    )
    validate_on: Literal["val", "corrected"] = Field(
        "val",
        description="val: the val split's pseudo-masks (the paper); corrected: the "
        "human-corrected images of every split, against their corrected masks (best epoch "
        "and early stopping then follow them)",
    )
    resume: bool = Field(
        False, description="continue from RUN_DIR/last.ckpt (from epoch 1 when none was saved)"
    )
    overwrite: bool = Field(False, description="allow writing into a non-empty RUN_DIR")

    # --- schedule ---------------------------------------------------------------------
    epochs: int = Field(200, ge=1)
    imgsz: int = Field(
        518, ge=14, description="square training size (multiple of the backbone's patch size)"
    )
    crop_size: int = Field(
        0,
        ge=0,
        description="0: each whole image resized to imgsz (the paper); N: N×N windows at "
        "native resolution, validation and prediction tiled (multiple of the patch size)",
    )
    crop_defect_prob: float = Field(
        0.5, ge=0, le=1, description="with crop_size: share of windows centred on a defect pixel"
    )
    crop_jitter: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="with crop_size: a window covers N·s source pixels, s drawn from "
        "[1 − jitter, 1 + jitter], resized to N×N",
    )
    windows_per_image: int = Field(
        1,
        ge=1,
        description="with crop_size: windows drawn from each decoded photo per visit (batch "
        "must be a multiple); an epoch still visits every photo once, so it holds this many "
        "times the windows and steps",
    )
    cache: Literal["off", "disk", "ram"] = Field(
        "off",
        description="decoded-image cache: off (decode each photo for every item), disk "
        "(memory-mapped .npy arrays under cache_dir, kept between runs), ram (in memory)",
    )
    cache_dir: Path | None = Field(
        None,
        description="cache root (the decoded arrays go to <cache_dir>/decoded/); None: "
        "<out>/.cache. The environment variable B2P_CACHE_DIR sets it (it is also the root of "
        "the OpenVINO cache)",
    )
    val_windows: int = Field(
        8,
        ge=0,
        description="with crop_size: the per-epoch validation score comes from this many "
        "fixed, seeded windows per validation photo (half on defects); 0: every photo tiled "
        "in full every epoch",
    )
    val_full_every: int = Field(
        0,
        ge=0,
        description="with crop_size and val_windows: also score every validation photo tiled "
        "in full every N epochs (val_full_* columns); 0: only after the last epoch (and an "
        "early stop)",
    )
    log_every: int = Field(
        50,
        ge=1,
        description="when the output is not a terminal: a progress line every N steps "
        "(windows/s, ETA)",
    )
    batch: int = Field(8, ge=1)
    workers: int = Field(2, ge=0)
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: fp16 on CUDA, bf16 on CPUs with bf16 units, else fp32"
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, description="random seed, 0 to 2^32 - 1")
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms")
    patience: int = Field(25, ge=0, description="early stopping; 0 disables it")
    progress: bool = Field(True, description="show a rich progress display")

    # --- optimisation -------------------------------------------------------------------
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 disables clipping")
    ema_decay: float = Field(0.999, ge=0, lt=1)
    ema_warmup: bool = Field(True, description="ramp the EMA decay as min(d, (1+t)/(10+t))")

    # --- losses -------------------------------------------------------------------------
    dice_beta: float = Field(0.4, gt=0)
    dice_eps: float = Field(1.0, gt=0)
    background_weight: float = Field(0.4, gt=0)
    defect_weight: float = Field(4.0, gt=0)
    binary_loss_weight: float = Field(0.5, ge=0)
    fine_loss_weight: float = Field(0.5, gt=0)
    tau: float = Field(0.9, gt=0, lt=1)
    self_correction: bool = True
    correction_warmup: int | None = Field(
        None, ge=0, description="epochs without correction; None: correction_warmup_fraction"
    )
    correction_warmup_fraction: float = Field(0.1, ge=0, le=1)

    # --- augmentation -------------------------------------------------------------------
    augment: bool = True
    hflip: float = Field(0.5, ge=0, le=1)
    vflip: float = Field(0.5, ge=0, le=1)
    scale_crop: float = Field(0.5, ge=0, le=1, description="probability of a random scale-crop")
    min_scale: float = Field(0.5, gt=0, le=1, description="smallest crop side, share of the image")
    colour_jitter: float = Field(0.2, ge=0, le=1, description="brightness/contrast/saturation")
    hue_jitter: float = Field(0.02, ge=0, le=0.5)

    # --- student (ablation switches) --------------------------------------------------
    backbone: str = "vit_small_patch14_dinov2.lvd142m"
    backbone_init: Literal["pretrained", "random"] = "pretrained"
    backbone_weights: Path | None = None
    backbone_mode: Literal["bitfit", "frozen", "full"] = "bitfit"
    train_layerscale: bool = Field(
        False, description="also train LayerScale in bitfit/frozen mode (random backbones)"
    )
    feature_indices: list[int] | None = None
    decoder_channels: int = Field(256, ge=1)
    detail_branch: bool = True
    binary_head: bool = True

    @model_validator(mode="after")
    def _imgsz_fits_patch(self) -> TrainConfig:
        from .student.timm_family import backbone_info

        patch = backbone_info(self.backbone).patch_size
        if self.imgsz % patch:
            near = max(patch, round(self.imgsz / patch) * patch)
            raise ValueError(
                f"imgsz must be a multiple of {patch} (the patch size of {self.backbone}), "
                f"got {self.imgsz}; e.g. imgsz {near}"
            )
        if self.crop_size % patch:
            near = max(patch, round(self.crop_size / patch) * patch)
            raise ValueError(
                f"crop_size must be 0 or a multiple of {patch} (the patch size of "
                f"{self.backbone}), got {self.crop_size}; e.g. crop_size {near}"
            )
        return self

    @model_validator(mode="after")
    def _windows_fit_batch(self) -> TrainConfig:
        if self.windows_per_image > 1 and not self.crop_size:
            raise ValueError(
                "windows_per_image applies to window training: set crop_size as well (with "
                "crop_size 0 each item is a whole resized photo)"
            )
        if self.windows_per_image > 1 and self.batch % self.windows_per_image:
            raise ValueError(
                f"batch ({self.batch}) must be a multiple of windows_per_image "
                f"({self.windows_per_image}): a step takes batch / windows_per_image photos"
            )
        return self

    @model_validator(mode="after")
    def _check_weights(self) -> TrainConfig:
        if self.backbone_weights is not None and self.backbone_init == "random":
            raise ValueError("backbone_weights is set but backbone_init is 'random'")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit arguments > ``B2P_`` environment > config file > defaults."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _CONFIG_FILE.get()
        if path is not None:
            if path.suffix.lower() == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    def __init__(self, **values: Any) -> None:
        """Validate ``values`` over the environment (and the config file of :meth:`load`).

        Raises:
            ConfigError: a value is invalid (one paragraph naming the file, when there is one,
                and every invalid field).
        """
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, _CONFIG_FILE.get())) from exc

    def __setattr__(self, name: str, value: Any) -> None:
        """Assign a field, validated like the constructor's values.

        Raises:
            ConfigError: the value is invalid.
        """
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, None)) from exc

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> TrainConfig:
        """Build a configuration from the four layers.

        Args:
            config_file: optional YAML (``.yaml``/``.yml``) or TOML (``.toml``) file whose keys
                are field names.
            **overrides: explicit values (highest precedence); ``None`` values are dropped,
                so a CLI flag that was not given does not override anything.

        Raises:
            ConfigError: the file is missing, unreadable or holds an invalid value (the
                message names the file), or an explicit or environment value is invalid.
        """
        path = Path(config_file) if config_file is not None else None
        if path is not None:
            if not path.is_file():
                raise ConfigError(f"{path}: config file not found")
            if path.suffix.lower() not in (".yaml", ".yml", ".toml"):
                raise ConfigError(f"{path}: config file must be .yaml, .yml or .toml")
        explicit = {k: v for k, v in overrides.items() if v is not None}
        token = _CONFIG_FILE.set(path)
        try:
            return cls(**explicit)
        except ConfigError:
            raise
        except (OSError, ValueError, TypeError, yaml.YAMLError) as exc:  # unreadable, unparsable
            where = path if path is not None else "B2P_* environment"
            detail = " ".join(str(exc).split())
            if isinstance(exc, TypeError):  # e.g. a YAML list instead of a mapping
                detail = "expected a mapping of setting names to values"
            raise ConfigError(f"{where}: cannot read the settings ({detail})") from exc
        finally:
            _CONFIG_FILE.reset(token)

    def resolved_correction_warmup(self) -> int:
        """Epochs trained without self-correction.

        ``correction_warmup`` when set (0 reproduces the research code), else
        ``max(1, round(correction_warmup_fraction · epochs))``.
        """
        if self.correction_warmup is not None:
            return self.correction_warmup
        return max(1, math.floor(self.correction_warmup_fraction * self.epochs + 0.5))

    def resolved_cache_root(self) -> Path:
        """The cache root: ``cache_dir`` (or ``B2P_CACHE_DIR``), else ``<out>/.cache``."""
        return self.cache_dir if self.cache_dir is not None else Path(self.out) / ".cache"

    def to_yaml(self) -> str:
        """The configuration as YAML (paths as strings), as written to ``RUN_DIR/config.yaml``."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _describe(exc: ValidationError, path: Path | None) -> str:
    """One paragraph naming the file (when there is one) and every invalid field."""
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            message = "unknown setting (not a field of TrainConfig)"
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] != "value_error" and not isinstance(err.get("input"), dict):
                message += f" (got {err.get('input')!r})"
        problems.append(f"{field}: {message}" if field else message)
    where = f"{path}: " if path is not None else ""
    return f"{where}invalid training configuration: " + "; ".join(problems)
