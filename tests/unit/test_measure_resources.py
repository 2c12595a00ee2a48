"""Measure and MeasureReport are valid R4 (checked as tests/unit/test_emitted_resources.py checks every emitted
resource), and carry the counts of the summaries they are built from."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from service.domain.fls_measures import MEASURES, MeasureId, Period, Summary
from service.fhir.capability import capability_statement
from service.fhir.measures import build_measure, build_measure_report, measure_url, report_id
from service.fhir.validation import validate_resource

JANUARY = Period(date(2025, 1, 1), date(2025, 1, 31))
NOW = datetime(2026, 6, 1, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize("measure", list(MeasureId))
def test_every_measure_is_valid_r4(measure: MeasureId) -> None:
    resource = build_measure(measure)
    assert validate_resource(resource) == []
    assert resource["url"] == f"https://refracture.dev/fhir/Measure/{measure.value}"
    assert resource["scoring"]["coding"][0]["code"] == MEASURES[measure].scoring
    codes = [p["code"]["coding"][0]["code"] for p in resource["group"][0]["population"]]
    assert codes[0] == "initial-population"


@pytest.mark.parametrize("measure", list(MeasureId))
@pytest.mark.parametrize("site", [None, "north", "unassigned"])
def test_every_report_is_valid_r4(measure: MeasureId, site: str | None) -> None:
    summary = Summary(measure, 9, 8, 1, 3, 3 / 7 if MEASURES[measure].scoring != "cohort" else None, pending=1)
    reference = "Organization/north-hospital" if site == "north" else None
    report = build_measure_report(summary, JANUARY, site, reference, NOW)
    assert validate_resource(report) == []
    assert report["type"] == "summary"
    assert report["status"] == "pending"
    assert report["measure"] == measure_url(measure)
    assert report["period"] == {"start": "2025-01-01", "end": "2025-01-31"}
    assert report["id"] == report_id(measure, JANUARY, site)
    counts = {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}
    assert counts["initial-population"] == 9
    if MEASURES[measure].scoring == "proportion":
        assert counts["denominator"] == 8
        assert counts["numerator"] == 3
        assert report["group"][0]["measureScore"]["value"] == pytest.approx(0.4286)
    assert ("reporter" in report) == (site is not None)


def test_an_empty_complete_report() -> None:
    report = build_measure_report(Summary(MeasureId.DXA_12W, 0), JANUARY, None, None, NOW)
    assert validate_resource(report) == []
    assert report["status"] == "complete"
    assert "measureScore" not in report["group"][0]


def test_report_ids_differ_by_measure_period_and_site() -> None:
    ids = {
        report_id(m, p, s)
        for m in MeasureId
        for p in (JANUARY, Period(date(2025, 2, 1), date(2025, 2, 28)))
        for s in (None, "north", "south")
    }
    assert len(ids) == len(MeasureId) * 2 * 3


def test_the_capability_statement_lists_the_measures() -> None:
    statement = capability_statement("https://refracture.example/fhir")
    assert validate_resource(statement) == []
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {"Measure", "MeasureReport"} <= set(by_type)
    assert by_type["Measure"]["operation"][0]["name"] == "evaluate-measure"
