"""The worklist API (/api): open alerts with their patients, dashboard counts, CSV export, actions, the patient."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from service.domain.alert_lifecycle import ActionRequest, AlertAction
from service.domain.alert_types import title_of
from service.domain.patient import age_on
from service.entrypoints.api.auth import forbidden, require
from service.entrypoints.api.deps import (
    AccessDep,
    ActionsDep,
    AuditDep,
    ClockDep,
    SettingsDep,
    TodayDep,
    WorklistDep,
)
from service.entrypoints.api.middleware import AuditNote, audit_records, client_ip, note_audit
from service.entrypoints.api.scoping import PopulationScope, Scoping, ScopingDep
from service.fhir.risk_assessment import RANGE_EXTENSION
from service.platform.errors import Problem, refuse
from service.security.principal import Permission, Principal
from service.usecases.ports.reads import PatientAccess
from service.usecases.ports.worklist import Sort, WorklistFilters, WorklistRow
from service.usecases.worklist import PatientView

__all__ = [
    "ActionBody",
    "AlertCode",
    "csv_cell",
    "filters_dependency",
    "patient_document",
    "router",
    "row_to_item",
]

router = APIRouter(prefix="/api", tags=["Worklist"])

WorklistReader = Annotated[Principal, Depends(require(Permission.READ_WORKLIST))]
AlertActor = Annotated[Principal, Depends(require(Permission.ACT_ON_ALERTS))]
GlassBreaker = Annotated[Principal, Depends(require(Permission.BREAK_GLASS))]

AlertCode = Literal[
    "denosumab-dose-due",
    "denosumab-overdue",
    "denosumab-stopped-without-follow-on",
    "bmd-assessment-gap",
    "treatment-gap",
    "adherence-check-due",
]


class WorklistItem(BaseModel):
    """One open alert and its patient."""

    alert_id: str
    code: str
    title: str
    priority: str
    state: str
    due_date: date
    overdue: bool
    assignee: str | None
    snoozed_until: date | None
    revision: int = Field(description="Send it back with an action: a different one means someone acted first")
    detail: str
    patient_id: str
    name: str | None
    mrn: str | None
    age: int | None
    sex: str | None
    risk_band: str | None
    risk_probability: float | None = Field(description="A fraction between 0 and 1 over 2 years")
    last_dose_date: date | None
    last_dose_drug: str | None
    index_date: date | None


class WorklistResponse(BaseModel):
    """A page of the worklist."""

    items: list[WorklistItem]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page")


class CountItem(BaseModel):
    """Open alerts of one code and priority."""

    code: str
    title: str
    priority: str
    open: int


class ActionBody(BaseModel):
    """An action on an alert."""

    action: AlertAction
    assignee: str | None = Field(default=None, max_length=200)
    until: date | None = Field(default=None, description="snooze: the day the alert comes back")
    reason: str | None = Field(default=None, max_length=2000, description="dismiss: required")
    note: str | None = Field(default=None, max_length=4000)
    revision: int | None = Field(default=None, description="The revision you saw; 409 if the alert changed since")


class HistoryEvent(BaseModel):
    """One change of an alert."""

    at: str
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    note: str | None


class AlertOut(BaseModel):
    """An alert after an action, with its whole history."""

    alert_id: str
    patient_id: str
    code: str
    state: str
    priority: str
    due_date: date
    assignee: str | None
    snoozed_until: date | None
    revision: int
    history: list[HistoryEvent]


async def filters_dependency(
    code: Annotated[AlertCode | None, Query()] = None,
    priority: Annotated[Literal["urgent", "routine"] | None, Query()] = None,
    state: Annotated[Literal["open", "acknowledged", "assigned", "snoozed"] | None, Query()] = None,
    assignee: Annotated[str | None, Query(max_length=200, description='a person, or "-" for unassigned')] = None,
    due_before: Annotated[date | None, Query()] = None,
    risk_band: Annotated[Literal["low", "moderate", "high"] | None, Query()] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="text in the name or MRN. It puts patient data into the URL, which proxies and servers log: "
            "prefer `search`",
        ),
    ] = None,
) -> WorklistFilters:
    """The worklist's filters from the query string."""
    return WorklistFilters(code, priority, state, assignee or None, due_before, risk_band, (q or "").strip() or None)


async def _resolved_filters(
    worklist: WorklistDep,
    clock: ClockDep,
    principal: WorklistReader,
    filters: Annotated[WorklistFilters, Depends(filters_dependency)],
    search: Annotated[
        str | None,
        Query(max_length=64, description="a search id from POST /api/worklist/searches (yours, unexpired)"),
    ] = None,
) -> WorklistFilters:
    if not search:
        return filters
    text = await run_in_threadpool(worklist.recall_search, search, principal.subject, clock())
    if text is None:
        raise refuse(Problem.INVALID, "value", "the search has expired or is not yours: post it again")
    return replace(filters, text=text)


FiltersDep = Annotated[WorklistFilters, Depends(_resolved_filters)]


class SearchBody(BaseModel):
    """A name or MRN to search the worklist for, sent in a body rather than a URL."""

    q: str = Field(min_length=1, max_length=200, description="text in the name or MRN")


class SearchOut(BaseModel):
    """A search kept server-side: pass its id as `search` to GET /api/worklist or /api/worklist.csv."""

    search: str
    expires_at: datetime


@router.post(
    "/worklist/searches",
    operation_id="worklistSearch",
    summary="Keep a name or MRN search server-side; its id goes into the worklist's URLs instead of the text",
    status_code=201,
)
async def save_search(
    request: Request, body: SearchBody, worklist: WorklistDep, clock: ClockDep, principal: WorklistReader
) -> SearchOut:
    """The text stays in the database for an hour, usable only by the caller (GET /api/worklist?search=<id>)."""
    note_audit(request.state, AuditNote("search", detail="worklist search kept"))
    search_id, expires_at = await run_in_threadpool(
        worklist.remember_search, principal.subject, body.q.strip(), clock()
    )
    return SearchOut(search=search_id, expires_at=expires_at)


def row_to_item(row: WorklistRow, today: date) -> WorklistItem:
    """A row as the API shows it."""
    return WorklistItem(
        alert_id=row.alert_id,
        code=row.code,
        title=row.title,
        priority=row.priority,
        state=row.status,
        due_date=row.due_date,
        overdue=row.due_date < today,
        assignee=row.assignee,
        snoozed_until=row.snoozed_until,
        revision=row.revision,
        detail=row.detail,
        patient_id=row.patient_id,
        name=row.name,
        mrn=row.mrn,
        age=age_on(row.birth_date, today),
        sex=row.sex,
        risk_band=row.risk_band,
        risk_probability=round(row.risk_probability, 4) if row.risk_probability is not None else None,
        last_dose_date=row.last_dose_date,
        last_dose_drug=row.last_dose_drug,
        index_date=row.index_date,
    )


@router.get("/worklist", operation_id="worklist", summary="Open alerts, filtered, sorted, one page at a time")
async def worklist(
    request: Request,
    worklist: WorklistDep,
    today: TodayDep,
    _: WorklistReader,
    filters: FiltersDep,
    scope: PopulationScope,
    sort: Sort = Sort.DUE,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> WorklistResponse:
    """Open alerts (open, acknowledged, assigned, snoozed) with the patient's details and risk; keyset pages."""
    filters = dataclasses.replace(filters, scope=scope)
    page = await run_in_threadpool(worklist.page, filters, sort, cursor, limit)
    note_audit(request.state, AuditNote("search", patients=[r.patient_id for r in page.rows], detail="worklist"))
    return WorklistResponse(items=[row_to_item(r, today) for r in page.rows], next_cursor=page.next_cursor)


@router.get("/worklist/counts", operation_id="worklistCounts", summary="Open alerts per code and priority")
async def counts(worklist: WorklistDep, _: WorklistReader, scope: PopulationScope) -> list[CountItem]:
    """For a dashboard (the patients of the caller's sites)."""
    rows = await run_in_threadpool(worklist.counts, scope)
    return [CountItem(code=code, title=title_of(code), priority=priority, open=n) for code, priority, n in rows]


_CSV_COLUMNS = [
    "alert_id",
    "code",
    "title",
    "priority",
    "state",
    "due_date",
    "overdue",
    "assignee",
    "patient_id",
    "name",
    "mrn",
    "age",
    "sex",
    "risk_band",
    "risk_probability",
    "last_dose_date",
    "last_dose_drug",
    "index_date",
    "detail",
]


# The CSV export's chunk size: each chunk's patients are audited before it is sent.
CSV_CHUNK_BYTES = 64_000

# OWASP CSV Injection: a cell a spreadsheet would read as a formula starts with one of these (or their full-width
# forms, which some spreadsheets fold to ASCII). Names, MRNs, assignees and details come from the EHR and from
# users: "=HYPERLINK(...)" was exported as a live formula.
_FORMULA_STARTS: Final = tuple("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def csv_cell(value: Any) -> str:
    """A value as a CSV cell a spreadsheet shows as text (OWASP: prefix a single quote; every cell is quoted too)."""
    if value is None:
        return ""
    text = str(value)
    if isinstance(value, str) and text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


@router.get(
    "/worklist.csv",
    operation_id="worklistCsv",
    summary="The current filter as CSV",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "All rows of the filter"}},
)
def export_csv(
    request: Request,
    today: TodayDep,
    audit: AuditDep,
    worklist: WorklistDep,
    principal: WorklistReader,
    filters: FiltersDep,
    scope: PopulationScope,
    sort: Sort = Sort.DUE,
) -> StreamingResponse:
    """Every open alert of the filter, streamed."""
    filters = dataclasses.replace(filters, scope=scope)
    note_audit(request.state, AuditNote("export", detail="worklist.csv"))
    request_id = getattr(request.state, "request_id", None)

    sent: set[str] = set()

    def audited(chunk: str, patients: set[str]) -> str:
        # The export's start is audited before the first byte; each chunk's new patients before the chunk leaves, so
        # an export cut short (the client gone, the database failing) has recorded exactly whom it sent.
        if patients - sent:
            note = AuditNote("export", patients=sorted(patients - sent), detail="worklist.csv rows")
            audit.record(
                audit_records(note, principal, "GET /api/worklist.csv", 200, client_ip(request.scope), request_id)
            )
            sent.update(patients)
        return chunk

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
        writer.writerow(_CSV_COLUMNS)
        patients: set[str] = set()
        for row in worklist.export(filters, sort):
            patients.add(row.patient_id)
            item = row_to_item(row, today).model_dump()
            writer.writerow([csv_cell(item[c]) for c in _CSV_COLUMNS])
            if buffer.tell() > CSV_CHUNK_BYTES:
                yield audited(buffer.getvalue(), patients)
                patients = set()
                buffer.seek(0)
                buffer.truncate()
        yield audited(buffer.getvalue(), patients)

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="worklist.csv"'},
    )


@router.post(
    "/alerts/{alert_id}/actions",
    operation_id="actOnAlert",
    summary="Acknowledge, assign, snooze, dismiss, reopen or note an alert",
    responses={
        404: {"description": "Unknown alert"},
        409: {"description": "Someone acted first, or the action does not fit the alert's state"},
    },
)
async def act(
    request: Request,
    alert_id: str,
    body: ActionBody,
    actions: ActionsDep,
    access: AccessDep,
    scoping: ScopingDep,
    principal: AlertActor,
) -> AlertOut:
    """Each action is kept in the alert's history with who and when; the patient's CarePlan follows."""
    note = AuditNote("alert-action", detail=f"alert {alert_id}: {body.action.value}")
    note_audit(request.state, note)
    await _check_alert(access, scoping, principal, alert_id)
    action = ActionRequest(body.action, body.assignee, body.until, body.reason, body.note)
    result = await run_in_threadpool(actions.act, alert_id, action, principal.subject, body.revision)
    alert = result.alert
    note.patients = [alert.patient_id]
    return AlertOut(
        alert_id=alert.id,
        patient_id=alert.patient_id,
        code=alert.code,
        state=alert.status,
        priority=alert.priority,
        due_date=alert.due,
        assignee=alert.assignee,
        snoozed_until=alert.snoozed_until,
        revision=alert.revision,
        history=[
            HistoryEvent(
                at=e.at.isoformat(),
                actor=e.actor,
                action=e.action,
                from_status=e.from_status,
                to_status=e.to_status,
                note=e.note,
            )
            for e in result.history
        ],
    )


@router.get("/patients/{patient_id}", operation_id="patient", summary="Everything the patient page shows")
async def patient(
    request: Request,
    patient_id: str,
    worklist: WorklistDep,
    today: TodayDep,
    scoping: ScopingDep,
    principal: WorklistReader,
) -> dict[str, Any]:
    """The risk with each factor's contribution, the missing inputs, the alerts with evidence and history, the
    medication timeline and the CarePlan's activities."""
    note_audit(request.state, AuditNote("read", "Patient", patient_id, [patient_id], "patient page"))
    await scoping.check_patient(principal, patient_id)
    view = await run_in_threadpool(worklist.patient, patient_id)
    return patient_document(view, today)


async def _check_alert(access: PatientAccess, scoping: Scoping, principal: Principal, alert_id: str) -> None:
    """An action on an alert of a patient outside the caller's scope is refused (an unknown alert: the action's 404)."""
    patient_id = await run_in_threadpool(access.patient_of_alert, alert_id)
    if patient_id is not None:
        await scoping.check_patient(principal, patient_id)


class BreakGlassBody(BaseModel):
    """Why the coordinator must see a patient outside their sites (kept in the audit trail)."""

    reason: str = Field(min_length=10, max_length=500)


class BreakGlassOut(BaseModel):
    """A break-the-glass grant: the patient is visible to the caller until expires_at."""

    patient_id: str
    expires_at: datetime


@router.post(
    "/patients/{patient_id}/break-glass",
    operation_id="breakGlass",
    summary="See a patient outside your sites, for a stated reason, for a limited time (audited)",
    status_code=201,
)
async def break_glass(
    request: Request,
    patient_id: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9\-.]{1,64}$")],
    body: BreakGlassBody,
    clock: ClockDep,
    settings: SettingsDep,
    access: AccessDep,
    principal: GlassBreaker,
) -> BreakGlassOut:
    """Grants the caller this patient for REFRACTURE_BREAK_GLASS_TTL_S; the reason is in the audit trail."""
    note_audit(request.state, AuditNote("break-glass", "Patient", patient_id, [patient_id], body.reason.strip()))
    if principal.patient_bound:
        raise forbidden("a token bound to one patient cannot break the glass")
    now = clock()
    expires_at = now + timedelta(seconds=settings.break_glass_ttl_s)
    await run_in_threadpool(access.grant, principal.subject, patient_id, body.reason.strip(), now, expires_at)
    return BreakGlassOut(patient_id=patient_id, expires_at=expires_at)


def patient_document(view: PatientView, today: date) -> dict[str, Any]:
    """The patient page's content as plain data (the API returns it; the web page renders it)."""
    summary = view.summary or {}
    prediction = ((view.risk_assessment or {}).get("prediction") or [{}])[0]
    result = view.assessment_result or {}
    return {
        "patient_id": view.patient_id,
        "name": summary.get("name"),
        "mrn": summary.get("mrn"),
        "age": age_on(summary.get("birth_date"), today),
        "sex": summary.get("sex"),
        "risk": None
        if view.risk_assessment is None
        else {
            "risk_assessment_id": view.risk_assessment.get("id"),
            "probability": prediction.get("probabilityDecimal"),
            "band": (prediction.get("qualitativeRisk") or {}).get("coding", [{}])[0].get("code"),
            "contributions": result.get("contributions", {}),
            "inputs": result.get("inputs", {}),
            "missing": result.get("missing", []),
            "details": result.get("details", {}),
            "index": result.get("index"),
            "explanation": ((view.risk_assessment.get("note") or [{}])[0]).get("text"),
            **_risk_range(prediction),
        },
        "alerts": [{**a, "title": title_of(a["code"])} for a in view.alerts],
        "medications": [
            {
                "day": e.day,
                "drug": e.drug.value,
                "event": e.event,
                "status": e.status,
                "dose_mg": e.dose_mg,
                "source": e.source,
            }
            for e in view.medications
        ],
        "care_plan_activities": [
            {
                "id": a.get("id"),
                "status": a.get("detail", {}).get("status"),
                "description": a.get("detail", {}).get("description"),
                "alert": next(
                    (c.get("code") for r in a.get("detail", {}).get("reasonCode", []) for c in r.get("coding", [])),
                    None,
                ),
            }
            for a in (view.care_plan or {}).get("activity", [])
        ],
    }


def _risk_range(prediction: dict[str, Any]) -> dict[str, Any]:
    """The range over the unknown inputs (10th-90th percentile) and the inputs that would narrow it most, as the
    RiskAssessment carries them (empty when it carries none, e.g. from an older model)."""
    parts: list[dict[str, Any]] = next(
        (e.get("extension", []) for e in prediction.get("extension", []) if e.get("url") == RANGE_EXTENSION), []
    )
    values = {p["url"]: p.get("valueDecimal") for p in parts if p.get("url") in ("low", "high")}
    narrowing = [p["valueCoding"]["code"] for p in parts if p.get("url") == "narrowedBy" and "valueCoding" in p]
    return {"low": values.get("low"), "high": values.get("high"), "narrowing": narrowing}
