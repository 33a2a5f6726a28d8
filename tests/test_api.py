"""The package's public surface: every advertised name resolves, and the import stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import boxes2pixels


@pytest.mark.parametrize("name", [n for n in boxes2pixels.__all__ if n != "__version__"])
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(boxes2pixels, name) is not None


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        boxes2pixels.no_such_thing  # noqa: B018


def test_import_and_cli_help_do_not_import_torch_or_sam() -> None:
    code = (
        "import sys, boxes2pixels\n"
        "from typer.testing import CliRunner\n"
        "from boxes2pixels.cli.main import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "names = ('torch', 'segment_anything', 'mobile_sam', 'cv2')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_text_is_reflowed_not_hard_wrapped() -> None:
    from typer.testing import CliRunner

    from boxes2pixels.cli.main import app

    result = CliRunner().invoke(app, ["label", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    # the docstring breaks this sentence after "of the"; the help must not
    assert "for every image of the chosen splits" in result.output
