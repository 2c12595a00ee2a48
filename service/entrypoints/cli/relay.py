"""`refracture relay`: publish every pending change once (what beat does on a schedule)."""

from __future__ import annotations

import argparse

from service.composition.cli import command_parts

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(_: argparse.Namespace) -> int:
    """Publish every pending change once (what beat does on a schedule)."""
    with command_parts() as parts:
        print(f"published {parts.relay.ring()} patient changes")
    return 0
