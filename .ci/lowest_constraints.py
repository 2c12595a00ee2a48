"""Print pip constraints pinning each runtime dependency in pyproject.toml to the lowest version it declares.

`make test-lowest` installs with these and runs the unit tests: the lower bounds in pyproject.toml are tested, not
guessed. Covered: [project] dependencies and the product's extras (local, otel); the test tools are not pinned low.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_EXTRAS = ("local", "otel")
_LOWER = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(?P<spec>[^;]*)")


def lowest(requirement: str) -> str | None:
    """``name==X`` for a requirement with a ``>=X`` bound (extras dropped: constraints cannot carry them)."""
    match = _LOWER.match(requirement)
    if match is None:
        return None
    for clause in (c.strip() for c in match["spec"].split(",")):
        if clause.startswith(">="):
            return f"{match['name']}=={clause[2:].strip()}"
    return None


def main(path: str) -> int:
    project = tomllib.loads(Path(path).read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in _EXTRAS:
        requirements += project["optional-dependencies"].get(extra, [])
    unbounded = []
    for requirement in requirements:
        pin = lowest(requirement)
        if pin is None:
            unbounded.append(requirement)
        else:
            print(pin)
    for requirement in unbounded:
        print(f"# no lower bound declared: {requirement}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"))
