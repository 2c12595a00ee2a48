"""`refracture sweep`: run the daily sweep once (what beat runs every day)."""

from __future__ import annotations

import argparse

from service.composition.cli import command_parts

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--all."""
    parser.add_argument("--all", action="store_true", help="every patient, not only the due ones (after an upgrade)")


def run(args: argparse.Namespace) -> int:
    """Run the daily sweep once (what beat runs every day)."""
    with command_parts() as parts:
        outcome = parts.sweeper.sweep(everyone=args.all)
    print(
        f"swept {outcome.patients} patients: {outcome.opened} alerts opened, {outcome.resolved} resolved, "
        f"{outcome.care_plans} care plans updated"
    )
    return 0
