"""UCUM conversions, vertebral levels from bodySite, FHIR dates."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from service.fhir import systems as S
from service.fhir.dates import parse_time
from service.fhir.levels import levels_of
from service.fhir.units import convert


@pytest.mark.parametrize(
    ("value", "unit", "family", "expected"),
    [
        (-2.7, "{T-score}", "score", -2.7),
        (-2.7, None, "score", -2.7),
        (-2.7, "1", "score", -2.7),
        (0.887, "g/cm2", "bmd", 0.887),
        (887.0, "mg/cm2", "bmd", 0.887),
        (64.0, "[hnsf'U]", "hu", 64.0),
        (64.0, "HU", "hu", 64.0),
        (0.14, "1", "percent", 14.0),
        (14.0, "%", "percent", 14.0),
        (12.0, "deg", "angle", 12.0),
        (88.42, "umol/L", "creatinine", 1.0),
        (75.0, "nmol/L", "vitamin-d", 75.0 / 2.496),
        (2.5, "mmol/L", "calcium", 10.02),
        (300.0, "pg/mL", "marker", 0.3),
        (48.0, "mmol/mol", "hba1c", 0.09148 * 48 + 2.152),
        (154.0, "[lb_av]", "weight", 69.85322498),
        (1.62, "m", "height", 162.0),
        (55.0, "mL/min", "egfr", 55.0),
    ],
)
def test_convert(value: float, unit: str | None, family: str, expected: float) -> None:
    assert convert(value, unit, family) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "unit", "family"), [(1.0, "kg", "hu"), (1.0, None, "bmd"), (1.0, "g/cm-2", "bmd"), (1.0, "mg", "percent")]
)
def test_units_outside_the_family_are_refused(value: float, unit: str | None, family: str) -> None:
    assert convert(value, unit, family) is None


@pytest.mark.parametrize(
    ("site", "levels"),
    [
        ({"coding": [{"system": S.VERTEBRAL_LEVEL, "code": "L1"}]}, ["L1"]),
        ({"coding": [{"system": S.SNOMED, "code": "23215003"}]}, ["T12"]),
        ({"text": "T12-L1"}, ["T12", "L1"]),
        ({"text": "T11 to L2"}, ["T11", "T12", "L1", "L2"]),
        ({"text": "L2, L4"}, ["L2", "L4"]),
        ({"text": "left femur"}, []),
        ([{"text": "L3"}, {"text": "T12"}], ["T12", "L3"]),
        ({"text": "T13"}, []),
    ],
)
def test_levels_of(site: object, levels: list[str]) -> None:
    assert levels_of(site) == levels


@pytest.mark.parametrize(
    ("text", "day", "at"),
    [
        ("2024", date(2024, 1, 1), datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-05", date(2024, 5, 1), datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-10", date(2024, 5, 10), datetime(2024, 5, 10, tzinfo=UTC)),
        # The calendar day is the one the EHR wrote, whatever the offset.
        ("2024-05-10T23:30:00-08:00", date(2024, 5, 10), datetime(2024, 5, 11, 7, 30, tzinfo=UTC)),
        ("2024-05-10T08:00:00Z", date(2024, 5, 10), datetime(2024, 5, 10, 8, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, day: date, at: datetime) -> None:
    parsed = parse_time(text)
    assert parsed is not None
    assert parsed.day == day
    assert parsed.at == at


@pytest.mark.parametrize("text", ["", "24", "2024-13", "yesterday", None, 20240510])
def test_parse_time_rejects_non_dates(text: object) -> None:
    assert parse_time(text) is None
