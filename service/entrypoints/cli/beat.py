"""`refracture beat`: run Celery beat (exactly one per deployment: two would duplicate every schedule)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from service.entrypoints.cli.startup import add_skip_check, celery_options, ready_to_start
from service.platform.logs import log_level

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--skip-check."""
    add_skip_check(parser)


def run(args: argparse.Namespace) -> int:
    """Run Celery beat (exactly one per deployment: two would duplicate every schedule)."""
    if not ready_to_start("beat", args):
        return 1
    # Imported here, not at the top: after the start-up check, which names a missing broker transport with its fix
    # where this import would only fail (tests/integration/test_startup_check.py).
    from workers.celery_app import app  # noqa: PLC0415

    app.start(
        [
            *celery_options(),
            "beat",
            "--loglevel",
            log_level(),
            "--schedule",
            str(Path(tempfile.gettempdir()) / "refracture-beat-schedule"),
        ]
    )
    return 0
