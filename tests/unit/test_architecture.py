"""The one import rule import-linter cannot say: the domain imports only the pure part of the standard library.

The layers, the forbidden drivers and frameworks per layer, and the development tools kept out of the product are
import-linter contracts in pyproject.toml, checked by `make lint` (docs/adr/0006-layers-and-ports.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import ROOT

# What the pure domain may import: no I/O, no clock reading (time is passed in), no frameworks.
PURE = {
    "__future__",
    "dataclasses",
    "datetime",
    "enum",
    "typing",
    "collections",
    "math",
    "decimal",
    "functools",
    "itertools",
    "hashlib",
    "statistics",
    "bisect",
    "re",
    "json",
}

DOMAIN = sorted((ROOT / "service" / "domain").rglob("*.py"))


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", DOMAIN, ids=lambda path: path.stem)
def test_the_domain_imports_only_itself_and_the_pure_standard_library(path: Path) -> None:
    foreign = {i for i in imports(path) if i.split(".")[0] not in PURE and not i.startswith("service.domain")}
    assert not foreign, f"the domain imports only itself and the standard library's pure modules: {foreign}"
