"""Pieces every ``b2p`` command shares: the console, error handling, typed option aliases.

Options used by several commands are declared once here as ``Annotated`` aliases (the way
huggingface_hub's ``_cli_utils`` does); a command gives only the default::

    def predict(..., precision: PrecisionOpt = "fp32", device: DeviceOpt = "auto") -> None:
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import Boxes2PixelsError

console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

DeviceOpt = Annotated[
    str,
    typer.Option("--device", help="auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps."),
]
OptionalDeviceOpt = Annotated[
    str | None,
    typer.Option("--device", help="auto (default: cuda, then mps, then cpu) | cpu | cuda:N | mps."),
]
PrecisionOpt = Annotated[
    str,
    typer.Option("--precision", help="auto (fastest exact path here) | fp32 | bf16 | fp16."),
]
OptionalPrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="auto | fp32 | bf16 | fp16 (the default is in the command's help).",
    ),
]
ImgszOpt = Annotated[
    int | None,
    typer.Option("--imgsz", min=14, help="Input side in pixels, a multiple of the patch size."),
]
BatchOpt = Annotated[int, typer.Option("--batch", min=1, help="Images per forward pass.")]
InferenceBatchOpt = Annotated[
    int | None,
    typer.Option(
        "--batch",
        min=1,
        help="Images (or windows, when tiled) per forward pass (default: 16 on a GPU, 4 on the "
        "CPU).",
    ),
]
OptionalBatchOpt = Annotated[
    int | None, typer.Option("--batch", min=1, help="Images per step (and process).")
]
BackboneOpt = Annotated[
    str | None,
    typer.Option(
        "--backbone",
        help="timm ViT name (default vit_small_patch14_dinov2.lvd142m; also "
        "vit_small_patch14_reg4_dinov2.lvd142m, vit_base_patch14_dinov2.lvd142m, "
        "vit_small_patch16_dinov3.lvd1689m with an --imgsz multiple of 16).",
    ),
]
BackboneInitOpt = Annotated[
    str | None,
    typer.Option(
        "--backbone-init",
        help="pretrained (default) | random. Random weights are for tests and offline demos.",
    ),
]
BackboneModeOpt = Annotated[
    str | None,
    typer.Option(
        "--backbone-mode",
        help="bitfit (default: biases and norms only) | frozen | full. With --backbone-init "
        "random use full (a random frozen backbone collapses).",
    ),
]
BackboneWeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--backbone-weights",
        help="Local backbone weights (official DINOv2 .pth or timm .safetensors).",
    ),
]
ConfigFileOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Training config file (YAML or TOML)."),
]
MAX_SEED = 2**32 - 1  # as boxes2pixels.config.MAX_SEED (not imported: pydantic is slow to load)
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", min=0, max=MAX_SEED, help="Random seed (0 to 2^32 - 1)."),
]
RevisionOpt = Annotated[
    str | None,
    typer.Option(
        "--revision",
        help="For a Hub id: branch, tag, commit or refs/pr/N (default: main).",
    ),
]
PaletteOpt = Annotated[
    bool,
    typer.Option(
        "--palette",
        help="Attach a colour palette to the mask PNGs (for image viewers). Default: plain "
        "grayscale class indices, which OpenCV and Detectron2 read correctly.",
    ),
]


def say(markup: str, text: str = "") -> None:
    """Print ``markup`` (trusted Rich markup) followed by ``text`` printed literally.

    Paths and messages from users or exceptions go in ``text``, so ``[left]`` in a file name
    is printed as written and never read as a style.
    """
    console.print(markup + escape(text), highlight=False)


def error_text(exc: BaseException) -> str:
    """The message of ``exc``. PyTorch re-raises an error of a DataLoader worker with the
    worker's traceback as its message; only the original message is kept."""
    text = str(exc)
    origin = f"\n{type(exc).__module__}.{type(exc).__qualname__}: "
    if "Original Traceback" in text and origin in text:
        text = text.split(origin, 1)[1].strip()
    return text


def handle_errors(func: F) -> F:
    """Turn expected errors into a red one-paragraph message and exit code 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Boxes2PixelsError as exc:
            say("[bold red]error:[/] ", error_text(exc))
            raise typer.Exit(1) from exc
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: finished files are kept; rerun to continue.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
