"""``b2p teachers``: the registered teachers, their source packages and what is missing."""

from __future__ import annotations

import typer

from ._common import handle_errors


@handle_errors
def teachers_command() -> None:
    """List the teachers (entry-point group [bold]boxes2pixels.teachers[/]): the package that
    does the work, whether it is installed, the extra that installs it, and the input size.

    A third-party package adds a teacher by declaring an entry point in that group; any
    other class can be used with [bold]--teacher pkg.module:Class[/].
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..teachers.catalog import teacher_catalog

    table = Table(
        title="Teachers",
        caption="input size: the long side a teacher resizes the image (or crop) to; "
        "native: it works at the image's own resolution",
    )
    columns = ("name", "source package", "installed", "extra / install", "input size")
    for column in (*columns, "registered by", "object"):
        table.add_column(column, overflow="fold")
    for status in teacher_catalog():
        entry = status.entry
        if status.error:
            installed, install = "[red]error[/]", escape(status.error)
        else:
            installed = "yes" if status.installed else "[yellow]no[/]"
            extra = f"boxes2pixels[{status.extra}]" if status.extra else "-"
            install = escape(status.install_hint or extra)
        size = "native" if status.input_size is None else f"{status.input_size} px"
        table.add_row(
            escape(entry.name),
            escape(status.source or entry.distribution),
            installed,
            install,
            size,
            escape(f"{entry.distribution} {entry.version}"),
            escape(entry.value),  # names from installed packages
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``b2p teachers`` to ``app``."""
    app.command("teachers")(teachers_command)
