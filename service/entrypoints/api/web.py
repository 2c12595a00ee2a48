"""The care coordinators' web pages: the worklist with its filters and actions, and the patient page.

Server-rendered HTML with plain forms (POST, then a redirect, for filters and actions), so the pages work with a
keyboard, without JavaScript and without a separate front-end build. A search's name or MRN is kept server-side
under a random id (the page's URLs carry the id, never the text). The JSON API (worklist_routes) serves the same
data for other tools.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hmac
import re
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import parse_qs, quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from service.domain.alert_lifecycle import ActionRequest, AlertAction
from service.domain.alert_types import ALERT_TYPES, title_of
from service.domain.risk_parameters import FACTOR_BY_CODE
from service.entrypoints.api.auth import Callers, CallersDep, bearer
from service.entrypoints.api.body import read_body
from service.entrypoints.api.charts import Bar, contribution_chart
from service.entrypoints.api.csrf import same_origin
from service.entrypoints.api.deps import (
    AccessDep,
    ActionsDep,
    ClockDep,
    SettingsDep,
    TodayDep,
    WorklistDep,
)
from service.entrypoints.api.middleware import AuditNote, note_audit
from service.entrypoints.api.scoping import ScopingDep
from service.entrypoints.api.worklist_routes import patient_document, row_to_item
from service.fhir.risk_assessment import in_sentence, percent
from service.platform.errors import HTTP_STATUS, Problem, RefractureError
from service.security.principal import Permission, Principal
from service.usecases.ports.clock import Clock
from service.usecases.ports.worklist import Sort, WorklistFilters
from service.usecases.worklist import ACTIVE_STATES, Worklist

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _drug_name(value: str | None) -> str:
    """'zoledronic-acid-5mg' as a person writes it: 'zoledronic acid 5 mg'."""
    return re.sub(r"(?<!\d)(\d{1,6})mg$", r"\1 mg", value or "").replace("-", " ")


templates.env.filters["drug"] = _drug_name

PAGE_SIZE: Final = 50
_MAX_FORM_BYTES: Final = 16_384  # an action's fields, with room to spare
_DONE: Final = {
    "acknowledge": "Alert acknowledged.",
    "assign": "Alert assigned.",
    "snooze": "Alert snoozed.",
    "dismiss": "Alert dismissed.",
    "reopen": "Alert reopened.",
    "note": "Note added.",
}
_CHOICES: Final = {
    "code": [(t.value, info.title) for t, info in ALERT_TYPES.items()],
    "priority": [("urgent", "Urgent"), ("routine", "Routine")],
    "state": [(s, s.capitalize()) for s in ACTIVE_STATES],
    "risk_band": [("high", "High"), ("moderate", "Moderate"), ("low", "Low")],
    "sort": [
        (Sort.DUE.value, "Due date (overdue first)"),
        (Sort.PRIORITY.value, "Priority"),
        (Sort.RISK.value, "Risk (highest first)"),
        (Sort.NAME.value, "Name"),
    ],
}


@router.get("/")
async def home() -> RedirectResponse:
    """The worklist is the start page."""
    return RedirectResponse("/worklist", status_code=303)


_FILTERS: Final = ("code", "priority", "state", "assignee", "due_before", "risk_band", "q", "sort")


@router.post("/worklist/search", response_class=HTMLResponse)
async def search(request: Request, callers: CallersDep, worklist: WorklistDep, clock: ClockDep) -> Response:
    """The filter form, posted: back to the list with the filters in the URL, and the name or MRN as a search id."""
    signed = await _signed_in(request, callers, Permission.READ_WORKLIST)
    if isinstance(signed, Response):
        return signed
    note_audit(request.state, AuditNote("search", detail="worklist search kept"))
    refused = "Not searched"
    if not _same_origin(request):
        return _refused(request, 403, "This form was sent from another site.", "/worklist", refused)
    try:
        raw = await read_body(request, _MAX_FORM_BYTES)
    except RefractureError:
        return _refused(request, 413, "The form is larger than any search needs.", "/worklist", refused)
    fields = {k: v[-1].strip() for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    if not _csrf_ok(request, fields.get("csrf", "")):
        return _refused(request, 403, "The form has expired; reload the page and try again.", "/worklist", refused)
    return await _list_url(worklist, clock, signed, {k: fields.get(k, "")[:200] for k in _FILTERS})


async def _list_url(worklist: Worklist, clock: Clock, principal: Principal, values: dict[str, str]) -> RedirectResponse:
    """The worklist's URL for these filters: a name or MRN becomes a search id kept server-side."""
    query = {k: v for k, v in values.items() if v and k != "q" and not (k == "sort" and v == Sort.DUE.value)}
    if values.get("q"):
        search_id, _ = await run_in_threadpool(worklist.remember_search, principal.subject, values["q"], clock())
        query["search"] = search_id
    return RedirectResponse(f"/worklist?{urlencode(query)}" if query else "/worklist", status_code=303)


@router.get("/worklist", response_class=HTMLResponse)
async def worklist_page(
    request: Request,
    worklist: WorklistDep,
    clock: ClockDep,
    today: TodayDep,
    scoping: ScopingDep,
    callers: CallersDep,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    done: Annotated[str | None, Query(max_length=20)] = None,
    search: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The list: filters, counts, one page of open alerts with an action form on each."""
    signed = await _signed_in(request, callers, Permission.READ_WORKLIST)
    if isinstance(signed, Response):
        return signed
    if request.query_params.get("q"):
        # An old link or bookmark with the text in it: the same list under a search id, out of the address bar.
        return await _list_url(worklist, clock, signed, {k: request.query_params.get(k, "").strip() for k in _FILTERS})
    form, problems = _filter_form(request)
    if search:
        text = await run_in_threadpool(worklist.recall_search, search, signed.subject, clock())
        if text is None:
            problems.append("That search has expired; search again.")
        form["q"] = text or ""
    filters = WorklistFilters(
        form["code"] or None,
        form["priority"] or None,
        form["state"] or None,
        form["assignee"] or None,
        dt.date.fromisoformat(form["due_before"]) if form["due_before"] else None,
        form["risk_band"] or None,
        form["q"] or None,
    )
    try:
        scope = await scoping.population_scope(signed)
    except RefractureError as exc:
        return _refused(request, HTTP_STATUS[exc.problem], str(exc), "/auth/sign-in", "Not available")
    filters = dataclasses.replace(filters, scope=scope)
    sort = Sort(form["sort"])
    # Two connections at once: the counts scan every open alert, the page reads fifty.
    page, counts = await asyncio.gather(
        run_in_threadpool(worklist.page, filters, sort, cursor, PAGE_SIZE),
        run_in_threadpool(worklist.counts, scope),
    )
    note_audit(request.state, AuditNote("search", patients=[r.patient_id for r in page.rows], detail="worklist page"))
    query = {k: v for k, v in form.items() if v and k != "q" and not (k == "sort" and v == Sort.DUE.value)}
    if search and form["q"]:
        query["search"] = search
    return templates.TemplateResponse(
        request,
        "worklist.html",
        {
            **_who(request, signed),
            "today": today,
            "form": form,
            "problems": problems,
            "choices": _CHOICES,
            "rows": [row_to_item(r, today) for r in page.rows],
            "counts": _count_table(counts),
            "next_url": f"/worklist?{urlencode({**query, 'cursor': page.next_cursor})}" if page.next_cursor else None,
            "first_url": f"/worklist?{urlencode(query)}" if cursor else None,
            "csv_url": f"/api/worklist.csv?{urlencode(query)}",
            "here": str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
            "notice": _DONE.get(done or ""),
        },
    )


@router.get("/worklist/patients/{patient_id}", response_class=HTMLResponse)
async def patient_page(
    request: Request,
    patient_id: str,
    worklist: WorklistDep,
    today: TodayDep,
    settings: SettingsDep,
    scoping: ScopingDep,
    callers: CallersDep,
    done: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """The patient: risk and its reasons, missing inputs, alerts with evidence and history, medications, CarePlan."""
    signed = await _signed_in(request, callers, Permission.READ_WORKLIST)
    if isinstance(signed, Response):
        return signed
    note_audit(request.state, AuditNote("read", "Patient", patient_id[:64], [patient_id[:64]], "patient page"))
    try:
        await scoping.check_patient(signed, patient_id[:64])
    except RefractureError as exc:
        # A coordinator may break the glass (a reason, a time limit, audited); a patient-bound token may not.
        glass = patient_id[:64] if signed.may(Permission.BREAK_GLASS) and not signed.patient_bound else None
        return _refused(request, HTTP_STATUS[exc.problem], str(exc), "/worklist", "Outside your sites", glass)
    try:
        view = await run_in_threadpool(worklist.patient, patient_id)
    except RefractureError as exc:
        return _refused(request, HTTP_STATUS[exc.problem], str(exc), "/worklist", "Patient not found")
    document = patient_document(view, today)
    risk = document["risk"]
    chart = None
    missing: list[str] = []
    shown: dict[str, Any] = {}  # the risk as a clinician reads it: percentages, the range, what would narrow it
    if risk is not None:
        bars = [Bar(_label(code), float(value)) for code, value in risk["contributions"].items() if value]
        # contribution_chart escapes every text it puts in the SVG.
        chart = Markup(contribution_chart(bars))  # noqa: S704  # nosec B704
        missing = [_label(code) for code in risk["missing"]]
        if risk.get("probability") is not None:
            shown["probability"] = percent(float(risk["probability"]))
        if risk.get("low") is not None and risk.get("high") is not None:
            shown["low"], shown["high"] = percent(float(risk["low"])), percent(float(risk["high"]))
        shown["narrowing"] = [in_sentence(_label(code)) for code in risk.get("narrowing", [])]
    # History in the hospital's time zone: the people reading it think in local time.
    zone = ZoneInfo(settings.timezone)
    for alert in document["alerts"]:
        alert["history"] = [{**e, "at": e["at"].astimezone(zone)} for e in alert["history"]]
    open_alerts = [a for a in document["alerts"] if a["status"] in ACTIVE_STATES]
    closed_alerts = [a for a in document["alerts"] if a["status"] not in ACTIVE_STATES]
    return templates.TemplateResponse(
        request,
        "patient.html",
        {
            **_who(request, signed),
            "today": today,
            "patient": document,
            "risk": risk,
            "chart": chart,
            "missing": missing,
            "shown": shown,
            "open_alerts": open_alerts,
            "closed_alerts": closed_alerts,
            "here": str(request.url.path),
            "notice": _DONE.get(done or ""),
        },
    )


@router.post("/worklist/alerts/{alert_id}", response_class=HTMLResponse)
async def act_on_alert(
    request: Request,
    alert_id: str,
    access: AccessDep,
    actions: ActionsDep,
    scoping: ScopingDep,
    callers: CallersDep,
) -> Response:
    """An action from a form; back to the page it came from, or a page that says why it was not applied."""
    signed = await _signed_in(request, callers, Permission.ACT_ON_ALERTS)
    if isinstance(signed, Response):
        return signed
    note = AuditNote("alert-action", detail=f"alert {alert_id[:64]}")
    note_audit(request.state, note)
    if not _same_origin(request):
        return _refused(request, 403, "This form was sent from another site; nothing was changed.", "/worklist")
    try:
        raw = await read_body(request, _MAX_FORM_BYTES)
    except RefractureError:
        return _refused(request, 413, "The form is larger than any action needs; nothing was changed.", "/worklist")
    fields = {k: v[-1].strip() for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    if not _csrf_ok(request, fields.get("csrf", "")):
        return _refused(request, 403, "The form has expired; reload the page and try again.", "/worklist")
    back = _safe_back(fields.get("back", ""))
    alert_patient = await run_in_threadpool(access.patient_of_alert, alert_id)
    if alert_patient is not None:
        try:
            await scoping.check_patient(signed, alert_patient)
        except RefractureError as exc:
            return _refused(request, HTTP_STATUS[exc.problem], str(exc), "/worklist")
    try:
        action = AlertAction(fields.get("action", ""))
    except ValueError:
        return _refused(request, 400, "Choose an action.", back)
    text = fields.get("text") or None
    until = None
    if fields.get("until"):
        try:
            until = dt.date.fromisoformat(fields["until"])
        except ValueError:
            return _refused(request, 400, "The snooze date is not a date.", back)
    revision = int(fields["revision"]) if fields.get("revision", "").isdigit() else None
    # One free-text box serves every action: it is the assignee, the reason or the note, as the action needs.
    action_request = ActionRequest(
        action,
        assignee=text if action is AlertAction.ASSIGN else None,
        until=until,
        reason=text if action is AlertAction.DISMISS else None,
        note=text if action not in (AlertAction.ASSIGN, AlertAction.DISMISS) else None,
    )
    note.detail = f"alert {alert_id[:64]}: {action.value}"
    try:
        result = await run_in_threadpool(actions.act, alert_id, action_request, signed.subject, revision)
    except RefractureError as exc:
        return _refused(request, HTTP_STATUS[exc.problem], str(exc), back)
    note.patients = [result.alert.patient_id]
    separator = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{separator}done={action.value}", status_code=303)


@router.post("/worklist/patients/{patient_id}/break-glass", response_class=HTMLResponse)
async def break_glass(
    request: Request,
    patient_id: str,
    clock: ClockDep,
    settings: SettingsDep,
    access: AccessDep,
    callers: CallersDep,
) -> Response:
    """See a patient outside one's sites: a stated reason, for REFRACTURE_BREAK_GLASS_TTL_S, audited."""
    signed = await _signed_in(request, callers, Permission.BREAK_GLASS)
    if isinstance(signed, Response):
        return signed
    patient_id = patient_id[:64]
    note = AuditNote("break-glass", "Patient", patient_id, [patient_id])
    note_audit(request.state, note)
    if not _same_origin(request):
        return _refused(request, 403, "This form was sent from another site; nothing was changed.", "/worklist")
    try:
        raw = await read_body(request, _MAX_FORM_BYTES)
    except RefractureError:
        return _refused(request, 413, "The form is too large; nothing was changed.", "/worklist")
    fields = {k: v[-1].strip() for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    if not _csrf_ok(request, fields.get("csrf", "")):
        return _refused(request, 403, "The form has expired; reload the page and try again.", "/worklist")
    reason = fields.get("reason", "")
    if signed.patient_bound or not 10 <= len(reason) <= 500:
        return _refused(
            request,
            400,
            "Say why you need to see this patient (10 to 500 characters).",
            "/worklist",
            glass_patient=patient_id,
        )
    note.detail = reason
    now = clock()
    expires_at = now + dt.timedelta(seconds=settings.break_glass_ttl_s)
    await run_in_threadpool(access.grant, signed.subject, patient_id, reason, now, expires_at)
    return RedirectResponse(f"/worklist/patients/{quote(patient_id, safe='')}", status_code=303)


async def _signed_in(request: Request, callers: Callers, permission: Permission) -> Principal | Response:
    """The signed-in person allowed ``permission``; else the sign-in page (not signed in) or a refusal (no role)."""
    try:
        principal = await callers.identify(request, await bearer(request))
    except RefractureError as exc:
        if exc.problem is Problem.UNAUTHENTICATED:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/auth/sign-in?{urlencode({'next': target})}", status_code=303)
        return _refused(request, HTTP_STATUS[exc.problem], str(exc), "/worklist", "Not available")
    if not principal.may(permission):
        return _refused(request, 403, "Your role does not include the worklist.", "/auth/sign-in", "Not allowed")
    return principal


def _who(request: Request, principal: Principal) -> dict[str, Any]:
    """The header's signed-in person, and the CSRF token the page's forms carry (session sign-ins only)."""
    session = getattr(request.state, "session", None)
    name = principal.claims.get("name")
    return {
        "user": name if isinstance(name, str) and name else principal.subject,
        "csrf": session.csrf_token if session is not None else "",
    }


def _csrf_ok(request: Request, token: str) -> bool:
    """A session's form must carry the session's token; a bearer-token caller sends no cookie to forge with."""
    session = getattr(request.state, "session", None)
    if session is None:
        return True
    return hmac.compare_digest(token.encode(), session.csrf_token.encode())


def _filter_form(request: Request) -> tuple[dict[str, str], list[str]]:
    """The filter form's values as typed (empty fields are no filter); values outside the choices are dropped."""
    params = request.query_params
    form = {key: "" if key == "q" else params.get(key, "").strip()[:200] for key in _FILTERS}
    problems: list[str] = []
    for key in ("code", "priority", "state", "risk_band", "sort"):
        if form[key] and form[key] not in {value for value, _ in _CHOICES[key]}:
            problems.append(f"Unknown {key.replace('_', ' ')} '{form[key]}' was ignored.")
            form[key] = ""
    if form["due_before"]:
        try:
            dt.date.fromisoformat(form["due_before"])
        except ValueError:
            problems.append("The due date is not a date and was ignored.")
            form["due_before"] = ""
    form["sort"] = form["sort"] or Sort.DUE.value
    return form, problems


def _count_table(counts: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for code, priority, n in counts:
        row = table.setdefault(code, {"code": code, "title": title_of(code), "urgent": 0, "routine": 0})
        row[priority] = row.get(priority, 0) + n
    return sorted(table.values(), key=lambda r: (-r["urgent"], -r["routine"]))


def _label(code: str) -> str:
    factor = FACTOR_BY_CODE.get(code)
    return factor.label if factor else code


def _safe_back(back: str) -> str:
    """Only our own pages: an absolute or scheme-relative URL would make the form an open redirect."""
    parts = urlsplit(back)
    if parts.scheme or parts.netloc or not parts.path.startswith("/worklist") or back.startswith("//"):
        return "/worklist"
    query = urlencode([(k, v) for k, values in parse_qs(parts.query).items() if k != "done" for v in values])
    return parts.path + (f"?{query}" if query else "")


def _same_origin(request: Request) -> bool:
    """Refuse cross-site form posts (with the session's CSRF token): a page elsewhere must not act here."""
    return same_origin(request)


def _refused(
    request: Request,
    status: int,
    message: str,
    back: str,
    heading: str = "The action was not applied",
    glass_patient: str | None = None,
) -> Response:
    principal: Principal | None = getattr(request.state, "principal", None)
    who = _who(request, principal) if principal else {}
    context = {**who, "message": message, "back": back, "heading": heading, "glass_patient": glass_patient}
    return templates.TemplateResponse(request, "refused.html", context, status_code=status)
