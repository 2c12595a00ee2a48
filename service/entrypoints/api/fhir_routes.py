"""The FHIR REST routes under /fhir: thin — read the body, hand it to a handler in a thread, answer."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from service.domain.audit_record import AuditRecord
from service.entrypoints.api.auth import CallerDep, forbidden, require
from service.entrypoints.api.body import read_fhir_body
from service.entrypoints.api.deps import (
    AssessmentsDep,
    CarePlansDep,
    RelayDep,
    ResourcesDep,
    SettingsDep,
    TasksDep,
    fhir_base,
)
from service.entrypoints.api.fhir_handlers import Answer, FhirWritesDep, RequestAudit, check_input_type
from service.entrypoints.api.middleware import AuditNote, audit_records, client_ip, note_audit
from service.entrypoints.api.responses import FhirJSONResponse, fhir_response
from service.entrypoints.api.scoping import ScopingDep
from service.fhir.capability import READ_ONLY_TYPES, capability_statement
from service.fhir.codesystems import CODE_SYSTEMS, code_system
from service.fhir.jsonio import parse
from service.fhir.outcome import searchset
from service.fhir.references import patient_of, split_reference
from service.fhir.task import TASK_SYSTEM
from service.platform.errors import Problem, refuse
from service.security.principal import Permission, Principal
from service.usecases.relay import Relay

__all__ = ["router"]

router = APIRouter(prefix="/fhir", tags=["FHIR"])

_ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TYPE = Path(pattern=r"^[A-Z][A-Za-z]{1,63}$", description="A FHIR resource type")
_ID = Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="A FHIR logical id")
_FHIR_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/fhir+json": {"schema": {"type": "object", "additionalProperties": True}},
            "application/json": {"schema": {"type": "object", "additionalProperties": True}},
        },
    }
}
_FHIR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/fhir+json": {}}}
    for code, text in {
        400: "Not JSON, or not valid FHIR R4 (OperationOutcome)",
        404: "Unknown type or id (OperationOutcome)",
        413: "Body or Bundle too large (OperationOutcome)",
        415: "Not application/fhir+json (OperationOutcome)",
        422: "Valid FHIR refracture cannot take (OperationOutcome)",
        503: "Database unavailable; retry (OperationOutcome)",
    }.items()
}

Prefer = Annotated[str | None, Header(description="return=minimal | return=representation")]
IfMatch = Annotated[str | None, Header(alias="If-Match", description='Version-aware update: W/"n"')]
Writer = Annotated[Principal, Depends(require(Permission.WRITE_CLINICAL_DATA))]
ResultReader = Annotated[Principal, Depends(require(Permission.READ_RESULTS))]


def _ring_doorbell(relay: Relay, background: BackgroundTasks, answer: Answer) -> None:
    if answer.changed_patients and not answer.rung:
        # After the response: the doorbell must never delay or fail a committed ingest. The write's transaction
        # marked the rows rung (claim=True), so ringing is only the broker's publish, no second transaction.
        background.add_task(relay.publish_claimed, answer.changed_patients)


def _request_audit(request: Request, principal: Principal, resource_type: str | None) -> RequestAudit:
    """The audit rows of this request once its status is known, for the ingest to write in its own transaction
    (one commit per write); AuditMiddleware writes them only when the request fails before that."""
    scope = request.scope
    what = f"{scope.get('method')} {getattr(scope.get('route'), 'path', None) or 'unmatched'}"
    source_ip = client_ip(scope)
    request_id = scope.get("state", {}).get("request_id")

    def records(
        status: int, action: str, patients: list[str], resource_id: str | None, detail: str | None
    ) -> list[AuditRecord]:
        note = AuditNote(action, resource_type, resource_id, patients, detail)
        return audit_records(note, principal, what, status, source_ip, request_id)

    return records


@router.get("/metadata", operation_id="capabilities", response_class=FhirJSONResponse, summary="CapabilityStatement")
def metadata(request: Request) -> FhirJSONResponse:
    """What this FHIR server supports."""
    return fhir_response(capability_statement(fhir_base(request)))


@router.post(
    "",
    operation_id="transactionOrBatch",
    response_class=FhirJSONResponse,
    openapi_extra=_FHIR_BODY,
    responses=_FHIR_RESPONSES,
    summary="Process a transaction or batch Bundle",
)
async def post_bundle(
    request: Request,
    settings: SettingsDep,
    writes: FhirWritesDep,
    relay: RelayDep,
    background: BackgroundTasks,
    principal: Writer,
    prefer: Prefer = None,
) -> FhirJSONResponse:
    """A transaction (all or nothing) or batch (each entry on its own) Bundle of the accepted input types."""
    raw = await read_fhir_body(request, settings.max_body_bytes)
    representation = bool(prefer and "return=representation" in prefer)
    audit = _request_audit(request, principal, None)
    answer = await run_in_threadpool(writes.bundle, raw, representation, principal, audit)
    note_audit(
        request.state,
        AuditNote(answer.action, patients=answer.patients, detail=answer.detail, recorded=answer.audited),
    )
    _ring_doorbell(relay, background, answer)
    return fhir_response(answer.body, answer.status)


@router.post(
    "/{resource_type}",
    operation_id="create",
    response_class=FhirJSONResponse,
    openapi_extra=_FHIR_BODY,
    responses=_FHIR_RESPONSES,
    status_code=201,
    summary="Create (or, with the EHR's id, create-or-update)",
)
async def create(
    request: Request,
    settings: SettingsDep,
    writes: FhirWritesDep,
    relay: RelayDep,
    background: BackgroundTasks,
    principal: Writer,
    resource_type: Annotated[str, _TYPE],
    prefer: Prefer = None,
) -> FhirJSONResponse:
    """Store one resource; a resource carrying the EHR's id keeps it, and re-sending it is a no-op."""
    check_input_type(resource_type)
    _may_write(principal, resource_type, "c")
    raw = await read_fhir_body(request, settings.max_body_bytes)
    audit = _request_audit(request, principal, resource_type)
    answer = await writes.write_async(raw, resource_type, None, None, fhir_base(request), audit)
    note_audit(
        request.state,
        AuditNote("create", resource_type, answer.resource_id, answer.patients, recorded=answer.audited),
    )
    _ring_doorbell(relay, background, answer)
    return _written(answer, prefer)


@router.put(
    "/{resource_type}/{resource_id}",
    operation_id="update",
    response_class=FhirJSONResponse,
    openapi_extra=_FHIR_BODY,
    responses={**_FHIR_RESPONSES, 412: {"description": "If-Match did not match"}},
    summary="Update, or create with this id",
)
async def update(
    request: Request,
    settings: SettingsDep,
    writes: FhirWritesDep,
    relay: RelayDep,
    background: BackgroundTasks,
    principal: Writer,
    resource_type: Annotated[str, _TYPE],
    resource_id: Annotated[str, _ID],
    prefer: Prefer = None,
    if_match: IfMatch = None,
) -> FhirJSONResponse:
    """Store a new version; identical content makes no new version."""
    check_input_type(resource_type)
    _may_write(principal, resource_type, "u")
    raw = await read_fhir_body(request, settings.max_body_bytes)
    audit = _request_audit(request, principal, resource_type)
    answer = await writes.write_async(raw, resource_type, resource_id, if_match, fhir_base(request), audit)
    note_audit(request.state, AuditNote("update", resource_type, resource_id, answer.patients, recorded=answer.audited))
    _ring_doorbell(relay, background, answer)
    return _written(answer, prefer)


@router.get(
    "/RiskAssessment",
    operation_id="searchRiskAssessment",
    response_class=FhirJSONResponse,
    responses=_FHIR_RESPONSES,
    summary="A patient's RiskAssessments, newest first",
)
async def search_risk_assessment(
    request: Request,
    assessments: AssessmentsDep,
    scoping: ScopingDep,
    principal: ResultReader,
    subject: Annotated[str | None, Query(description="Patient/{id}")] = None,
    patient: Annotated[str | None, Query(description="{id} or Patient/{id}")] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=1000)] = 100,
) -> FhirJSONResponse:
    """RiskAssessments of one patient as a searchset Bundle, newest first."""
    _only_parameters(request, {"subject", "patient", "_count"}, "RiskAssessment is searched by subject (or patient)")
    _may_read(principal, "RiskAssessment", Permission.READ_RESULTS, "s")
    patient_id = _patient_parameter(subject or patient)
    note_audit(request.state, AuditNote("search", "RiskAssessment", patients=[patient_id]))
    await scoping.check_patient(principal, patient_id)
    bodies = await run_in_threadpool(assessments.risk_assessments_of, patient_id, count)
    return fhir_response(searchset(fhir_base(request), [parse(b.encode()) for b in bodies]))


@router.get(
    "/CarePlan",
    operation_id="searchCarePlan",
    response_class=FhirJSONResponse,
    responses=_FHIR_RESPONSES,
    summary="A patient's active CarePlan",
)
async def search_care_plan(
    request: Request,
    care_plans: CarePlansDep,
    scoping: ScopingDep,
    principal: ResultReader,
    subject: Annotated[str | None, Query(description="Patient/{id}")] = None,
    patient: Annotated[str | None, Query(description="{id} or Patient/{id}")] = None,
) -> FhirJSONResponse:
    """The patient's one active CarePlan as a searchset Bundle (empty when the patient has none)."""
    _only_parameters(request, {"subject", "patient"}, "CarePlan is searched by subject (or patient)")
    _may_read(principal, "CarePlan", Permission.READ_RESULTS, "s")
    patient_id = _patient_parameter(subject or patient)
    note_audit(request.state, AuditNote("search", "CarePlan", patients=[patient_id]))
    await scoping.check_patient(principal, patient_id)
    body = await run_in_threadpool(care_plans.care_plan_of, patient_id)
    return fhir_response(searchset(fhir_base(request), [parse(body.encode())] if body else []))


_TASK_STATUSES: Final = frozenset(
    {
        "draft",
        "requested",
        "received",
        "accepted",
        "rejected",
        "ready",
        "cancelled",
        "in-progress",
        "on-hold",
        "failed",
        "completed",
        "entered-in-error",
    }
)


@router.get(
    "/Task",
    operation_id="searchTask",
    response_class=FhirJSONResponse,
    responses=_FHIR_RESPONSES,
    summary="The alerts' Tasks of a patient (or one Task by identifier), newest change first",
)
async def search_task(
    request: Request,
    tasks: TasksDep,
    scoping: ScopingDep,
    principal: ResultReader,
    subject: Annotated[str | None, Query(description="Patient/{id}")] = None,
    patient: Annotated[str | None, Query(description="{id} or Patient/{id}")] = None,
    status: Annotated[str | None, Query(description="Task status(es), comma-separated")] = None,
    identifier: Annotated[str | None, Query(description="https://refracture.dev/fhir/sid/task|{value}")] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=1000)] = 100,
) -> FhirJSONResponse:
    """Tasks as a searchset Bundle: by patient (subject or patient), optionally by status, or by identifier."""
    _only_parameters(
        request,
        {"subject", "patient", "status", "identifier", "_count"},
        "Task is searched by subject (or patient), status and identifier",
    )
    _may_read(principal, "Task", Permission.READ_RESULTS, "s")
    patient_id = _patient_parameter(subject or patient) if (subject or patient or not identifier) else None
    statuses = [part.strip() for part in status.split(",") if part.strip()] if status else None
    if statuses and not set(statuses) <= _TASK_STATUSES:
        raise refuse(Problem.INVALID, "value", "status must be FHIR R4 Task statuses, comma-separated")
    task_id = None
    if identifier:
        system, bar, value = identifier.rpartition("|")
        if bar and system not in ("", TASK_SYSTEM):
            return fhir_response(searchset(fhir_base(request), []))  # only refracture's own identifiers are known
        task_id = value
    note_audit(request.state, AuditNote("search", "Task", patients=[patient_id] if patient_id else []))
    if patient_id is not None:
        await scoping.check_patient(principal, patient_id)
    bodies = await run_in_threadpool(tasks.search_tasks, patient_id, statuses, task_id, count)
    found = [parse(b.encode()) for b in bodies]
    if patient_id is None:
        for patient_ref in {str(t.get("for", {}).get("reference", "")) for t in found}:
            await scoping.check_patient(principal, patient_ref.removeprefix("Patient/"))
    return fhir_response(searchset(fhir_base(request), found))


@router.get(
    "/CodeSystem",
    operation_id="searchCodeSystem",
    response_class=FhirJSONResponse,
    summary="Search the served CodeSystems by url",
    dependencies=[Depends(require(Permission.AUTHENTICATED))],
)
def search_code_system(request: Request, url: str | None = None) -> FhirJSONResponse:
    """refracture's own CodeSystems as a searchset Bundle."""
    found = [cs for cs in CODE_SYSTEMS.values() if url is None or cs["url"] == url]
    return fhir_response(searchset(fhir_base(request), found))


@router.get(
    "/{resource_type}/{resource_id}",
    operation_id="read",
    response_class=FhirJSONResponse,
    responses=_FHIR_RESPONSES,
    summary="Read the current version",
)
async def read(
    request: Request,
    assessments: AssessmentsDep,
    care_plans: CarePlansDep,
    tasks: TasksDep,
    resources: ResourcesDep,
    scoping: ScopingDep,
    principal: CallerDep,
    resource_type: Annotated[str, _TYPE],
    resource_id: Annotated[str, _ID],
) -> FhirJSONResponse:
    """A stored input resource (as received, with meta.versionId/lastUpdated), a RiskAssessment or a CodeSystem."""
    note = AuditNote("read", resource_type, resource_id)
    note_audit(request.state, note)
    if resource_type == "CodeSystem":
        found = code_system(resource_id)
        if found is None:
            raise refuse(Problem.NOT_FOUND, "not-found", f"CodeSystem/{resource_id} is not known")
        return fhir_response(found)
    if resource_type in ("RiskAssessment", "CarePlan", "Task"):
        _may_read(principal, resource_type, Permission.READ_RESULTS)
        reader = {
            "RiskAssessment": assessments.read_risk_assessment,
            "CarePlan": care_plans.read_care_plan,
            "Task": tasks.read_task,
        }[resource_type]
        produced = await run_in_threadpool(reader, resource_id)
        if produced is None:
            # The id is not echoed (a patient's id can be an MRN): error bodies get copied into other systems' logs.
            raise refuse(Problem.NOT_FOUND, "not-found", f"no {resource_type} of this id is known")
        note.patients = _patients_of(produced.body)
        for patient_id in note.patients:
            await scoping.check_patient(principal, patient_id)
        return fhir_response(produced.body, 200, {"ETag": f'W/"{produced.version_id}"'})
    if resource_type not in READ_ONLY_TYPES:
        check_input_type(resource_type)
    _may_read(principal, resource_type, Permission.READ_CLINICAL_DATA)
    stored = await run_in_threadpool(resources.read_text, (resource_type, resource_id))
    if stored is None:
        raise refuse(Problem.NOT_FOUND, "not-found", f"no {resource_type} of this id is known")
    note.patients = _patients_of(stored.body)
    for patient_id in note.patients:
        await scoping.check_patient(principal, patient_id)
    return fhir_response(stored.body, 200, {"ETag": f'W/"{stored.version_id}"'})


_INTERACTIONS: Final = {"c": "creating", "u": "updating", "r": "reading", "s": "searching"}


def _may_write(principal: Principal, resource_type: str, interaction: str) -> None:
    if not principal.may_write(resource_type, interaction):
        what = _INTERACTIONS[interaction]
        raise forbidden(f"your scopes do not allow {what} {resource_type}{_constrained(principal)}")


def _may_read(principal: Principal, resource_type: str, permission: Permission, interaction: str = "r") -> None:
    if not principal.may_read(resource_type, permission, interaction):
        raise forbidden(
            f"your role or scopes do not allow {_INTERACTIONS[interaction]} {resource_type}{_constrained(principal)}"
        )


def _constrained(principal: Principal) -> str:
    # SMART v2 scope constraints are refused, not evaluated: say so rather than leave the caller guessing.
    if principal.constrained_scopes:
        return " (scopes with constraints, such as ?category=, are not supported: ask for the scope without one)"
    return ""


def _patients_of(body: str) -> list[str]:
    resource = parse(body.encode())
    found = patient_of(resource)
    holder = resource.get("subject") or resource.get("for")  # RiskAssessment, CarePlan; Task
    if found is None and isinstance(holder, dict):
        target = split_reference(holder.get("reference"))
        found = target[1] if target and target[0] == "Patient" else None
    return [found] if found else []


def _only_parameters(request: Request, allowed: set[str], hint: str) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise refuse(Problem.INVALID, "not-supported", f"unsupported search parameter(s): {', '.join(unknown)}; {hint}")


def _patient_parameter(value: str | None) -> str:
    if not value:
        raise refuse(Problem.INVALID, "required", "search by subject=Patient/{id} (or patient={id})")
    patient_id = value.removeprefix("Patient/")
    if not _ID_PATTERN.fullmatch(patient_id):
        raise refuse(Problem.INVALID, "value", "the patient must be Patient/{id} with a FHIR id")
    return patient_id


def _written(answer: Answer, prefer: str | None) -> FhirJSONResponse:
    minimal = bool(prefer and "return=minimal" in prefer)
    return fhir_response(None if minimal else answer.body, answer.status, answer.headers)
