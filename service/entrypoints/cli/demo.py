"""`refracture demo`: everything on one machine (the work is in service/entrypoints/demo.py)."""

from __future__ import annotations

import argparse

# The `local` extra's PostgreSQL and Redis are imported there only when none answers: this import needs no extra.
from service.entrypoints.demo import run_demo

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--patients, --port, --check, --timeout."""
    parser.add_argument("--patients", type=int, default=25)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--check",
        "--exit-after-load",
        dest="check",
        action="store_true",
        help="load, verify that the worker processed every patient, print the summary and stop (exit 0 or 1)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds the worker may take for the cohort (default 300)"
    )


def run(args: argparse.Namespace) -> int:
    """Services, migrations, API, worker, beat, and a synthetic cohort."""
    return run_demo(patients=args.patients, port=args.port, check=args.check, timeout_s=args.timeout)
