"""`refracture synth`: write a synthetic cohort's transaction Bundles: one file per patient, or NDJSON on stdout."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from service.devtools.synth import iter_cohort
from service.fhir.jsonio import dumps

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--patients, --seed, --today, --prefix, and --out or --ndjson."""
    parser.description = (
        "Synthetic patients after vertebroplasty or kyphoplasty as FHIR R4 transaction Bundles, one per "
        "patient: demographics, the fracture and its operation, DXA, CT Hounsfield units, cement and alignment "
        "measures, comorbidities and medication histories (denosumab on time, late or stopped, follow-on drugs, no "
        "treatment). The same generator feeds `refracture demo` and bench/. The same --seed and --today give the "
        "same bytes. Post a file with: curl -X POST $BASE/fhir -H 'Content-Type: application/fhir+json' "
        "-H 'Authorization: Bearer TOKEN' --data-binary @FILE"
    )
    parser.add_argument("--patients", type=int, default=25, help="how many patients (default 25)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--today",
        type=date.fromisoformat,
        default=None,
        help="the day the records are read, YYYY-MM-DD; nothing is dated after it (default: today)",
    )
    parser.add_argument("--prefix", default="synth", help="id prefix: Patient/{prefix}-000001, ... (default synth)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="folder to write {patient id}.json into (created if missing)")
    where.add_argument("--ndjson", action="store_true", help="write one Bundle per line to stdout instead")


def run(args: argparse.Namespace) -> int:
    """Write the cohort to --out (one file per patient) or to stdout (--ndjson)."""
    bundles = iter_cohort(args.patients, args.seed, args.today, args.prefix)
    if args.ndjson:
        for bundle in bundles:
            sys.stdout.write(dumps(bundle).decode() + "\n")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for bundle in bundles:
        (out / f"{bundle['entry'][0]['resource']['id']}.json").write_bytes(dumps(bundle) + b"\n")
    print(f"wrote {args.patients} transaction Bundles to {out}", file=sys.stderr)
    return 0
