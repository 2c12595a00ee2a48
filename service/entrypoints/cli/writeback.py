"""`refracture writeback status|replay`: show the write-back outbox, or put dead-lettered jobs back in the queue."""

from __future__ import annotations

import argparse

from service.composition.cli import command_parts
from service.usecases.audit import system_record

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """status|replay, --patient, --limit."""
    parser.add_argument("action", choices=["status", "replay"])
    parser.add_argument("--patient", action="append", help="replay only this Patient id; repeat for several")
    parser.add_argument("--limit", type=int, default=50, help="dead jobs to list")


def run(args: argparse.Namespace) -> int:
    """Show the write-back outbox, or put dead-lettered jobs back in the queue."""
    with command_parts() as parts:
        store = parts.writebacks
        if args.action == "replay":
            replayed = store.replay_writebacks(args.patient or None, parts.core.clock())
            print(f"replayed {len(replayed)} write-back(s): they are sent at the next delivery run")
            return 0
        state = store.read_ehr_state()
        counts = store.writeback_counts()
        print(f"EHR: {parts.core.settings.ehr_base_url or '(none: pull mode)'}")
        if state:
            print(f"write mode: {state['mode']} ({state['detail']}; checked {state['checked_at']:%Y-%m-%d %H:%M})")
        print(f"jobs: {counts['jobs'] or 'none'}; oldest pending since {counts['oldest_pending_at'] or '-'}")
        dead = store.dead_writebacks(args.limit)
        for job in dead:
            # Patient ids are the EHR's own, shown to the operator who must act on them; no clinical data.
            print(
                f"  dead: Patient/{job['patient_id']} after {job['attempts']} attempt(s), "
                f"{job['last_status'] or '-'}: {job['last_error']}"
            )
        # Whose ids were shown on a terminal joins the audit trail, under refracture's own name.
        now = parts.core.clock()
        parts.audit.record(
            [system_record(now, "export", "refracture writeback status", patient_id=j["patient_id"]) for j in dead]
        )
    return 0
