"""docs/cli.md is the CLI reference Typer generates from the commands' own help, so it
cannot drift from what `b2p --help` says (it had: options removed from the CLI were still
documented). Regenerate it with the command in the assertion message."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
COMMAND = [
    "-m", "typer", "boxes2pixels.cli.main", "utils", "docs", "--name", "b2p",
    "--title", "CLI reference",
]  # fmt: skip


def test_docs_cli_md_is_the_generated_reference(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    done = subprocess.run(
        [sys.executable, *COMMAND, "--output", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    regenerate = shlex.join(["python", *COMMAND, "--output", "docs/cli.md"])
    assert out.read_text(encoding="utf-8") == DOCS.read_text(encoding="utf-8"), regenerate
