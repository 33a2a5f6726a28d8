"""Entry point of the ``b2p`` command line. Each sub-module registers its commands."""

from __future__ import annotations

import inspect

import typer

from . import (
    benchmark,
    convert,
    demo,
    evaluate,
    export,
    label,
    predict,
    profile,
    review,
    synth,
    teachers,
    train,
)

app = typer.Typer(
    name="b2p",
    help="boxes2pixels: turn YOLO box labels of defects into a pixel-level segmentation model.\n\n"
    "Pipeline: b2p label (boxes -> pseudo-masks) -> b2p train (student) -> b2p predict / "
    "b2p evaluate. Try `b2p demo` for the whole method on generated data.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)


def _reflow(doc: str) -> str:
    """Join the hard-wrapped lines of each docstring paragraph, so that the terminal wraps
    the help text at its own width; indented paragraphs (examples) are kept as written."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(
        p if p.startswith(" ") else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"boxes2pixels {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """boxes2pixels: turn YOLO box labels of defects into a pixel-level segmentation model."""


for _module in (synth, label, train, evaluate, predict, demo, benchmark, profile, export, convert):
    _module.register(app)
review.register(app)
teachers.register(app)
for _command in app.registered_commands:
    _text = _command.help or (_command.callback.__doc__ if _command.callback else None)
    if _text:
        _command.help = _reflow(_text)
