"""The pipeline's read of facts (queries.sql, facts_for_assessment): the rows service/domain/latest_only.py keeps,
found through the (patient_id, kind, effective_date) index whatever the length of a series, and a pipeline run on it
stores what a run on the whole record stores."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from service.adapters.postgres.alerts import PostgresPatientSession
from service.adapters.postgres.assessments import _LATEST_ONLY, _WHOLE, PostgresAssessmentSession
from service.adapters.postgres.pool import make_pool
from service.adapters.postgres.queries import query
from service.devtools.local_services import LocalServices
from service.domain.facts import Fact, FactKind
from service.domain.latest_only import AsOf, for_assessment
from service.fhir.bundle import plan_bundle
from service.platform.config import Settings
from tests.support.clinic import T0, local_day, wire
from tests.support.clock import ManualClock
from tests.support.databases import copy_of
from tests.support.fakes import RecordingMetrics
from tests.support.postgres_clinic import PostgresClinic
from tests.support.records import bundle, egfr_result, gap_patient

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 6, 0, 30, tzinfo=UTC)
_COLUMNS = (
    "patient_id, kind, value_num, unit, effective_date, status, attrs, source_type, source_id, source_version, "
    "recorded_at"
)


def _rows(rng: random.Random, patient_id: str, kind: FactKind, count: int, latest: date) -> list[tuple[Any, ...]]:
    """A series as fact rows: ties on the latest days, and facts dated in the future, learned after NOW, without a
    value or without a date."""
    rows = []
    days = [latest - timedelta(days=rng.randrange(0, 3650)) for _ in range(count)]
    days += [latest] * 3 + [latest + timedelta(days=1)] * 2
    for n, day in enumerate(days):
        roll = rng.random()
        value: float | None = round(rng.uniform(10, 100), 1)
        dated: date | None = day
        recorded = NOW - timedelta(minutes=rng.randrange(1, 10_000))
        if roll < 0.05:
            recorded = NOW + timedelta(minutes=rng.randrange(1, 500))
        elif roll < 0.10:
            value = None
        elif roll < 0.12:
            dated = None
        elif roll < 0.17:
            dated = latest + timedelta(days=rng.randrange(1, 400))
        source = f"{patient_id}-{kind.value}-{n}"
        rows.append((patient_id, kind.value, value, "u", dated, "final", "{}", "Observation", source, 1, recorded))
    return rows


def _store_facts(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO fact ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s)",
            rows,
        )
    conn.execute("ANALYZE fact")


def _long_record(rng: random.Random, patient_id: str, egfrs: int) -> list[tuple[Any, ...]]:
    today = NOW.date()
    rows = _rows(rng, patient_id, FactKind.EGFR, egfrs, today - timedelta(days=1))
    rows += _rows(rng, patient_id, FactKind.BODY_WEIGHT, 300, today)  # not read
    rows += _rows(rng, patient_id, FactKind.VERTEBRAL_HU, 50, today - timedelta(days=200))  # read whole
    rows += _rows(rng, patient_id, FactKind.PARASPINAL_FAT_FRACTION, 20, today)  # read whole
    rows.append(
        (patient_id, "vertebral-augmentation", None, None, today - timedelta(days=100), "completed",
         json.dumps({"levels": ["L1"], "method": "PKP"}), "Procedure", f"{patient_id}-op", 1, NOW - timedelta(days=99))
    )  # fmt: skip
    return rows


def _key(fact: Fact) -> str:
    return json.dumps(
        [fact.source, fact.kind.value, fact.effective_date, fact.value_num, fact.recorded_at], default=str
    )


@pytest.mark.parametrize("offset", [-1, 0, 1], ids=["west-of-utc", "utc", "east-of-utc"])
def test_the_query_returns_the_rows_the_domain_keeps(database_url: str, offset: int) -> None:
    rng = random.Random(offset)
    ids = ["a-long", "b-plain", "c-empty", "d-late"]
    rows = _long_record(rng, "a-long", 3000)
    rows += _rows(rng, "b-plain", FactKind.EGFR, 2, NOW.date() - timedelta(days=40))
    # Every eGFR learned after the moment: no day to cut from, the whole series comes back.
    rows += [
        ("d-late", "egfr", 50.0, "u", NOW.date() - timedelta(days=n), "final", "{}", "Observation", f"d-late-{n}", 1,
         NOW + timedelta(hours=1))
        for n in range(20)
    ]  # fmt: skip
    with psycopg.connect(database_url) as conn:
        _store_facts(conn, rows)
        session = PostgresAssessmentSession(conn)
        as_of = AsOf.at(NOW, NOW.date() + timedelta(days=offset))
        got = session.facts_for_assessment(ids, as_of)
        whole = session.facts_of(ids)
    want = {p: for_assessment(facts, as_of) for p, facts in whole.items()}
    assert {p: sorted(map(_key, fs)) for p, fs in got.items()} == {p: sorted(map(_key, fs)) for p, fs in want.items()}
    assert len(got["a-long"]) < len(whole["a-long"]) / 5
    assert len(got["d-late"]) == 20


def _fact_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if plan.get("Relation Name") == "fact":
        yield plan
    for child in plan.get("Plans", []):
        yield from _fact_nodes(child)


def test_a_long_series_is_read_through_the_index_not_walked(database_url: str) -> None:
    rng = random.Random(7)
    # The long record among 4,000 patients' short ones, as in a store (one patient's 20,000 rows alone in the table
    # would rightly be read by a sequential scan).
    others = [r for n in range(4000) for r in _rows(rng, f"other-{n}", FactKind.EGFR, 5, NOW.date())]
    with psycopg.connect(database_url) as conn:
        _store_facts(conn, _long_record(rng, "a-long", 20_000) + others)
        params = {
            "patient_ids": ["a-long"],
            "latest_only": _LATEST_ONLY,
            "whole": _WHOLE,
            "as_of": NOW,
            "first_day": NOW.date(),
            "last_day": NOW.date(),
        }
        (plan,) = conn.execute(b"EXPLAIN (ANALYZE, FORMAT JSON) " + query("facts_for_assessment").encode(), params)
        nodes = list(_fact_nodes(plan[0][0]["Plan"]))
    assert nodes
    assert {n["Node Type"] for n in nodes} <= {
        "Index Scan",
        "Index Scan Backward",
        "Bitmap Heap Scan",
        "Index Only Scan",
    }
    # Rows touched in the fact table: the latest days and the whole-read kinds, not the 20,000 eGFRs.
    touched = sum(n["Actual Rows"] * n["Actual Loops"] + n.get("Rows Removed by Filter", 0) for n in nodes)
    assert touched < 500, nodes


class _WholeRecordSession(PostgresPatientSession):
    def facts_for_assessment(self, patient_ids: Any, as_of: AsOf) -> dict[str, list[Fact]]:
        del as_of
        return self._facts.facts_of(patient_ids)


class WholeRecordClinic(PostgresClinic):
    """The pipeline reading every fact of the patient, as it did before the latest-only cut."""

    @contextlib.contextmanager
    def patient_session(self) -> Iterator[PostgresPatientSession]:
        with self._transaction() as conn:
            yield _WholeRecordSession(conn)


def _long_series_patient(pid: str) -> list[dict[str, Any]]:
    """A treatment gap (a bisphosphonate to recommend: the renal check decides) and 2,000 eGFRs: low ones years ago,
    two on the latest day (the tie broken by id), and some dated in the future."""
    today = T0.date()
    resources = gap_patient(pid, today - timedelta(weeks=20), None)

    def egfr(n: int, day: date, value: float) -> dict[str, Any]:
        return egfr_result(pid, value, day, f"{pid}-egfr-{n}")

    resources += [egfr(n, today - timedelta(days=3 * n), 20.0 + n % 50) for n in range(3, 2000)]
    resources += [egfr(1, today - timedelta(days=2), 31.0), egfr(2, today - timedelta(days=2), 52.0)]
    resources += [egfr(9000 + n, today + timedelta(days=5 * n), 12.0) for n in range(1, 50)]
    return resources


def _run(clinic: PostgresClinic, pid: str) -> dict[str, Any]:
    clock = ManualClock(T0)
    cases = wire(clinic, clock, None, RecordingMetrics())
    cases.ingestor.transaction(plan_bundle(bundle(_long_series_patient(pid)), 5000))
    outcome = cases.pipeline.run([pid])
    clock.now += timedelta(days=1)
    again = cases.pipeline.run([pid])
    with clinic.patient_session() as session:
        seen = {
            "outcome": (outcome, again),
            "latest": session.latest_assessments([pid]),
            "alerts": session.alerts_of([pid], T0 - timedelta(days=1)),
            "views": session.latest_assessment_views([pid]),
            "plans": session.care_plans([pid]),
            "tasks": session.tasks_of([pid]),
            "read": len(session.facts_for_assessment([pid], AsOf.at(clock.now, local_day(clock.now)))[pid]),
        }
    seen["risk"] = [json.loads(r) for r in clinic.risk_assessments_of(pid, 10)]
    return seen


def test_a_long_series_patient_gets_what_the_whole_record_gave(
    services: LocalServices, template_database: str, database_url: str
) -> None:
    settings = Settings(database_url=database_url, database_pool_max=2, environment="test")
    with copy_of(services, template_database) as whole_url:
        whole_pool = make_pool(Settings(database_url=whole_url, database_pool_max=2, environment="test"))
        pool = make_pool(settings)
        try:
            before = _run(WholeRecordClinic(whole_pool), "p-long")
            after = _run(PostgresClinic(pool), "p-long")
        finally:
            pool.close()
            whole_pool.close()
    assert before["read"] > 2000
    assert after["read"] < 20
    del before["read"], after["read"]
    assert after == before
    # The latest day's tie broken as before (by source: ...-egfr-2 after ...-egfr-1): eGFR 52, which allows the
    # bisphosphonate (31 would not have).
    (plan,) = after["plans"].values()
    assert "eGFR 52" in json.dumps(after["risk"])
    assert "No bisphosphonate recommended" not in json.dumps(plan.resource)
    assert after["outcome"][0].assessment.assessed == 1
    assert after["outcome"][0].alerts.opened >= 1
