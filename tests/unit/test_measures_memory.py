"""Measures over the in-memory MeasureStore: the known timelines give the documented counts by period and site, the
reports are kept once per id and found again, and alerts are counted by when they opened (the SQL itself:
tests/integration/test_measures.py)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from service.domain.fls_measures import MeasureId, Period
from service.fhir.normalise import Normaliser
from service.fhir.terminology import Terminology
from service.usecases.measures import Measures
from service.usecases.ports.measures import AlertRow
from tests.measure_data import TIMELINES, patient_bundle
from tests.support.clock import ManualClock
from tests.support.fakes import MemoryMeasureStore

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
JANUARY = Period(date(2025, 1, 1), date(2025, 1, 31))
JULY = Period(date(2025, 7, 1), date(2025, 7, 31))
SITES = {"north": ["Organization/north-hospital"]}


@pytest.fixture
def store() -> MemoryMeasureStore:
    store = MemoryMeasureStore()
    normaliser = Normaliser(Terminology({}))
    for timeline in TIMELINES:
        resources = [e["resource"] for e in patient_bundle(*timeline)["entry"]]
        patient = next(r for r in resources if r["resourceType"] == "Patient")
        facts = [f for r in resources for f in normaliser.normalise(r, lambda _: None).facts]
        store.put(patient["id"], facts, patient["managingOrganization"]["reference"])
    return store


def measures(store: MemoryMeasureStore) -> Measures:
    return Measures(store, ManualClock(NOW), UTC, sites=SITES)


def counts(report: dict[str, Any]) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}


def test_known_timelines_give_the_documented_counts(store: MemoryMeasureStore) -> None:
    m = measures(store)
    identified = m.evaluate_measure(MeasureId.IDENTIFIED, JANUARY, None)
    assert counts(identified) == {"initial-population": 3}
    assert "reporter" not in identified
    dxa = m.evaluate_measure(MeasureId.DXA_12W, JANUARY, None)
    assert counts(dxa) == {"initial-population": 3, "denominator": 3, "denominator-exclusion": 0, "numerator": 1}
    treated = m.evaluate_measure(MeasureId.TREATMENT_16W, JANUARY, None)
    assert counts(treated)["numerator"] == 2
    adherence = m.evaluate_measure(MeasureId.ADHERENCE_52W, JANUARY, None)
    assert counts(adherence) == {"initial-population": 2, "denominator": 2, "denominator-exclusion": 0, "numerator": 1}
    median = m.evaluate_measure(MeasureId.TIME_TO_TREATMENT, JANUARY, None)
    assert median["group"][0]["measureScore"]["value"] == 7.5
    north = m.evaluate_measure(MeasureId.IDENTIFIED, JANUARY, "north")
    assert counts(north) == {"initial-population": 2}
    assert north["reporter"]["reference"] == "Organization/north-hospital"
    assert counts(m.evaluate_measure(MeasureId.TREATMENT_16W, JANUARY, "south"))["numerator"] == 1
    on_time = m.evaluate_measure(MeasureId.DENOSUMAB_ON_TIME, JULY, None)
    assert counts(on_time) == {"initial-population": 2, "denominator": 2, "denominator-exclusion": 0, "numerator": 1}
    assert counts(m.evaluate_measure(MeasureId.DENOSUMAB_STOPPED, JULY, None))["numerator"] == 1


def test_the_drill_down_names_the_patients(store: MemoryMeasureStore) -> None:
    found = measures(store).drill_down(MeasureId.IDENTIFIED, JANUARY, "north", "initial-population")
    assert sorted(found) == sorted(t[0] for t in TIMELINES if t[1] == "north-hospital")


def test_reports_are_kept_once_per_id_and_found_again(store: MemoryMeasureStore) -> None:
    m = measures(store)
    rows = m.evaluate(JANUARY)
    kept = len(store.reports)
    assert kept == len(rows)
    m.evaluate(JANUARY)  # again: replaced, not added
    assert len(store.reports) == kept
    found = [json.loads(r) for r in store.search_reports("fls-identified", None, None, None, None, 50)]
    assert "reporter" not in found[0]  # every site together first
    north_only = store.search_reports(None, None, None, None, ["north"], 500)
    assert north_only
    assert all(json.loads(r)["reporter"]["reference"] == "Organization/north-hospital" for r in north_only)
    site, body = store.read_report(rows[0].id) or (None, "")
    assert site == rows[0].site
    assert json.loads(body) == rows[0].resource
    assert store.read_report("no-such-report") is None


def test_alerts_count_by_when_they_opened_and_what_was_known(store: MemoryMeasureStore) -> None:
    opened = datetime(2025, 1, 12, 9, tzinfo=UTC)
    store.alerts = [
        AlertRow("n1", "bmd-assessment-gap", opened, datetime(2025, 1, 13, tzinfo=UTC), None),
        AlertRow("n2", "treatment-gap", opened, None, None),
        AlertRow("n2", "treatment-gap", datetime(2025, 2, 1, tzinfo=UTC), None, None),  # February
    ]
    report = measures(store).evaluate_measure(MeasureId.ALERTS_OPENED, JANUARY, None)
    assert counts(report)["initial-population"] == 2
