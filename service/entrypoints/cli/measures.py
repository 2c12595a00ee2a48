"""`refracture measures`: compute the FLS quality measures for each month of a period, by site, and keep the
MeasureReports (docs/measures.md): what a monthly scheduler runs."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date

from service.composition.cli import command_parts
from service.domain.fls_measures import Period, months

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--start, --end."""
    parser.add_argument("--start", type=date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--end", type=date.fromisoformat, required=True, help="last day (included), YYYY-MM-DD")


def run(args: argparse.Namespace) -> int:
    """Compute and keep the measures of each month from --start to --end; 2 when --end is before --start."""
    period = Period(args.start, args.end)
    if period.end < period.start:
        print("--end must be on or after --start", file=sys.stderr)
        return 2
    with command_parts() as parts:
        started = time.perf_counter()
        rows = parts.measures.evaluate(period, months(period))
    pending = sum(1 for r in rows if r.resource["status"] == "pending")
    print(
        f"kept {len(rows)} MeasureReports for {len(months(period))} month(s) in {time.perf_counter() - started:.1f} s "
        f"({pending} pending: windows still open); served at /fhir/MeasureReport"
    )
    return 0
