"""`refracture relay`: publish every pending change once (what beat does on a schedule)."""

from __future__ import annotations

import argparse

from service.composition.bootstrap import bootstrap

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(_: argparse.Namespace) -> int:
    """Publish every pending change once (what beat does on a schedule)."""
    container = bootstrap()
    try:
        print(f"published {container.relay.ring()} patient changes")
    finally:
        container.close()
    return 0
