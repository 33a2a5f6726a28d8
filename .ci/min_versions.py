"""Print ``name==version`` for the declared minimum (``>=``) of the named dependencies.

Used by ``.ci/floors`` to pin the floors that ``pyproject.toml`` declares (a constraints
file), so the floors tested are always the floors declared. Usage:
``python .ci/min_versions.py NAME...``; ``python .ci/min_versions.py --check FILE`` then
checks that the installed versions are those a constraints file pins (``==``, ``<``).
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
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


def _release(version: str) -> tuple[int, ...]:
    """The leading numbers of a version: ``1.26.4`` -> (1, 26, 4)."""
    return tuple(int(n) for n in re.findall(r"\d+", version.split("+")[0])[:3])


def check(pins: Path) -> int:
    """Fail unless each ``name==version`` or ``name<version`` line of ``pins`` holds for the
    installed distribution; print what is installed."""
    wrong, found = [], []
    for line in pins.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(==|<)\s*([0-9][0-9A-Za-z.]*)", line.strip())
        if not match:
            continue
        name, op, wanted = match.groups()
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} is not installed")
            continue
        found.append(f"{name} {have}")
        holds = have == wanted if op == "==" else _release(have) < _release(wanted)
        if not holds:
            wrong.append(f"{name} {have} is installed where {pins} asks for {name}{op}{wanted}")
    if wrong:
        print(f"{pins}: the environment does not hold the pinned floors: {'; '.join(wrong)}")
        return 1
    print("floors installed:", ", ".join(found))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"] and len(sys.argv) == 3:
        sys.exit(check(Path(sys.argv[2])))
    sys.exit(main(sys.argv[1:]))
