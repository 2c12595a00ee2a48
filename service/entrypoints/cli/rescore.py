"""`refracture rescore`: re-assess every patient (or the ones named) with the current model."""

from __future__ import annotations

import argparse
import os
import time

from service.entrypoints.parallel_rescore import rescore_in_parallel
from service.platform.config import get_settings

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--patient, --batch, --workers."""
    parser.add_argument("--patient", action="append", help="a Patient id; repeat for several")
    parser.add_argument("--batch", type=int, default=1000, help="patients per transaction")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: one per CPU)")


def run(args: argparse.Namespace) -> int:
    """Re-assess every patient (or the ones named) with the current model."""
    started = time.perf_counter()
    outcome = rescore_in_parallel(get_settings(), args.patient or None, args.batch, args.workers)
    seconds = time.perf_counter() - started
    handled = outcome.assessed + outcome.unchanged + outcome.not_applicable
    print(
        f"rescored {handled} patients in {seconds:.1f} s: {outcome.assessed} new assessments, "
        f"{outcome.unchanged} unchanged, {outcome.not_applicable} without an augmentation"
    )
    return 0
