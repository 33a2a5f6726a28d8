"""Pieces every ``b2p`` command shares: the console, error handling, common options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from ..errors import Boxes2PixelsError

console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

DeviceOption = typer.Option(
    "auto", "--device", help="auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps."
)


def handle_errors(func: F) -> F:
    """Turn expected errors into a red one-paragraph message and exit code 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Boxes2PixelsError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from exc
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: finished files are kept; rerun to continue.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
