"""`refracture recalibrate`: recalibrate the risk model on the stored outcomes; register it when better on held-out
patients."""

from __future__ import annotations

import argparse

from service.composition.cli import command_parts
from service.usecases.recalibrate import report_lines

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--dry-run, --seed, --held-out, --retire."""
    parser.description = (
        "Builds the development dataset from stored data (prediction at each patient's first augmentation, "
        "new vertebral fracture within 2 years after it), fits a logistic recalibration on part of the patients and "
        "registers it as a new model version only when its held-out log-loss is lower beyond chance. Then run "
        "`refracture rescore`. See docs/model-card.md, 'Local recalibration'."
    )
    parser.add_argument("--dry-run", action="store_true", help="report only; register and store nothing")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fit/held-out split (default 1)")
    parser.add_argument(
        "--held-out", type=float, default=0.3, help="share of patients held out for the comparison (default 0.3)"
    )
    parser.add_argument(
        "--retire", action="store_true", help="take every registered calibration out of use (back to the literature)"
    )


def run(args: argparse.Namespace) -> int:
    """Recalibrate the risk model on the stored outcomes; register it when better on held-out patients."""
    with command_parts() as parts:
        if args.retire:
            retired = parts.calibrations.retire_all(parts.core.clock())
            print(f"retired {len(retired)} calibration(s); the literature model applies: run `refracture rescore`")
            return 0
        report = parts.recalibrator.run(seed=args.seed, held_out_share=args.held_out, dry_run=args.dry_run)
    print("\n".join(report_lines(report)))
    return 0
