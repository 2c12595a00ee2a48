"""Measure and MeasureReport (R4) for the FLS quality measures (docs/sources/contract.md, 'Measure / MeasureReport';
docs/measures.md).

One Measure per quality measure, its canonical URL under https://refracture.dev/fhir/Measure/; MeasureReports of
type summary, one per measure, period and site. Counting follows FHIR's: the denominator includes its exclusions and
a proportion's score is numerator / (denominator - exclusions). A report whose initial population holds cases whose
window is still open on the evaluation date is ``pending`` (the counts will move), otherwise ``complete``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime
from typing import Any, Final

from service.domain.fls_measures import MEASURES, MeasureDefinition, MeasureId, Period, Summary
from service.fhir.systems import CANONICAL_BASE, SID_BASE

__all__ = [
    "MEASURE_REPORT_SID",
    "build_measure",
    "build_measure_report",
    "measure_url",
    "report_id",
]

MEASURE_REPORT_SID: Final = f"{SID_BASE}/measure-report"
# The date the definitions last changed; bump it (and the version) with them.
MEASURES_DATE: Final = "2026-12-05"
MEASURES_VERSION: Final = "1.0.0"
_POPULATION: Final = "http://terminology.hl7.org/CodeSystem/measure-population"
_SCORING: Final = "http://terminology.hl7.org/CodeSystem/measure-scoring"
_TYPE: Final = "http://terminology.hl7.org/CodeSystem/measure-type"
_IMPROVEMENT: Final = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"
_UCUM: Final = "http://unitsofmeasure.org"
_UNIT_WORDS: Final = {"d": "days", "h": "hours"}


def measure_url(measure: MeasureId) -> str:
    """The canonical URL of a measure."""
    return f"{CANONICAL_BASE}/Measure/{measure.value}"


def report_id(measure: MeasureId, period: Period, site: str | None) -> str:
    """The stored report's id: the same measure, period and site always get the same id (a re-evaluation replaces
    it). Opaque: a hash, so no site name or date needs to fit an id's characters."""
    key = f"{measure.value}|{site or '*'}|{period.start.isoformat()}|{period.end.isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def _coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _criteria(name: str, text: str) -> dict[str, Any]:
    # The definitions are computed by refracture's code, not by CQL or FHIRPath: the criterion is its description,
    # named (Expression needs a language; text/plain says there is nothing here to execute).
    return {"description": text, "name": name, "language": "text/plain", "expression": text}


def _populations(definition: MeasureDefinition) -> list[tuple[str, str, str]]:
    """(population code, expression name, description) of each population the measure defines."""
    found = [("initial-population", "InitialPopulation", definition.initial)]
    if definition.scoring == "proportion":
        found.append(("denominator", "Denominator", definition.denominator))
        if definition.exclusion:
            found.append(("denominator-exclusion", "DenominatorExclusion", definition.exclusion))
        found.append(("numerator", "Numerator", definition.numerator))
    elif definition.scoring == "continuous-variable":
        found.append(("measure-population", "MeasurePopulation", definition.denominator))
        found.append(("measure-observation", "MeasureObservation", definition.observation))
    return found


def _name(measure: MeasureId) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", measure.value) if part)


def build_measure(measure: MeasureId) -> dict[str, Any]:
    """The Measure resource of one quality measure, with its definitions in words and its sources."""
    definition = MEASURES[measure]
    resource: dict[str, Any] = {
        "resourceType": "Measure",
        "id": measure.value,
        "url": measure_url(measure),
        "version": MEASURES_VERSION,
        "name": _name(measure),
        "title": definition.title,
        "status": "active",
        "experimental": False,
        "date": MEASURES_DATE,
        "publisher": "refracture",
        "description": definition.description,
        "scoring": _coding(_SCORING, definition.scoring),
        "type": [_coding(_TYPE, "process")],
        "guidance": f"Sources: {definition.source} Counting of periods and sites: refracture docs/measures.md.",
        "group": [
            {
                "population": [
                    {"code": _coding(_POPULATION, code), "description": text, "criteria": _criteria(name, text)}
                    for code, name, text in _populations(definition)
                ]
            }
        ],
    }
    if definition.improvement:
        resource["improvementNotation"] = _coding(_IMPROVEMENT, definition.improvement)
    return resource


def _count(code: str, count: int) -> dict[str, Any]:
    return {"code": _coding(_POPULATION, code), "count": count}


def build_measure_report(
    summary: Summary,
    period: Period,
    site: str | None,
    site_reference: str | None,
    evaluated_at: datetime,
) -> dict[str, Any]:
    """A summary MeasureReport of one measure for one period and site (``site`` None: every site together).

    Args:
        site_reference: the site's Organization reference, when it has one (the report's reporter).
    """
    definition = MEASURES[summary.measure]
    populations = [_count("initial-population", summary.initial)]
    group: dict[str, Any] = {"population": populations}
    if definition.scoring == "proportion":
        populations += [_count("denominator", summary.denominator)]
        if definition.exclusion:
            populations += [_count("denominator-exclusion", summary.exclusions)]
        populations += [_count("numerator", summary.numerator)]
        if summary.score is not None:
            group["measureScore"] = {"value": round(summary.score, 4)}
    elif definition.scoring == "continuous-variable":
        populations += [_count("measure-population", summary.denominator)]
        if summary.score is not None and definition.unit:
            group["measureScore"] = {
                "value": round(summary.score, 1),
                "unit": _UNIT_WORDS.get(definition.unit, definition.unit),
                "system": _UCUM,
                "code": definition.unit,
            }
    identifier = report_id(summary.measure, period, site)
    resource: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "id": identifier,
        "identifier": [{"system": MEASURE_REPORT_SID, "value": identifier}],
        "status": "pending" if summary.pending else "complete",
        "type": "summary",
        "measure": measure_url(summary.measure),
        "date": evaluated_at.isoformat(),
        "period": {"start": _day(period.start), "end": _day(period.end)},
        "group": [group],
    }
    if site is not None:
        reporter: dict[str, Any] = {"display": f"site {site}"}
        if site_reference:
            reporter["reference"] = site_reference
        resource["reporter"] = reporter
    if definition.improvement:
        resource["improvementNotation"] = _coding(_IMPROVEMENT, definition.improvement)
    return resource


def _day(day: date) -> str:
    return day.isoformat()
