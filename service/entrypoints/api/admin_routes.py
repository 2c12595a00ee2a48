"""Administration: codes refracture received but did not recognise, and the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.entrypoints.api.auth import CallerDep, forbidden, require
from service.entrypoints.api.deps import AuditDep, ResourcesDep, fhir_base
from service.entrypoints.api.middleware import AuditNote, note_audit
from service.entrypoints.api.responses import FhirJSONResponse, fhir_response
from service.entrypoints.api.scoping import ScopingDep
from service.fhir.audit_event import audit_event, audit_ndjson_line
from service.fhir.outcome import searchset
from service.security.principal import Permission

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["Administration"], dependencies=[Depends(require(Permission.ADMINISTER))])


class UnrecognisedCode(BaseModel):
    """A code seen in input and not recognised: map it in the local code map if it matters."""

    resource_type: str
    system: str
    code: str
    display: str | None
    occurrences: int
    first_seen: datetime | None
    last_seen: datetime | None


@router.get("/terminology/unrecognised", operation_id="unrecognisedCodes", summary="Codes not recognised")
async def unrecognised_codes(
    resources: ResourcesDep, limit: Annotated[int, Query(ge=1, le=10000)] = 200
) -> list[UnrecognisedCode]:
    """The codes seen most often that refracture did not recognise, most frequent first."""
    rows = await run_in_threadpool(resources.unrecognised_codes, limit)
    return [
        UnrecognisedCode(
            resource_type=r.resource_type,
            system=r.system,
            code=r.code,
            display=r.display,
            occurrences=r.occurrences,
            first_seen=r.first_seen,
            last_seen=r.last_seen,
        )
        for r in rows
    ]


@router.get(
    "/audit",
    operation_id="auditEvents",
    summary="The audit trail as FHIR AuditEvents (BALP-shaped), oldest first",
    response_class=FhirJSONResponse,
)
async def audit_events(
    request: Request,
    audit: AuditDep,
    scoping: ScopingDep,
    principal: CallerDep,
    since: Annotated[datetime | None, Query(description="from this moment (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="before this moment")] = None,
    patient: Annotated[str | None, Query(max_length=64, description="only this Patient id")] = None,
    after: Annotated[int, Query(ge=0, description="the last id of the previous page")] = 0,
    count: Annotated[int, Query(alias="_count", ge=1, le=1000)] = 100,
) -> FhirJSONResponse:
    """A searchset Bundle of AuditEvent; the ``next`` link carries on after the last one."""
    note_audit(request.state, AuditNote("export", "AuditEvent", patients=[patient] if patient else [], detail="audit"))
    # An administrator limited to some sites exports one patient of theirs at a time; the whole trail is not theirs.
    if patient is not None:
        await scoping.check_patient(principal, patient)
    elif not (await scoping.patient_scope(principal)).everyone:
        raise forbidden("your token is limited to some sites or patients: export the trail of one patient (patient=)")
    rows = await run_in_threadpool(audit.read, since, until, patient, after, count)
    bundle = searchset(fhir_base(request), [audit_event(r) for r in rows])
    del bundle["total"]  # a page, not the number of matches
    if len(rows) == count:
        query = {k: v for k, v in request.query_params.items() if k != "after"}
        bundle["link"] = [
            {"relation": "next", "url": f"{request.url.path}?{urlencode({**query, 'after': rows[-1].id})}"}
        ]
    return fhir_response(bundle)


@router.get(
    "/audit/$export",
    operation_id="auditExportNdjson",
    summary="The audit trail as NDJSON AuditEvents from _since on, oldest first (for the hospital's SIEM)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/fhir+ndjson": {}}, "description": "One AuditEvent per line"}},
)
def audit_export(
    request: Request,
    audit: AuditDep,
    since: Annotated[datetime | None, Query(alias="_since", description="from this moment (inclusive)")] = None,
    until: Annotated[datetime | None, Query(alias="_until", description="rows recorded before this moment")] = None,
    after_seq: Annotated[
        int, Query(ge=0, description="only rows after this chain position (the last seq you have)")
    ] = 0,
) -> StreamingResponse:
    """Every audit row from ``_since`` as a FHIR AuditEvent, one per line, each with its hash-chain seq and hash
    (docs/security.md, "Audit trail"); read page by page while it streams."""
    note_audit(request.state, AuditNote("export", "AuditEvent", detail="audit $export"))
    lines = (audit_ndjson_line(row) for row in audit.export(since, until, after_seq))
    return StreamingResponse(lines, media_type="application/fhir+ndjson")
