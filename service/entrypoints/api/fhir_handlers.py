"""The work behind the FHIR routes: parse, check, ingest, shape the answer (in a worker thread, or for a single
resource on the event loop with the group-commit writer)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from fastapi import Depends
from starlette.concurrency import run_in_threadpool

from service.composition.api import ApiServices
from service.domain.audit_record import AuditRecord
from service.entrypoints.api.auth import forbidden
from service.entrypoints.api.deps import services_of
from service.fhir.bundle import EntryPlan, PlannedBundle, RefusedTransaction, plan_bundle, skip_notice, skip_summary
from service.fhir.intake import Ids, admit
from service.fhir.jsonio import parse
from service.fhir.outcome import entry_response, error_entry, http_date, response_bundle, skipped_entry
from service.fhir.references import patient_of
from service.fhir.resource_types import INPUT_TYPES
from service.platform.errors import Problem, RefractureError, refuse
from service.security.principal import Principal
from service.usecases.group_commit import GroupCommit
from service.usecases.ingest import AuditOf, EntryOutcome, Ingestor, IngestResult, Skipped, WriteRequest
from service.usecases.intake import IntakeCounter
from service.usecases.ports.ingest import Store

__all__ = ["Answer", "FhirWrites", "FhirWritesDep", "RequestAudit", "check_input_type", "writes_of"]

log = logging.getLogger(__name__)

# A body this small is parsed and checked on the event loop (~0.1 ms for an Observation); a larger one in a thread,
# so one big resource cannot stall the other requests.
_CHECK_ON_LOOP_BYTES: Final = 32 * 1024


@dataclass(slots=True)
class Answer:
    """A handled request: status, body (a dict), headers, and the patients whose records changed."""

    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)
    changed_patients: list[str] = field(default_factory=list)
    # For the audit: what was done, to which resource and which patients' records.
    action: str = "create"
    resource_id: str | None = None
    patients: list[str] = field(default_factory=list)
    detail: str | None = None
    audited: bool = False  # the audit rows were written in the ingest's transaction
    rung: bool = False  # the group-commit writer rang the changed patients' doorbell before answering


# The audit rows of an answered request, given its status: written in the ingest's transaction (AuditMiddleware
# writes them itself only for requests that fail before or during the write).
RequestAudit = Callable[[int, str, list[str], str | None, str | None], Sequence[AuditRecord]]


@dataclass(slots=True, frozen=True)
class FhirWrites:
    """The FHIR API's writes: a Bundle, or one resource, through the one Ingestor, counted by the IntakeCounter."""

    ingestor: Ingestor
    resources: Store  # a write's stored body when the ingest did not return it
    counter: IntakeCounter
    max_bundle_entries: int
    skip_unused: bool  # Bundle entries of types refracture does not use: skipped (else refused)
    group: GroupCommit | None = None  # single-resource writes go through it when there is one

    def bundle(
        self,
        raw: bytes,
        representation: bool,
        principal: Principal,
        audit: RequestAudit | None = None,
    ) -> Answer:
        """POST /fhir: a transaction or batch Bundle."""
        return _handle_bundle(self, raw, representation, principal, audit)

    def write(
        self,
        raw: bytes,
        resource_type: str,
        resource_id: str | None,
        if_match: str | None,
        base_url: str,
        audit: RequestAudit | None = None,
    ) -> Answer:
        """POST /fhir/{type} (resource_id None) or PUT /fhir/{type}/{id}; ``audit`` gives the request's audit rows,
        written in the write's transaction."""
        try:
            return _write(self, raw, resource_type, resource_id, if_match, base_url, audit)
        except RefractureError as exc:
            self.counter.refused([resource_type], exc)
            raise

    async def write_async(
        self,
        raw: bytes,
        resource_type: str,
        resource_id: str | None,
        if_match: str | None,
        base_url: str,
        audit: RequestAudit | None = None,
    ) -> Answer:
        """``write`` from the event loop: a small body is checked on the loop and written by the group-commit
        writer, so a PUT takes no worker thread (without a group writer, ``write`` runs in one)."""
        if self.group is None:
            return await run_in_threadpool(self.write, raw, resource_type, resource_id, if_match, base_url, audit)
        try:
            if len(raw) <= _CHECK_ON_LOOP_BYTES:
                prepared = _prepare(raw, resource_type, resource_id, if_match, audit)
            else:
                prepared = await run_in_threadpool(_prepare, raw, resource_type, resource_id, if_match, audit)
            result = await asyncio.wrap_future(self.group.submit(prepared.request, prepared.records))
        except RefractureError as exc:
            self.counter.refused([resource_type], exc)
            raise
        outcome = result.outcomes[0]
        if isinstance(outcome, EntryOutcome) and outcome.body is None:  # unchanged: the stored body is read back
            answer = await run_in_threadpool(_answer, self, prepared, result, base_url)
        else:
            answer = _answer(self, prepared, result, base_url)
        answer.rung = True
        return answer


def writes_of(services: ApiServices) -> FhirWrites:
    """The FHIR writes over the API's services."""
    settings = services.settings
    return FhirWrites(
        services.ingestor,
        services.resources,
        IntakeCounter(services.metrics),
        settings.max_bundle_entries,
        settings.unknown_resource_types == "skip",
        services.write_group,
    )


async def _fhir_writes(services: Annotated[ApiServices, Depends(services_of)]) -> FhirWrites:
    return writes_of(services)


FhirWritesDep = Annotated[FhirWrites, Depends(_fhir_writes)]


def _handle_bundle(
    writes: FhirWrites,
    raw: bytes,
    representation: bool,
    principal: Principal,
    audit: RequestAudit | None = None,
) -> Answer:
    planned: PlannedBundle | None = None
    try:
        planned = plan_bundle(parse(raw), writes.max_bundle_entries, writes.skip_unused)
        _check_scopes(planned, principal)
        ingestor = writes.ingestor
        bundle_type = planned.bundle_type
        detail = f"{len(planned.entries)} entries"

        def records(done: IngestResult) -> Sequence[AuditRecord]:
            return audit(200, bundle_type, _bundle_patients(planned, done), None, detail) if audit else []

        write = ingestor.transaction if bundle_type == "transaction" else ingestor.batch
        result = write(planned, claim=True, audit=records if audit else None)
    except RefractureError as exc:
        # Every entry of a refused transaction (or of a Bundle refused whole) was refused; unread Bundles count once.
        # Skipped entries were never going to be stored: not refused.
        if planned is not None:
            refused = [e.resource_type for e in planned.entries if e.method != "GET" and not e.skipped]
        elif isinstance(exc, RefusedTransaction):
            refused = exc.written_types
        else:
            refused = ["Bundle"]
        writes.counter.refused(refused, exc)
        raise
    _count_entries(writes.counter, planned.entries, result.outcomes)
    skipped = planned.skipped_types()
    if skipped:
        # Types and counts only: no patient data.
        log.info(
            "%s: %d entries of types refracture does not use skipped (%s)",
            planned.bundle_type,
            sum(skipped.values()),
            ", ".join(f"{t} {n}" for t, n in sorted(skipped.items())),
        )
    summary = [skip_summary(skipped)] if skipped else []
    entries = []
    for outcome in result.outcomes:
        if isinstance(outcome, Skipped):
            # The count by type goes with the first skipped entry: an R4 transaction-response has one entry per
            # request entry and no Bundle-level outcome (docs/integration-guide.md, "Bundles").
            entries.append(skipped_entry([skip_notice(outcome.plan), *summary]))
            summary = []
        else:
            entries.append(_entry(outcome, representation))
    return Answer(
        200,
        response_bundle(planned.bundle_type, entries),
        changed_patients=result.changed_patients,
        action=planned.bundle_type,
        patients=_bundle_patients(planned, result),
        detail=detail,
        audited=audit is not None,
    )


def _bundle_patients(planned: PlannedBundle, result: IngestResult) -> list[str]:
    """Writes: the patient each written resource names. Reads (GET entries): the patient of the stored resource sent,
    never a resource the entry carried (GET entries with a body are refused: service/fhir/bundle.py)."""
    written = {
        p for e in planned.entries if e.method != "GET" and e.resource is not None and (p := patient_of(e.resource))
    }
    read = {
        p
        for o in result.outcomes
        if isinstance(o, EntryOutcome) and o.text is not None and (p := patient_of(parse(o.text.body.encode())))
    }
    return sorted(written | read)


def _check_scopes(planned: PlannedBundle, principal: Principal) -> None:
    """Every entry's type must be within the caller's scopes: the whole Bundle is refused otherwise (a transaction
    cannot be half-authorised, and a batch refused up front writes nothing the caller could not see)."""
    refused = sorted(
        {
            entry.resource_type
            for entry in planned.entries
            if entry.error is None
            and not entry.skipped  # nothing of it is written or read
            and not (
                principal.may_read(entry.resource_type)
                if entry.method == "GET"
                else principal.may_write(entry.resource_type, "c" if entry.method == "POST" else "u")
            )
        }
    )
    # Reads inside a Bundle are not filtered by patient: a caller limited to some patients may not make them.
    if (principal.patient_bound or principal.sites is not None) and any(e.method == "GET" for e in planned.entries):
        raise forbidden("reads inside a Bundle are not available to a token limited to some patients or sites")
    if refused:
        raise forbidden(f"your scopes do not allow this Bundle's {', '.join(refused)} entries")


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A single-resource write checked and ready for the ingest, and what its answer needs."""

    request: WriteRequest
    action: str
    patients: list[str]
    records: AuditOf | None


def _prepare(
    raw: bytes, resource_type: str, resource_id: str | None, if_match: str | None, audit: RequestAudit | None
) -> _Prepared:
    resource = parse(raw)
    body_type = resource.get("resourceType") if isinstance(resource, dict) else None
    if isinstance(body_type, str) and body_type and body_type != resource_type:
        raise refuse(
            Problem.INVALID,
            "invalid",
            f"the body is a {body_type}, but the URL names {resource_type}",
            f"{body_type}.resourceType",
        )
    admitted = admit(resource, Ids.OWN_OR_NEW if resource_id is None else Ids.URL, url_id=resource_id)
    target_id = admitted.resource_id
    found = patient_of(resource)
    patients = [found] if found else []
    action = "create" if resource_id is None else "update"

    def records(result: IngestResult) -> Sequence[AuditRecord]:
        written = result.outcomes[0]
        status = 201 if isinstance(written, EntryOutcome) and written.created else 200
        return audit(status, action, patients, target_id, None) if audit else []

    request = WriteRequest(resource_type, target_id, resource, if_match)
    return _Prepared(request, action, patients, records if audit else None)


def _answer(writes: FhirWrites, prepared: _Prepared, result: IngestResult, base_url: str) -> Answer:
    outcome = result.outcomes[0]
    assert isinstance(outcome, EntryOutcome)
    writes.counter.stored(prepared.request.resource_type, outcome)
    headers = _version_headers(outcome, base_url)
    return Answer(
        201 if outcome.created else 200,
        outcome.body or _stored_body(writes.resources, outcome),
        headers,
        result.changed_patients,
        action=prepared.action,
        resource_id=prepared.request.resource_id,
        patients=prepared.patients,
        audited=prepared.records is not None,
    )


def _write(
    writes: FhirWrites,
    raw: bytes,
    resource_type: str,
    resource_id: str | None,
    if_match: str | None,
    base_url: str,
    audit: RequestAudit | None,
) -> Answer:
    prepared = _prepare(raw, resource_type, resource_id, if_match, audit)
    result = writes.ingestor.write(prepared.request, claim=True, audit=prepared.records)
    return _answer(writes, prepared, result, base_url)


def _count_entries(
    counter: IntakeCounter, plans: Sequence[EntryPlan], outcomes: Sequence[EntryOutcome | Skipped | RefractureError]
) -> None:
    for plan, outcome in zip(plans, outcomes, strict=False):
        if plan.method != "GET":  # a read inside a Bundle ingests nothing
            counter.outcomes(plan.resource_type, outcome)


def check_input_type(resource_type: str) -> None:
    """Refuse a type refracture does not take in (R4 http.html: 404 for an unsupported type)."""
    if resource_type not in INPUT_TYPES:
        raise refuse(
            Problem.NOT_FOUND,
            "not-supported",
            f"refracture does not take {resource_type} resources; it takes {', '.join(sorted(INPUT_TYPES))}",
        )


def _version_headers(outcome: EntryOutcome, base_url: str) -> dict[str, str]:
    return {
        "Location": f"{base_url}/{outcome.resource_type}/{outcome.resource_id}/_history/{outcome.version_id}",
        "ETag": f'W/"{outcome.version_id}"',
        "Last-Modified": http_date(outcome.last_updated),
    }


def _stored_body(resources: Store, outcome: EntryOutcome) -> dict[str, Any] | None:
    stored = resources.read_text((outcome.resource_type, outcome.resource_id))
    return parse(stored.body.encode()) if stored else None


def _entry(outcome: EntryOutcome | RefractureError, representation: bool) -> dict[str, Any]:
    if isinstance(outcome, RefractureError):
        return error_entry(outcome)
    if outcome.text is not None:
        return entry_response(
            200,
            outcome.resource_type,
            outcome.resource_id,
            outcome.version_id,
            outcome.last_updated,
            parse(outcome.text.body.encode()),
        )
    status = 201 if outcome.created else 200
    return entry_response(
        status,
        outcome.resource_type,
        outcome.resource_id,
        outcome.version_id,
        outcome.last_updated,
        outcome.body if representation else None,
    )
