"""bench/rescore: patients/s for re-scoring N stored patients, and the share of that time spent in the model itself.

    .venv/bin/python -m bench.rescore [--patients 100000] [--batch 1000]   (from the repository root)

Seeds a private database with N synthetic patients' facts (COPY), then runs the rescore use case (the same code as
`refracture rescore`): in one process with timers inside and its CPU counted (this process and its PostgreSQL
backend); with a new model version in one process per CPU, so every patient is assessed and stored; then again,
when every patient is unchanged and skipped (the reference: reading alone). Target (issue 15): >= 20,000 patients/s.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

import service.domain.assessment as assessment_module
import service.domain.features as features_module
from bench.cpu import backend_pids, cpu_seconds, load_average
from bench.database import private_database
from bench.ingest import machine
from service.entrypoints.parallel_rescore import rescore_in_parallel
from service.platform.config import Settings
from service.usecases.assess import AssessOutcome
from tests.support.parts import build_parts

FACT_COLUMNS = (
    "patient_id",
    "kind",
    "value_num",
    "value_text",
    "unit",
    "effective_date",
    "status",
    "attrs",
    "source_type",
    "source_id",
    "source_version",
    "recorded_at",
)
LEVELS = ("T10", "T11", "T12", "L1", "L2", "L3")


def synthetic_facts(rng: random.Random, pid: str, today: date) -> tuple[list[tuple[Any, ...]], list[str]]:
    """One patient's facts (as COPY rows) and the resource types behind them."""
    recorded = datetime(2026, 1, 1, tzinfo=UTC)
    op = today - timedelta(days=rng.randint(30, 900))
    level = rng.choice(LEVELS)
    rows: list[tuple[Any, ...]] = []

    def add(
        kind: str,
        source: str,
        value: float | None = None,
        text: str | None = None,
        unit: str | None = None,
        day: date | None = None,
        status: str | None = None,
        **attrs: Any,
    ) -> None:
        source_type, source_id = source.split("/")
        rows.append((pid, kind, value, text, unit, day, status, Jsonb(attrs), source_type, source_id, 1, recorded))

    add("birth-date", f"Patient/{pid}", day=date(rng.randint(1930, 1965), rng.randint(1, 12), 1))
    add("sex", f"Patient/{pid}", text=rng.choice(["female", "female", "female", "male"]))
    add(
        "vertebral-augmentation",
        f"Procedure/{pid}-op",
        day=op,
        status="completed",
        method=rng.choice(["PVP", "PKP"]),
        levels=[level],
    )
    add(
        "vertebral-fracture",
        f"Condition/{pid}-f",
        day=op - timedelta(days=rng.randint(3, 90)),
        status="active",
        levels=[level],
    )
    types = ["Patient", "Procedure", "Condition", "Observation"]
    if rng.random() < 0.7:
        add(
            "dxa-t-score",
            f"Observation/{pid}-t",
            value=rng.gauss(-2.7, 0.9),
            unit="1",
            day=op - timedelta(days=rng.randint(0, 300)),
            status="final",
            site="lumbar-spine",
        )
    if rng.random() < 0.6:
        add(
            "vertebral-hu",
            f"Observation/{pid}-hu",
            value=max(15.0, rng.gauss(72, 25)),
            unit="[hnsf'U]",
            day=op - timedelta(days=2),
            status="final",
            levels=[level],
        )
        add(
            "cement-volume-ratio",
            f"Observation/{pid}-cv",
            value=rng.uniform(5, 25),
            unit="%",
            day=op,
            status="final",
            levels=[level],
        )
        add("cement-leakage", f"Observation/{pid}-cl", value=float(rng.random() < 0.3), day=op, status="final")
    if rng.random() < 0.3:
        add("cobb-angle", f"Observation/{pid}-cobb", value=abs(rng.gauss(8, 6)), unit="deg", day=op, status="final")
    if rng.random() < 0.2:
        add("type2-diabetes", f"Condition/{pid}-dm", day=op - timedelta(days=2000), status="active")
    if rng.random() < 0.5:
        types.append("MedicationAdministration")
        drug = rng.choice(["denosumab-60mg", "zoledronic-acid-5mg", "alendronate"])
        for n in range(rng.randint(1, 4)):
            add(
                "medication",
                f"MedicationAdministration/{pid}-m{n}",
                day=op + timedelta(days=30 + 182 * n),
                status="completed",
                drug=drug,
                event="administration",
            )
    return rows, types


def seed(database_url: str, patients: int) -> None:
    rng = random.Random(42)
    today = date(2026, 11, 1)
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        with cur.copy(
            sql.SQL("COPY fact ({}) FROM STDIN").format(sql.SQL(", ").join(map(sql.Identifier, FACT_COLUMNS)))
        ) as copy:
            resource_rows: list[tuple[str, str]] = []
            for n in range(patients):
                pid = f"bench-{n:07d}"
                rows, types = synthetic_facts(rng, pid, today)
                for row in rows:
                    copy.write_row(row)
                resource_rows += [(pid, t) for t in types]
        with cur.copy(
            "COPY resource (resource_type, id, version_id, last_updated_at, content_hash, patient_id, body) FROM STDIN"
        ) as copy:
            now = datetime.now(UTC)
            for pid, resource_type in resource_rows:
                copy.write_row((resource_type, f"{pid}-{resource_type}", 1, now, b"\x00", pid, Jsonb({})))


class Stopwatch:
    """Accumulates the time spent in one function."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.seconds = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with private_database() as (services, database_url):
        started = time.perf_counter()
        seed(database_url, args.patients)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("ANALYZE")
            facts = conn.execute("SELECT count(*) FROM fact").fetchone()
        print(f"bench/rescore on {machine()}")
        print(
            f"seeded {args.patients:,} patients, {facts[0] if facts else 0:,} facts in "
            f"{time.perf_counter() - started:.1f} s; batches of {args.batch}"
        )
        settings = Settings(database_url=database_url, redis_url=services.redis_url)
        rates: dict[str, float] = {}

        def report(label: str, outcome: AssessOutcome, seconds: float) -> None:
            handled = outcome.assessed + outcome.unchanged + outcome.not_applicable
            rates[label] = handled / seconds
            print(
                f"\n{label} (load average {load_average()}):\n  {handled:,} patients in {seconds:.1f} s = "
                f"{handled / seconds:,.0f} patients/s (target >= 20,000); assessed {outcome.assessed:,}, "
                f"unchanged {outcome.unchanged:,}"
            )

        def new_model() -> None:
            # What a model change looks like to the stored assessments: another version.
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("UPDATE assessment SET model_version = 'previous'")

        # 1. One process, timed inside: the share of the time the model itself takes, and the CPU it all costs
        # (this process and its PostgreSQL backend: on a shared machine the wall clock also counts others' work).
        estimate_watch = Stopwatch(assessment_module.estimate)
        features_watch = Stopwatch(features_module.build_features)
        assessment_module.estimate = estimate_watch  # type: ignore[assignment]
        assessment_module.build_features = features_watch  # type: ignore[assignment]
        parts = build_parts(settings)
        try:
            parts.resources.ping()
            pids = backend_pids(database_url)
            own, backends = cpu_seconds([os.getpid()]), cpu_seconds(pids)
            started = time.perf_counter()
            outcome = parts.assessor.rescore(None, args.batch)
            seconds = time.perf_counter() - started
            own = cpu_seconds([os.getpid()]) - own
            backends = (
                cpu_seconds(pids) - backends + cpu_seconds([p for p in backend_pids(database_url) if p not in pids])
            )
        finally:
            parts.close()
        assessment_module.estimate = estimate_watch.function  # type: ignore[assignment]
        assessment_module.build_features = features_watch.function  # type: ignore[assignment]
        report("one process, every patient assessed and stored", outcome, seconds)
        print(f"  model (estimate):     {estimate_watch.seconds:6.2f} s = {estimate_watch.seconds / seconds:5.1%}")
        print(f"  features from facts:  {features_watch.seconds:6.2f} s = {features_watch.seconds / seconds:5.1%}")
        rest = seconds - estimate_watch.seconds - features_watch.seconds
        print(f"  the rest (SQL, the stored result, hashing): {rest:6.2f} s = {rest / seconds:5.1%}")
        handled = max(outcome.assessed + outcome.unchanged + outcome.not_applicable, 1)
        per_patient = (own + backends) / handled * 1e6
        cpus = os.cpu_count() or 1
        print(
            f"  CPU per patient: {own / handled * 1e6:,.0f} us Python + {backends / handled * 1e6:,.0f} us PostgreSQL "
            f"= {per_patient:,.0f} us: at most {cpus * 1e6 / per_patient:,.0f} patients/s on {cpus} idle CPUs"
        )
        # 2. What `refracture rescore` does after a model change: one process per CPU.
        new_model()
        started = time.perf_counter()
        outcome = rescore_in_parallel(settings, None, args.batch, args.workers)
        changed = f"{args.workers} processes after a model change (refracture rescore)"
        report(changed, outcome, time.perf_counter() - started)
        # 3. Nothing changed: every patient is read, checked and skipped (the reference: reading alone).
        started = time.perf_counter()
        outcome = rescore_in_parallel(settings, None, args.batch, args.workers)
        skipped = f"{args.workers} processes, nothing changed"
        report(skipped, outcome, time.perf_counter() - started)
        print(f"\nratio, assessed and stored / read and skipped (same run): {rates[changed] / rates[skipped]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
