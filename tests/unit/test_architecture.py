"""Import rules: the domain is pure, fhir.resources stays in one module, only the adapters touch drivers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

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

SOURCES = sorted((ROOT / "service").rglob("*.py")) + sorted((ROOT / "workers").rglob("*.py"))


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def uses(path: Path, prefix: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for name in imports(path))


@pytest.mark.parametrize("path", SOURCES, ids=module)
def test_import_rules(path: Path) -> None:
    name = module(path)
    if name.startswith("service.domain"):
        foreign = {i for i in imports(path) if i.split(".")[0] not in PURE and not i.startswith("service.domain")}
        assert not foreign, f"the domain imports only itself and the standard library's pure modules: {foreign}"
    if name != "service.fhir.r4":
        assert not uses(path, "fhir") or name.startswith("service.fhir"), "only service.fhir.r4 imports fhir.resources"
        assert not uses(path, "fhir.resources")
        assert not uses(path, "fhir_core")
    if not name.startswith(("service.adapters", "service.cli", "service.demo")):
        assert not uses(path, "psycopg"), "only the adapters talk to PostgreSQL"
        assert not uses(path, "psycopg_pool") or name == "service.bootstrap"
    if not name.startswith("service.api"):
        assert not uses(path, "fastapi")
        assert not uses(path, "starlette")
    if not name.startswith("workers") and name != "service.cli":  # the command line starts the workers
        assert not uses(path, "workers"), "nothing imports the worker entrypoint"
    if not name.startswith(("service.adapters", "workers")):
        assert not uses(path, "celery")
