"""bench/sweep: the daily sweep over 100,000 patients of whom 5 % are due, next to the raw index query.

    .venv/bin/python -m bench.sweep [--patients 100000] [--due 0.05]   (from the repository root)

Seeds a private database with N synthetic patients' facts and their next-check dates (5 % today, the rest later),
then times the sweep (what beat runs daily: assess and evaluate every due patient, write alerts and CarePlans),
a second sweep the same day (nothing left to do), and the bare SQL that finds the due patients. Target (issue 15):
< 5 s.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import UTC, date, datetime, timedelta

import psycopg

from bench.cpu import backend_pids, cpu_seconds, load_average
from bench.database import private_database
from bench.ingest import machine
from bench.rescore import seed
from service.platform.config import Settings
from tests.support.parts import build_parts

TODAY = date(2026, 11, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--due", type=float, default=0.05)
    args = parser.parse_args()
    with private_database() as (services, database_url):
        seed(database_url, args.patients)
        rng = random.Random(7)
        checked = datetime(2026, 11, 1, tzinfo=UTC)
        with (
            psycopg.connect(database_url) as conn,
            conn.cursor() as cur,
            cur.copy("COPY alert_schedule (patient_id, next_check, checked_at) FROM STDIN") as copy,
        ):
            for n in range(args.patients):
                due = rng.random() < args.due
                late = TODAY - timedelta(days=rng.randint(0, 2))  # some were due before today: a missed day
                later = TODAY + timedelta(days=rng.randint(1, 300))
                copy.write_row((f"bench-{n:07d}", late if due else later, checked))
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("ANALYZE")
            due_count = conn.execute("SELECT count(*) FROM alert_schedule WHERE next_check <= %s", (TODAY,)).fetchone()
            started = time.perf_counter()
            conn.execute(
                "SELECT patient_id FROM alert_schedule WHERE next_check <= %s ORDER BY patient_id", (TODAY,)
            ).fetchall()
            raw_ms = (time.perf_counter() - started) * 1000
        now = datetime(2026, 11, 2, 2, 30, tzinfo=UTC)
        parts = build_parts(Settings(database_url=database_url, redis_url=services.redis_url), clock=lambda: now)
        try:
            print(f"bench/sweep on {machine()}")
            print(
                f"{args.patients:,} patients, {due_count[0] if due_count else 0:,} due today "
                f"({args.due:.0%}); raw index query for the due patients: {raw_ms:.1f} ms"
            )
            parts.resources.ping()
            pids = backend_pids(database_url)
            own, backends = cpu_seconds([os.getpid()]), cpu_seconds(pids)
            load = load_average()
            started = time.perf_counter()
            outcome = parts.sweeper.sweep()
            seconds = time.perf_counter() - started
            own = cpu_seconds([os.getpid()]) - own
            backends = (
                cpu_seconds(pids) - backends + cpu_seconds([p for p in backend_pids(database_url) if p not in pids])
            )
            print(
                f"\nsweep (load average {load} before, {load_average()} after): {seconds:.1f} s (target < 5 s) for "
                f"{outcome.patients:,} patients = {outcome.patients / seconds:,.0f} patients/s; "
                f"{outcome.opened:,} alerts opened, {outcome.care_plans:,} care plans written"
            )
            print(
                f"  CPU: {own:.2f} s Python + {backends:.2f} s PostgreSQL = {own + backends:.2f} s "
                f"({(own + backends) / max(outcome.patients, 1) * 1e3:.2f} ms per due patient); "
                f"ratio to the raw index query: {seconds * 1000 / raw_ms:,.0f}"
            )
            started = time.perf_counter()
            again = parts.sweeper.sweep()
            print(
                f"the same sweep again: {time.perf_counter() - started:.2f} s for {again.patients} patients "
                "(safe to run twice)"
            )
        finally:
            parts.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
