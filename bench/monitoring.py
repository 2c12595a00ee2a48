"""bench/monitoring: one daily model-monitoring run over 100,000 assessed patients (docs/model-monitoring.md).

    .venv/bin/python -m bench.monitoring [--patients 100000]   (from the repository root)

Seeds a private database by COPY with N synthetic patients' facts as bench/rescore does (an index operation 30-900
days ago, so about a fifth have a closed 2-year window), a new vertebral fracture after the index for one in eight
(the outcomes calibration counts) and alerts for most; assesses every patient as `refracture rescore` does (not
timed). Then times what the daily beat task `refracture.model_monitoring` does (`ModelMonitor.run`: drift of the
inputs and predictions by month of index, alert shares, calibration over the patients whose 2-year window has
closed), and each of its reads alone. Target (docs/model-monitoring.md): well within a day's quiet hour; a run over
~30 s would want a second look.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from bench.cpu import print_load_change
from bench.database import private_database
from bench.ingest import machine
from bench.rescore import FACT_COLUMNS, synthetic_facts
from bench.seeding import ALERT_CODES, ALERT_COPY, RESOURCE_COPY, seeded
from service.adapters.postgres.monitoring import PostgresMonitoringStore
from service.entrypoints.parallel_rescore import rescore_in_parallel
from service.platform.config import Settings
from service.usecases.model_monitoring import MONTHS_SHOWN
from tests.support.parts import build_parts


def seed(database_url: str, patients: int, today: date) -> tuple[int, int]:
    """COPY the cohort in: the counts of facts and alerts written."""
    rng = random.Random(19)
    recorded = datetime(2026, 1, 1, tzinfo=UTC)
    facts = alerts = 0
    resource_rows: list[tuple[str, str]] = []
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        columns = sql.SQL(", ").join(map(sql.Identifier, FACT_COLUMNS))
        with cur.copy(sql.SQL("COPY fact ({}) FROM STDIN").format(columns)) as copy:
            for n in range(patients):
                pid = f"bench-{n:07d}"
                rows, types = synthetic_facts(rng, pid, today)
                if rng.random() < 0.125:  # a new vertebral fracture after the index: an outcome
                    operated = next(r[5] for r in rows if r[1] == "vertebral-augmentation")
                    onset = operated + timedelta(days=rng.randint(20, 700))
                    new = Jsonb({"levels": ["T8"]})
                    rows.append((pid, "vertebral-fracture", None, None, None, onset, "active", new, "Condition"))
                    rows[-1] += (f"{pid}-new", 1, recorded)
                for row in rows:
                    copy.write_row(row)
                facts += len(rows)
                resource_rows += [(pid, t) for t in types]
        with cur.copy(RESOURCE_COPY) as copy:
            for pid, resource_type in resource_rows:
                copy.write_row((resource_type, f"{pid}-{resource_type}", 1, recorded, b"\x00", pid, Jsonb({})))
        with cur.copy(ALERT_COPY) as copy:
            for n in range(patients):
                for code in rng.sample(ALERT_CODES, rng.choice((0, 1, 1, 2))):
                    opened = recorded + timedelta(minutes=rng.randrange(300 * 24 * 60))
                    row = (uuid.uuid4(), f"bench-{n:07d}", code, "open", "routine", opened.date(), "bench")
                    copy.write_row((*row, Jsonb([]), "bench", opened, opened, None))
                    alerts += 1
    return facts, alerts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    load = os.getloadavg()
    with private_database() as (services, database_url):
        today = datetime.now(UTC).date()
        (facts, alerts), seconds = seeded(
            database_url, lambda: seed(database_url, args.patients, today - timedelta(days=30))
        )
        settings = Settings(database_url=database_url, redis_url=services.redis_url)
        started = time.perf_counter()
        outcome = rescore_in_parallel(settings, None, 1000, args.workers)
        assessed = time.perf_counter() - started
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE assessment")
        print(f"bench/monitoring on {machine()}")
        print(
            f"{args.patients:,} patients, {facts:,} facts, {alerts:,} alerts seeded by COPY in {seconds:.1f} s; "
            f"{outcome.assessed:,} assessed as `refracture rescore` does in {assessed:.1f} s (not timed below)"
        )
        parts = build_parts(settings)
        try:
            store = PostgresMonitoringStore(parts.core.pool)
            back = today.year * 12 + today.month - 1 - (MONTHS_SHOWN - 1)  # the months the run summarises
            since = date(back // 12, back % 12 + 1, 1)
            t0 = time.perf_counter()
            by_month = store.monthly_assessments(since)
            t1 = time.perf_counter()
            store.alert_patients(since)
            t2 = time.perf_counter()
            cases = parts.recalibrator.closed_cases(today)
            t3 = time.perf_counter()
            everyone, excluded = parts.recalibrator.dataset(today)  # the read the run made before
            t4 = time.perf_counter()
            assert everyone == cases
            cpu = time.process_time()
            t5 = time.perf_counter()
            record = parts.monitor.run()
            t6 = time.perf_counter()
            shown = sum(len(v) for v in by_month.values())
            print(
                f"\neach read alone:\n"
                f"  newest assessments by month of index ({shown:,} patients, {len(by_month)} months): "
                f"{t1 - t0:.2f} s\n"
                f"  alert shares: {t2 - t1:.2f} s\n"
                f"  outcomes for calibration, the patients operated 2 years before only ({len(cases):,} with a closed "
                f"2-year window, {sum(c.event for c in cases):,} events): {t3 - t2:.2f} s\n"
                f"  the same through the recalibration dataset (every patient's facts, as before; left out: "
                f"{dict(excluded)}): {t4 - t3:.2f} s = {(t4 - t3) / (t3 - t2):.1f}x"
            )
            print(
                f"\nthe daily run (ModelMonitor.run, computed and stored): {t6 - t5:.2f} s "
                f"({'warning' if record.warning else 'no warning'}; {len(record.summary['warnings'])} warnings)"
            )
            print(f"  of which this process's CPU: {time.process_time() - cpu:.2f} s (the rest: PostgreSQL, waiting)")
        finally:
            parts.close()
    print_load_change(load)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
