"""`refracture notify`: send today's notification digests once (what beat runs every day)."""

from __future__ import annotations

import argparse

from service.composition.cli import command_parts

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--dry-run."""
    parser.add_argument("--dry-run", action="store_true", help="say what would be sent, send nothing")


def run(args: argparse.Namespace) -> int:
    """Send today's digests (--dry-run: only say what would go); 1 when one failed."""
    with command_parts() as parts:
        outcome = parts.digests.run(dry_run=args.dry_run)
    verb = "would send" if args.dry_run else "new"
    for owner, channel, items in outcome.planned:
        print(f"{verb}: {channel} to {owner}, {items} item{'s' if items != 1 else ''}")
    if not args.dry_run:
        print(f"notifications of {outcome.day.isoformat()}: {outcome.sent} sent, {outcome.failed} failed")
    return 1 if outcome.failed else 0
