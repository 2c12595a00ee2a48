"""bench/measures: every FLS quality measure for 100,000 patients and a year of data, by month and by site.

    .venv/bin/python -m bench.measures [--patients 100000]   (from the repository root)

Seeds a private database by COPY with N synthetic patients, each with an index vertebral augmentation in 2025 (some
under 50, some with a malignancy), a birth date, noise facts the measures do not read, DXA for most, a drug for about
half (denosumab 60 mg every 6 months give or take, alendronate refills, yearly zoledronic acid, teriparatide), a site
(Patient.managingOrganization, five sites) and their alerts with people's actions. Then times what
`Measure/[id]/$evaluate-measure` and `refracture measures` do: read once (the facts of the candidate patients in one
ordered pass, fetched ahead by a thread while the cases are derived; the alerts in one query beside it), count every
measure for each of the 12 months, every site and all sites, and keep the MeasureReports. Target: < 10 s for the
year.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

from bench.cpu import print_load_change
from bench.database import private_database
from bench.ingest import machine
from bench.seeding import ALERT_CODES, ALERT_COPY, RESOURCE_COPY, seeded
from service.domain.fls_measures import Period, months
from service.platform.config import Settings
from tests.support.parts import build_parts

YEAR = Period(date(2025, 1, 1), date(2025, 12, 31))
NOW = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
SITES = ("north", "south", "east", "west", "central")
FACT_COLUMNS = (
    "patient_id, kind, value_num, effective_date, end_date, status, attrs, source_type, source_id, source_version, "
    "recorded_at"
)


def _facts(rng: random.Random, pid: str, recorded: datetime) -> list[tuple[object, ...]]:
    index = YEAR.start + timedelta(days=rng.randrange(365))
    rows: list[tuple[object, ...]] = []

    def fact(
        kind: str, day: date | None, value: float | None = None, status: str | None = None, **attrs: object
    ) -> None:
        n = len(rows)
        rows.append((pid, kind, value, day, None, status, Jsonb(attrs), "Bench", f"{pid}-{n}", 1, recorded))

    fact("birth-date", date(rng.randint(1935, 1980), rng.randint(1, 12), 1))
    fact("sex", None)
    fact("vertebral-augmentation", index, status="completed", method="PKP", levels=["L1"])
    if rng.random() < 0.2:
        fact("vertebral-fracture", index - timedelta(days=rng.randint(1, 20)), status="active", osteoporotic=True)
    if rng.random() < 0.03:
        fact("malignancy", index - timedelta(days=400), type="myeloma")
    if rng.random() < 0.02:
        fact("deceased", index + timedelta(days=rng.randint(10, 400)))
    fact("egfr", index - timedelta(days=10), 60.0)
    fact("vertebral-hu", index - timedelta(days=2), 85.0, level="L1")
    if rng.random() < 0.6:
        fact("dxa-t-score", index + timedelta(days=rng.randint(-300, 150)), -2.6)
    draw = rng.random()
    if draw < 0.22:  # denosumab 60 mg, every 6 months give or take, sometimes stopped
        day = index + timedelta(days=rng.randint(0, 150))
        while day <= NOW.date() and rng.random() < 0.85:
            fact("medication", day, 60.0, "completed", drug="denosumab-60mg", event="administration", dose_mg=60)
            day += timedelta(days=rng.randint(170, 260))
    elif draw < 0.38:  # alendronate, 90-day dispenses
        day = index + timedelta(days=rng.randint(0, 200))
        for _ in range(rng.randint(1, 6)):
            fact("medication", day, None, "completed", drug="alendronate", event="dispense", days_supply=90)
            day += timedelta(days=rng.randint(80, 130))
    elif draw < 0.50:  # zoledronic acid 5 mg yearly
        fact(
            "medication",
            index + timedelta(days=rng.randint(0, 120)),
            5.0,
            "completed",
            drug="zoledronic-acid-5mg",
            event="administration",
        )
    elif draw < 0.55:  # teriparatide, monthly pens
        day = index + timedelta(days=rng.randint(0, 100))
        for _ in range(rng.randint(1, 12)):
            fact("medication", day, None, "completed", drug="teriparatide", event="dispense", days_supply=30)
            day += timedelta(days=30)
    if rng.random() < 0.3:  # a drug the measures do not read
        fact("medication", index, None, "active", drug="glucocorticoid", event="statement")
    return rows


def seed(database_url: str, patients: int) -> tuple[int, int]:
    """COPY the cohort in; the counts of facts and alerts written."""
    rng = random.Random(19)
    recorded = datetime(2025, 1, 1, tzinfo=UTC)
    facts = alerts = 0
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY fact ({FACT_COLUMNS}) FROM STDIN") as copy:  # type: ignore[arg-type]
            for n in range(patients):
                for row in _facts(rng, f"bench-{n:07d}", recorded):
                    copy.write_row(row)
                    facts += 1
        with cur.copy(RESOURCE_COPY) as copy:
            for n in range(patients):
                pid = f"bench-{n:07d}"
                body = {
                    "resourceType": "Patient",
                    "id": pid,
                    "managingOrganization": {"reference": f"Organization/{SITES[n % 5]}"},
                }
                copy.write_row(("Patient", pid, 1, recorded, b"\x00", pid, Jsonb(body)))
        events: list[tuple[object, ...]] = []
        with cur.copy(ALERT_COPY) as copy:
            for n in range(patients):
                pid = f"bench-{n:07d}"
                for code in rng.sample(ALERT_CODES, rng.choice((0, 1, 1, 2, 2))):
                    alert_id = uuid.uuid4()
                    opened = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(365 * 24 * 60))
                    resolved = rng.random() < 0.3
                    closed = opened + timedelta(days=rng.randint(1, 90)) if resolved else None
                    status = "resolved" if resolved else "open"
                    copy.write_row(
                        (
                            alert_id,
                            pid,
                            code,
                            status,
                            "routine",
                            opened.date(),
                            f"index:{opened.date()}",
                            Jsonb([]),
                            "bench",
                            opened,
                            closed or opened,
                            closed,
                        )
                    )
                    alerts += 1
                    events.append((alert_id, opened, "refracture", "opened"))
                    if rng.random() < 0.4:
                        events.append(
                            (alert_id, opened + timedelta(hours=rng.randint(1, 400)), "coordinator", "acknowledge")
                        )
        with cur.copy("COPY alert_event (alert_id, at, actor, action) FROM STDIN") as copy:
            for event in events:
                copy.write_row(event)
    return facts, alerts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    args = parser.parse_args()
    load = os.getloadavg()
    with private_database() as (services, database_url):
        (facts, alerts), seconds = seeded(database_url, lambda: seed(database_url, args.patients))
        parts = build_parts(Settings(database_url=database_url, redis_url=services.redis_url), clock=lambda: NOW)
        try:
            print(f"bench/measures on {machine()}")
            print(
                f"{args.patients:,} patients, {facts:,} facts, {alerts:,} alerts seeded by COPY in {seconds:.1f} s; "
                f"the year {YEAR.start}..{YEAR.end}, by month and by site ({len(SITES)} sites)"
            )
            measures = parts.measures
            cpu = time.process_time()
            t0 = time.perf_counter()
            data = measures.collect(YEAR, NOW)
            t1 = time.perf_counter()
            rows = measures.reports(data, months(YEAR), NOW)
            t2 = time.perf_counter()
            parts.measures.store.save_reports(rows)
            t3 = time.perf_counter()
            print(
                f"\nread and derive: {t1 - t0:.2f} s ({data.patients:,} candidate patients, {len(data.cases):,} index "
                f"cases, {len(data.doses):,} denosumab doses due, {len(data.alerts):,} alerts)"
            )
            print(f"count every measure, 12 months x (each site + all): {t2 - t1:.2f} s ({len(rows):,} MeasureReports)")
            print(f"keep the reports: {t3 - t2:.2f} s")
            total = t3 - t0
            print(f"\nall measures for the year: {total:.2f} s (target < 10 s) {'OK' if total < 10 else 'SLOW'}")
            print(f"  of which this process's CPU: {time.process_time() - cpu:.2f} s (the rest: PostgreSQL, waiting)")
            t4 = time.perf_counter()
            one = measures.evaluate(months(YEAR)[5])
            print(f"one month ($evaluate-measure, June 2025): {time.perf_counter() - t4:.2f} s ({len(one)} reports)")
        finally:
            parts.close()
    print_load_change(load)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
