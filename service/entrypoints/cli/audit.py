"""`refracture audit verify|export`: the hash chain recomputed, and the trail as NDJSON AuditEvents for a SIEM."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from service.composition.cli import command_parts
from service.fhir.audit_event import audit_ndjson_line
from service.usecases.audit import system_record
from service.usecases.ports.audit import ChainAnchor

__all__ = ["add_arguments", "run"]


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-01-01T00:00:00Z")
    return moment


def _anchor(text: str) -> ChainAnchor:
    seq, _, digest = text.partition(":")
    try:
        return ChainAnchor(int(seq), bytes.fromhex(digest))
    except ValueError:
        raise argparse.ArgumentTypeError("SEQ:HASH, e.g. 1234:9f86d0…, as an earlier verify printed it") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """verify|export, --since, --until, --out, --after-seq, --expect."""
    parser.description = (
        "verify: recompute the hash chain from the last purge checkpoint to the chain head; exit 1 and "
        "name the seq and row id of every edited or missing row. export: every audit row from --since on as FHIR "
        "AuditEvent, one per line (application/fhir+ndjson), each with its chain seq and hash; the export is itself "
        "audited. See docs/security.md, 'Audit trail'."
    )
    parser.add_argument("action", choices=["verify", "export"])
    parser.add_argument("--since", type=_moment, help="export: rows recorded at or after this moment (ISO 8601)")
    parser.add_argument("--until", type=_moment, help="export: rows recorded before this moment")
    parser.add_argument("--out", type=Path, help="export: write to this file instead of stdout")
    parser.add_argument(
        "--after-seq", type=int, default=0, help="export: only rows after this chain position (the last seq you have)"
    )
    parser.add_argument(
        "--expect",
        type=_anchor,
        action="append",
        default=[],
        metavar="SEQ:HASH",
        help="verify: a row's hash kept outside the database (an earlier verify's head, the SIEM's copy); repeatable",
    )


def run(args: argparse.Namespace) -> int:
    """Run `refracture audit`: verify exits 0 when the chain is intact, 1 when it is not."""
    with command_parts() as parts:
        if args.action == "verify":
            report = parts.audit.verify(args.expect)
            for problem in report.problems:
                print(f"BROKEN at {problem}")
            head = f"head {report.head.seq}:{report.head.hash.hex()} (keep it: --expect SEQ:HASH checks it later)"
            start = f"from checkpoint seq {report.anchor.seq}" if report.anchor.seq else "from the first row"
            verdict = "intact" if report.intact else f"NOT intact: {len(report.problems)} problem(s)"
            print(f"audit trail {verdict}: {report.rows} rows checked {start}; {head}")
            return 0 if report.intact else 1
        count = 0
        out = args.out.open("wb") if args.out else sys.stdout.buffer
        try:
            for row in parts.audit.export(args.since, args.until, args.after_seq):
                out.write(audit_ndjson_line(row))
                count += 1
        finally:
            if args.out:
                out.close()
            else:
                out.flush()
        # The dump holds every patient's access history: who took it is on the trail too.
        parts.audit.record(
            [system_record(parts.core.clock(), "export", "refracture audit export", detail=f"{count} AuditEvent(s)")]
        )
        print(f"exported {count} AuditEvent(s)", file=sys.stderr)
        return 0
