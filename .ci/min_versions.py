"""Print ``name==version`` for the declared minimum (``>=``) of the named dependencies.

Used by ``.ci/run`` to install the floors that ``pyproject.toml`` declares, so the floors
tested are always the floors declared. Usage: ``python .ci/min_versions.py NAME...``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


def main(names: list[str]) -> int:
    """Print one pin per name; fail when a name has no ``>=`` floor in the dependencies."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    floors = {}
    for spec in dependencies:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)", spec.strip())
        if match:
            floors[match[1].lower().replace("_", "-")] = match[2]
    missing = [n for n in names if n.lower() not in floors]
    if missing:
        print(f"no '>=' floor in pyproject.toml for: {', '.join(missing)}", file=sys.stderr)
        return 1
    print("\n".join(f"{name}=={floors[name.lower()]}" for name in names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
