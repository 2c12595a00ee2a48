"""The FLS quality measures at the FHIR base: Measure, MeasureReport and Measure/[id]/$evaluate-measure
(docs/sources/contract.md, 'Measure / MeasureReport'; docs/measures.md).

Counts only, never a patient: the FLS lead and administrators may read them (Permission.READ_MEASURES). A caller
limited to sites sees those sites' reports only (never the all-sites one); a token bound to one patient gets 403.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.domain.fls_measures import MeasureId, Period
from service.entrypoints.api.auth import forbidden, require
from service.entrypoints.api.deps import MeasuresDep, fhir_base
from service.entrypoints.api.middleware import AuditNote, note_audit
from service.entrypoints.api.responses import FhirJSONResponse, fhir_response
from service.entrypoints.api.scoping import Scoping, ScopingDep
from service.fhir.jsonio import parse
from service.fhir.measures import build_measure, measure_url
from service.fhir.outcome import searchset
from service.platform.errors import Problem, refuse
from service.security.principal import Permission, Principal
from service.usecases.measures import Measures

__all__ = ["api_router", "router", "site_for"]

router = APIRouter(prefix="/fhir", tags=["FHIR"])
api_router = APIRouter(prefix="/api/measures", tags=["Measures"])

MeasureReader = Annotated[Principal, Depends(require(Permission.READ_MEASURES))]
_MEASURE = Path(pattern=r"^[a-z0-9\-]{1,64}$", description="A measure's id (fls-dxa-12w, …)")
_REPORT = Path(pattern=r"^[a-f0-9]{1,64}$", description="A MeasureReport's id")
_SITE = Query(pattern=r"^[A-Za-z0-9_\-.:/]{1,100}$", description="One site (REFRACTURE_SITES); see docs/measures.md")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# One evaluation reads every fact of the period's patients: three years at most per call.
_MAX_PERIOD_DAYS: Final = 3 * 366
# A drill-down lists patients (each one an audit row): a year at most.
_MAX_DRILL_DOWN_DAYS: Final = 366
_POPULATIONS: Final = r"^(initial-population|denominator|denominator-exclusion|numerator|measure-population)$"
_RESPONSES: Final[dict[int | str, dict[str, object]]] = {
    code: {"description": text, "content": {"application/fhir+json": {}}}
    for code, text in {
        400: "Bad parameters (OperationOutcome)",
        403: "Not the FLS lead's or an administrator's, or a site outside the caller's (OperationOutcome)",
        404: "Unknown measure or report (OperationOutcome)",
    }.items()
}


def _measure(measure_id: str) -> MeasureId:
    try:
        return MeasureId(measure_id)
    except ValueError:
        raise refuse(Problem.NOT_FOUND, "not-found", f"Measure/{measure_id} is not known") from None


async def _allowed_sites(scoping: Scoping, measures: Measures, principal: Principal) -> frozenset[str] | None:
    """The sites whose reports the caller may see; None: every report (all-sites ones too)."""
    scope = await scoping.population_scope(principal)
    if scope.everyone:
        return None
    return measures.sites_of(scope.organizations)


def _day(value: str, name: str) -> date:
    text = value[2:] if value[:2] in ("ge", "le", "eq") else value
    if not _DAY.fullmatch(text):
        raise refuse(Problem.INVALID, "value", f"{name} must be a date, YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise refuse(Problem.INVALID, "value", f"{name} must be a date, YYYY-MM-DD") from None


@router.get(
    "/Measure",
    operation_id="searchMeasure",
    response_class=FhirJSONResponse,
    responses=_RESPONSES,
    summary="The FLS quality measures",
)
def search_measure(
    request: Request,
    principal: MeasureReader,
    url: Annotated[str | None, Query(max_length=200, description="A Measure's canonical URL")] = None,
) -> FhirJSONResponse:
    """Every Measure refracture computes (one per quality measure), or the one with this canonical URL."""
    del principal
    found = [build_measure(m) for m in MeasureId if url is None or measure_url(m) == url]
    return fhir_response(searchset(fhir_base(request), found))


@router.get(
    "/Measure/{measure_id}",
    operation_id="readMeasure",
    response_class=FhirJSONResponse,
    responses=_RESPONSES,
    summary="One quality measure's definition",
)
def read_measure(principal: MeasureReader, measure_id: Annotated[str, _MEASURE]) -> FhirJSONResponse:
    """The Measure: its definition in words, populations and sources."""
    del principal
    return fhir_response(build_measure(_measure(measure_id)))


@router.get(
    "/Measure/{measure_id}/$evaluate-measure",
    operation_id="evaluateMeasure",
    response_class=FhirJSONResponse,
    responses=_RESPONSES,
    summary="Compute a summary MeasureReport for a period (and site)",
)
async def evaluate_measure(
    request: Request,
    measures: MeasuresDep,
    scoping: ScopingDep,
    principal: MeasureReader,
    measure_id: Annotated[str, _MEASURE],
    period_start: Annotated[str, Query(alias="periodStart", max_length=10, description="YYYY-MM-DD")],
    period_end: Annotated[str, Query(alias="periodEnd", max_length=10, description="YYYY-MM-DD, included")],
    site: Annotated[str | None, _SITE] = None,
    report_type: Annotated[str | None, Query(alias="reportType", max_length=20)] = None,
) -> FhirJSONResponse:
    """Computes every measure for the period by site from the stored data (kept, served at /fhir/MeasureReport) and
    answers this measure's summary MeasureReport: every site together, or ``site``. A caller limited to sites names
    one of them (or has only one)."""
    measure = _measure(measure_id)
    if report_type not in (None, "summary"):
        raise refuse(Problem.INVALID, "not-supported", "only reportType=summary is supported")
    period = _period(period_start, period_end, _MAX_PERIOD_DAYS)
    site = await site_for(scoping, measures, principal, site)
    note_audit(
        request.state,
        AuditNote("read", "Measure", measure.value, detail=f"$evaluate-measure {period.start}..{period.end}"),
    )
    report = await run_in_threadpool(measures.evaluate_measure, measure, period, site)
    return fhir_response(report)


async def site_for(scoping: Scoping, measures: Measures, principal: Principal, site: str | None) -> str | None:
    """The site a limited caller asks about (their only site by default); None for every site (unlimited callers).

    Raises:
        RefractureError: 400 when a caller with several sites names none; 403 for a site not theirs.
    """
    allowed = await _allowed_sites(scoping, measures, principal)
    if allowed is None:
        return site
    if site is None and len(allowed) == 1:
        site = next(iter(allowed))
    if site is None:
        raise refuse(Problem.INVALID, "required", "name one of your sites: site=…")
    if site not in allowed:
        raise forbidden("this site is not one of yours")
    return site


def _period(period_start: str, period_end: str, longest: int) -> Period:
    start, end = _day(period_start, "periodStart"), _day(period_end, "periodEnd")
    if end < start or (end - start).days > longest:
        raise refuse(
            Problem.INVALID, "value", f"periodEnd must be on or after periodStart, at most {longest} days later"
        )
    return Period(start, end)


class MeasurePatients(BaseModel):
    """The patients in one population of a measure, for a period and site."""

    measure: str
    population: str
    period_start: date
    period_end: date
    site: str | None
    patients: list[str]


@api_router.get(
    "/{measure_id}/patients",
    operation_id="measurePatients",
    response_model=MeasurePatients,
    responses=_RESPONSES,
    summary="The patients behind a measure's count (drill-down; audited per patient)",
)
async def measure_patients(
    request: Request,
    measures: MeasuresDep,
    scoping: ScopingDep,
    principal: MeasureReader,
    measure_id: Annotated[str, _MEASURE],
    period_start: Annotated[str, Query(alias="periodStart", max_length=10, description="YYYY-MM-DD")],
    period_end: Annotated[str, Query(alias="periodEnd", max_length=10, description="YYYY-MM-DD, included")],
    population: Annotated[str, Query(pattern=_POPULATIONS, description="A measure-population code")],
    site: Annotated[str | None, _SITE] = None,
) -> MeasurePatients:
    """The ids of the patients in one population (numerator, denominator, …) of a measure for a period (at most a
    year) and site, read fresh: the drill-down behind a MeasureReport. Every patient listed is in the audit trail. A
    caller limited to sites sees their sites' patients only."""
    measure = _measure(measure_id)
    period = _period(period_start, period_end, _MAX_DRILL_DOWN_DAYS)
    chosen = await site_for(scoping, measures, principal, site)
    note = AuditNote("read", "Measure", measure.value, detail=f"drill-down {population} {period.start}..{period.end}")
    note_audit(request.state, note)
    patients = await run_in_threadpool(measures.drill_down, measure, period, chosen, population)
    note.patients = patients
    return MeasurePatients(
        measure=measure.value,
        population=population,
        period_start=period.start,
        period_end=period.end,
        site=chosen,
        patients=patients,
    )


@router.get(
    "/MeasureReport",
    operation_id="searchMeasureReport",
    response_class=FhirJSONResponse,
    responses=_RESPONSES,
    summary="Kept MeasureReports by measure, period and site",
)
async def search_measure_report(
    request: Request,
    measures: MeasuresDep,
    scoping: ScopingDep,
    principal: MeasureReader,
    measure: Annotated[str | None, Query(max_length=200, description="A Measure's id or canonical URL")] = None,
    period: Annotated[
        list[str] | None, Query(max_length=12, description="geYYYY-MM-DD (starts on or after), leYYYY-MM-DD")
    ] = None,
    site: Annotated[str | None, _SITE] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=1000)] = 100,
) -> FhirJSONResponse:
    """The MeasureReports kept by evaluations, newest period first: all sites together (site-wide callers) and each
    site (limited callers: their own sites only)."""
    unknown = sorted(set(request.query_params) - {"measure", "period", "site", "_count"})
    if unknown:
        raise refuse(Problem.INVALID, "not-supported", f"unsupported search parameter(s): {', '.join(unknown)}")
    measure_id = _measure(measure.rsplit("/", 1)[-1]).value if measure else None
    period_from = period_to = None
    for value in period or []:
        if value.startswith("le"):
            period_to = _day(value, "period")
        elif value.startswith("ge"):
            period_from = _day(value, "period")
        else:
            raise refuse(Problem.INVALID, "value", "period takes geYYYY-MM-DD and/or leYYYY-MM-DD")
    allowed = await _allowed_sites(scoping, measures, principal)
    if allowed is not None and site is not None and site not in allowed:
        raise forbidden("this site is not one of yours")
    note_audit(request.state, AuditNote("search", "MeasureReport"))
    bodies = await run_in_threadpool(
        measures.store.search_reports,
        measure_id,
        period_from,
        period_to,
        site,
        sorted(allowed) if allowed is not None else None,
        count,
    )
    return fhir_response(searchset(fhir_base(request), [parse(b.encode()) for b in bodies]))


@router.get(
    "/MeasureReport/{report_id}",
    operation_id="readMeasureReport",
    response_class=FhirJSONResponse,
    responses=_RESPONSES,
    summary="One kept MeasureReport",
)
async def read_measure_report(
    request: Request,
    measures: MeasuresDep,
    scoping: ScopingDep,
    principal: MeasureReader,
    report_id: Annotated[str, _REPORT],
) -> FhirJSONResponse:
    """A MeasureReport an evaluation kept."""
    note_audit(request.state, AuditNote("read", "MeasureReport", report_id))
    found = await run_in_threadpool(measures.store.read_report, report_id)
    if found is None:
        raise refuse(Problem.NOT_FOUND, "not-found", f"MeasureReport/{report_id} is not known")
    site, body = found
    allowed = await _allowed_sites(scoping, measures, principal)
    if allowed is not None and (site is None or site not in allowed):
        raise forbidden("this report is not about one of your sites")
    return fhir_response(parse(body.encode()))
