"""bench/downstream: the worker's handling of one changed patient, typical against long measurement series (issue 15,
item 3).

    .venv/bin/python -m bench.downstream                          this tree's code, 100,000 stored resources
    .venv/bin/python -m bench.downstream --base /tmp/main-tree    and another tree's code (e.g. main), interleaved
    .venv/bin/python -m bench.downstream --explain                and EXPLAIN (ANALYZE, BUFFERS) of the facts' read

A private database is grown as bench/growth grows it (synthetic eGFR Observations over 50,000 patients, and
bench/growth's patient with 20,000 of them, which are dated weekly from 2020 on, so most lie in the future), plus a
patient with 20,000 daily eGFRs up to yesterday. A typical patient and the daily series also get a birth date, a sex
and a kyphoplasty 20 weeks ago, so the model applies and the alert rules open a treatment gap and a bone density
gap: the assessment, the alerts, the care plan (with its renal check on the eGFRs) and the Tasks all run. Printed:
the median ms of `ChangeProcessor.process` for each patient, as bench/growth's downstream_ms measures it, with the
load average; then the facts' read and the domain's walk alone, the whole record against the read as of the moment,
for each patient and for a sweep's batch of 500; with ``--explain``, the read's plan for the long series.

Each tree's code runs in a fresh process of its own. With ``--base``, another tree's code (a checkout of main: `git
archive main | tar -x -C DIR`) is measured on the same database, in turns with this tree's, the order alternating
from round to round. The database carries this tree's migrations. At the end, the assessments and alerts stored per
patient: one assessment each where the model applies, whichever code ran first, shows that the other stored nothing
new (a different answer would have been a new assessment).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import redis
from psycopg.rows import dict_row

from bench.database import private_database
from bench.growth import LONG_PATIENT, grow, grow_long
from bench.ingest import machine

TYPICAL = "gp1234"
TYPICAL_CLINICAL = "gp1235"
LONG_PAST = "growth-long-past"
PATIENTS = (TYPICAL, TYPICAL_CLINICAL, LONG_PATIENT, LONG_PAST)
LABELS = {
    TYPICAL: "typical (2 eGFRs in 2020; model n/a)",
    TYPICAL_CLINICAL: "the same + kyphoplasty (model, alerts)",
    LONG_PATIENT: "20k weekly eGFRs from 2020 (growth's)",
    LONG_PAST: "20k daily eGFRs + kyphoplasty",
}

_CLINICAL_FACTS = """
INSERT INTO fact (patient_id, kind, value_text, effective_date, status, attrs, source_type, source_id, source_version,
                  recorded_at)
VALUES (%(p)s::text, 'birth-date', NULL, date '1944-04-04', NULL, '{}', 'Patient', %(p)s, 1, now()),
       (%(p)s, 'sex', 'female', NULL, NULL, '{}', 'Patient', %(p)s, 1, now()),
       (%(p)s, 'vertebral-augmentation', NULL, current_date - 140, 'completed',
        '{"levels": ["L1"], "method": "PKP"}', 'Procedure', %(p)s::text || '-pkp', 1, now())
"""
_CLINICAL_RESOURCES = """
INSERT INTO resource (resource_type, id, version_id, last_updated_at, content_hash, patient_id, status, body)
VALUES ('Patient', %(p)s, 1, now(), sha256(%(p)s::text::bytea), %(p)s, NULL,
        jsonb_build_object('resourceType', 'Patient', 'id', %(p)s)),
       ('Procedure', %(p)s::text || '-pkp', 1, now(), sha256((%(p)s::text || '-pkp')::bytea), %(p)s, 'completed',
        jsonb_build_object('resourceType', 'Procedure', 'id', %(p)s::text || '-pkp'))
"""
_HERE = Path(__file__).resolve().parents[1]
_CHILD = """
import json, sys
from bench.growth import downstream_ms
url, redis_url, queue, times, *patients = sys.argv[1:]
print(json.dumps({p: downstream_ms(url, redis_url, queue, p, int(times)) for p in patients}))
"""


def prepare(database_url: str, resources: int) -> int:
    """Grow the store and add the clinical patients; the number of stored resources."""
    grow(database_url, resources, long_record=True)
    with psycopg.connect(database_url, autocommit=True) as conn:
        # 20,000 daily eGFRs up to yesterday, for a patient of their own.
        grow_long(conn, LONG_PAST, "glongpast", dated="current_date - 1 - r")
        for patient in (TYPICAL_CLINICAL, LONG_PAST):
            conn.execute(_CLINICAL_FACTS, {"p": patient})
            conn.execute(_CLINICAL_RESOURCES, {"p": patient})
        conn.execute("VACUUM ANALYZE")
        row = conn.execute("SELECT count(*) FROM resource").fetchone()
    return int(row[0]) if row else 0


def _measure(tree: Path, database_url: str, redis_url: str, queue: str, times: int) -> dict[str, float]:
    """bench/growth's downstream_ms for each patient, run by a fresh process on a tree's code (both trees alike)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, database_url, redis_url, queue, str(times), *PATIENTS],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return {p: float(ms) for p, ms in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def _stored(database_url: str) -> dict[str, tuple[int, int]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT p, (SELECT count(*) FROM assessment WHERE patient_id = p),"
            " (SELECT count(*) FROM alert WHERE patient_id = p) FROM unnest(%s::text[]) AS p",
            (list(PATIENTS),),
        ).fetchall()
    return {str(p): (int(a), int(b)) for p, a, b in rows}


def read_and_walk_ms(database_url: str, patient_ids: list[str], whole: bool, times: int) -> tuple[float, float, int]:
    """Median ms of the facts' read (the whole record as before, or this tree's facts_for_assessment) and of the
    domain's walk over them (features, alert rules, renal check), and the number of facts read: the part of the
    handling this change is about, without the handling's round trips and commits (noisy on a shared machine)."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from service.adapters.postgres.assessments import PostgresAssessmentSession  # noqa: PLC0415
    from service.domain.alert_rules import evaluate  # noqa: PLC0415
    from service.domain.features import build_features  # noqa: PLC0415
    from service.domain.latest_only import AsOf  # noqa: PLC0415
    from service.domain.safety import renal_check  # noqa: PLC0415

    reads: list[float] = []
    walks: list[float] = []
    count = 0
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        session = PostgresAssessmentSession(conn)
        for _ in range(times):
            now = datetime.now(UTC)
            started = time.perf_counter()
            read = session.facts_of(patient_ids) if whole else session.facts_for_assessment(patient_ids, AsOf.at(now))
            reads.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            for facts in read.values():
                build_features(facts, {"Observation", "Patient", "Procedure"}, now)
                evaluate(facts, now.date())
                renal_check(facts, now.date())
            walks.append((time.perf_counter() - started) * 1000)
            count = sum(len(facts) for facts in read.values())
    return statistics.median(reads), statistics.median(walks), count


def explain(database_url: str, patient_id: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of this tree's read of one patient's facts as of now."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from service.adapters.postgres.assessments import _LATEST_ONLY, _WHOLE  # noqa: PLC0415
    from service.adapters.postgres.queries import query  # noqa: PLC0415

    now = datetime.now(UTC)
    params = {
        "patient_ids": [patient_id],
        "latest_only": _LATEST_ONLY,
        "whole": _WHOLE,
        "as_of": now,
        "first_day": now.date(),
        "last_day": now.date(),
    }
    with psycopg.connect(database_url) as conn:
        conn.execute(query("facts_for_assessment").encode(), params).fetchall()  # warm, as a worker's would be
        rows = conn.execute(b"EXPLAIN (ANALYZE, BUFFERS) " + query("facts_for_assessment").encode(), params)
        return "\n".join(str(r[0]) for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=100_000, help="stored resources to grow to")
    parser.add_argument("--times", type=int, default=7, help="handlings per patient per round (median)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (each: base, then this tree, when --base)")
    parser.add_argument("--base", type=Path, help="another tree's code to measure in turns (e.g. main's)")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN the facts' read of the long patients")
    args = parser.parse_args()

    run = uuid.uuid4().hex[:6]
    with private_database() as (services, database_url):
        queue = f"refracture-bench-{run}"
        try:
            stored = prepare(database_url, args.resources)
            print(f"bench/downstream on {machine()}; {stored:,} resources stored")
            here: dict[str, list[float]] = {p: [] for p in PATIENTS}
            base: dict[str, list[float]] = {p: [] for p in PATIENTS}
            loads: list[float] = []
            for round_no in range(args.rounds):
                # Each tree's code in a fresh process of its own, the order alternating from round to round.
                turns = [(_HERE, here)] + ([(args.base, base)] if args.base else [])
                for tree, into in turns if round_no % 2 else turns[::-1]:
                    for p, ms in _measure(tree, database_url, services.redis_url, queue, args.times).items():
                        into[p].append(ms)
                loads.append(os.getloadavg()[0])
            print(
                f"\nthe worker's handling of one changed patient (ChangeProcessor.process), ms: median over "
                f"{args.rounds} rounds of the median of {args.times}; load average (1 min) per round "
                f"{', '.join(f'{x:.2f}' for x in loads)}"
            )
            header = f"  {'patient':<40} {'this tree':>10}"
            print(header + (f" {'base':>10}  {'base/this':>9}" if args.base else ""))
            for p in PATIENTS:
                mine = statistics.median(here[p])
                line = f"  {LABELS[p]:<40} {mine:>10.1f}"
                if args.base:
                    theirs = statistics.median(base[p])
                    line += f" {theirs:>10.1f}  {theirs / mine:>9.1f}"
                print(line)
            print(f"\nstored per patient (assessments, alerts): {_stored(database_url)}")
            print(
                f"\nthe facts' read and the domain's walk over them (features, alert rules, renal check), this tree's "
                f"code, median of {args.times * 3}, ms; load average {os.getloadavg()[0]:.2f}"
            )
            print(f"  {'patient':<40} {'whole record: read + walk (facts)':>36} {'as of: read + walk (facts)':>30}")
            batch = [f"gp{n}" for n in range(1000, 1500)]  # a sweep's batch of typical patients
            for label, ids in [*((LABELS[p], [p]) for p in PATIENTS), ("500 typical patients (a sweep batch)", batch)]:
                w_read, w_walk, w_n = read_and_walk_ms(database_url, ids, True, args.times * 3)
                c_read, c_walk, c_n = read_and_walk_ms(database_url, ids, False, args.times * 3)
                print(
                    f"  {label:<40} {w_read:>15.2f} + {w_walk:>7.2f} ({w_n:>6,}) "
                    f"{c_read:>12.2f} + {c_walk:>5.2f} ({c_n:>5,})"
                )
            if args.explain:
                for patient in (LONG_PATIENT, LONG_PAST):
                    print(f"\nEXPLAIN (ANALYZE, BUFFERS) facts_for_assessment, {LABELS[patient]}:\n")
                    print(explain(database_url, patient))
        finally:
            redis.Redis.from_url(services.redis_url).delete(queue)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
