"""Ingest: store FHIR resources, draw their facts and record the changed patients, in one transaction."""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, ParamSpec, TypeVar

from service.domain.audit_record import AuditRecord
from service.fhir.bundle import EntryPlan, PlannedBundle
from service.fhir.demographics import demographics_of
from service.fhir.jsonio import content_hash
from service.fhir.normalise import Normalised, Normaliser
from service.fhir.patient_rules import moved_patient_issues, other_patient_issues
from service.fhir.references import patient_of
from service.platform.errors import ConcurrentWrite, Issue, Problem, RefractureError, refuse
from service.usecases.ports.clock import Clock
from service.usecases.ports.ingest import (
    IngestSession,
    ResourceWrite,
    SourcedFact,
    Store,
    StoredVersion,
    UnrecognisedCount,
)
from service.usecases.ports.resources import ResourceKey, StoredText

__all__ = ["AuditOf", "EntryOutcome", "IngestResult", "Ingestor", "Skipped", "WriteRequest"]

log = logging.getLogger(__name__)

# Statuses that mean "this record was a mistake": kept, marked, and no facts drawn from it.
_ERROR_STATUS: Final = "entered-in-error"
_ATTEMPTS: Final = 3

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One resource to create or update."""

    resource_type: str
    resource_id: str
    resource: dict[str, Any]
    if_match: str | None = None  # a weak ETag W/"n" or a bare version
    path: str | None = None  # the resource's FHIRPath in the request (Bundle.entry[n].resource); its type if None


@dataclass(frozen=True, slots=True)
class EntryOutcome:
    """What happened to one resource: created, updated, unchanged, or read."""

    resource_type: str
    resource_id: str
    version_id: int
    last_updated: datetime
    created: bool = False
    changed: bool = False
    body: dict[str, Any] | None = None  # the stored resource, for written entries
    text: StoredText | None = None  # the stored resource as text, for reads


@dataclass(frozen=True, slots=True)
class Skipped:
    """A Bundle entry of a type refracture does not use: acknowledged, not stored."""

    plan: EntryPlan


@dataclass(slots=True)
class IngestResult:
    """The outcome of each entry (or its error, in a batch) and the patients whose records changed."""

    outcomes: list[EntryOutcome | Skipped | RefractureError]
    changed_patients: list[str] = field(default_factory=list)


# The audit rows of a request, given what the write did (they ride in the write's transaction).
AuditOf = Callable[["IngestResult"], Sequence[AuditRecord]]


def _retrying(method: Callable[P, R]) -> Callable[P, R]:
    """Run a unit of work again when a concurrent transaction wrote the same rows first."""

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return method(*args, **kwargs)
            except ConcurrentWrite:
                if attempt == _ATTEMPTS:
                    break
                log.info("concurrent write; running the unit of work again (attempt %d)", attempt + 1)
        raise refuse(Problem.CONFLICT, "conflict", "the same resources were being written concurrently; try again")

    return run


class Ingestor:
    """Stores resources as received, with versions, facts and the outbox row, all or nothing."""

    def __init__(self, store: Store, normaliser: Normaliser, clock: Clock, mrn_system: str | None = None) -> None:
        self._store = store
        self._normaliser = normaliser
        self._clock = clock
        self._mrn_system = mrn_system

    @_retrying
    def write(self, request: WriteRequest, claim: bool = False, audit: AuditOf | None = None) -> IngestResult:
        """Create or update one resource (PUT, or POST with the EHR's id).

        Args:
            claim: the caller rings the changed patients' doorbell itself after the commit (Relay.publish_claimed),
                so their outbox rows are marked rung in this transaction instead of a second one.
            audit: the audit rows of the request, given its result: written in this transaction, so the write and
                its audit row commit together (one commit per request, not two).

        Raises:
            RefractureError: PRECONDITION_FAILED when If-Match does not name the stored version.
        """
        with self._store.session(pipelined=True) as session:
            changed: set[str] = set()
            outcomes = self._write_all(session, [request], changed, claim=claim)
            result = IngestResult(list(outcomes), sorted(changed))
            if audit is not None:
                session.append_audit(audit(result))
            return result

    def write_group(self, group: Sequence[tuple[WriteRequest, AuditOf | None]]) -> list[IngestResult]:
        """Write single-resource requests of different callers in one transaction (a group commit), each as ``write``
        with ``claim=True`` would, with their audit rows: one commit and one round-trip set for the group.

        All or nothing: any refusal or conflict fails the whole group, and the caller writes its requests one by one
        (``write``) so that each gets its own answer. The requests must name distinct resources and none may be a
        Medication (its dependents' facts change other patients, which a request's own result would not name).

        Returns:
            Each request's result, in order; a result's changed patients are those of its own resource.
        """
        requests = [request for request, _ in group]
        keys = [(r.resource_type, r.resource_id) for r in requests]
        with self._store.session(pipelined=True) as session:
            current = session.current_versions(keys)
            changed: set[str] = set()
            outcomes = self._write_all(session, requests, changed, current, claim=True)
            results: list[IngestResult] = []
            audit_rows: list[AuditRecord] = []
            for (request, audit), key, outcome in zip(group, keys, outcomes, strict=True):
                stored = current.get(key)
                own = {patient_of(request.resource), stored.patient_id if stored else None}
                result = IngestResult([outcome], sorted(p for p in own if p is not None and p in changed))
                results.append(result)
                if audit is not None:
                    audit_rows += audit(result)
            if audit_rows:
                session.append_audit(audit_rows)
            return results

    @_retrying
    def transaction(self, planned: PlannedBundle, claim: bool = False, audit: AuditOf | None = None) -> IngestResult:
        """Apply a checked transaction Bundle: every entry or none (``claim`` and ``audit`` as for ``write``)."""
        writes = [_write_request(p) for p in planned.entries if p.method in ("POST", "PUT") and not p.skipped]
        with self._store.session() as session:
            changed: set[str] = set()
            written = iter(self._write_all(session, writes, changed, claim=claim))
            outcomes: list[EntryOutcome | Skipped | RefractureError] = []
            for plan in planned.entries:
                outcome: EntryOutcome | Skipped | RefractureError
                if plan.skipped:
                    outcome = Skipped(plan)
                elif plan.method == "GET":
                    outcome = _read(session, plan)
                else:
                    outcome = next(written)
                if isinstance(outcome, RefractureError):
                    raise outcome  # one failed entry fails the whole transaction
                outcomes.append(outcome)
            result = IngestResult(outcomes, sorted(changed))
            if audit is not None:
                session.append_audit(audit(result))
            return result

    @_retrying
    def batch(self, planned: PlannedBundle, claim: bool = False, audit: AuditOf | None = None) -> IngestResult:
        """Apply a checked batch Bundle: each entry on its own, in one transaction with a savepoint each (``claim``
        and ``audit`` as for ``write``)."""
        outcomes: list[EntryOutcome | Skipped | RefractureError] = []
        changed: set[str] = set()
        with self._store.session() as session:
            for plan in planned.entries:
                if plan.error is not None:
                    outcomes.append(plan.error)
                    continue
                if plan.skipped:
                    outcomes.append(Skipped(plan))
                    continue
                if plan.method == "GET":
                    outcomes.append(_read(session, plan))
                    continue
                entry_changed: set[str] = set()
                try:
                    with session.savepoint():
                        outcomes.append(self._write_all(session, [_write_request(plan)], entry_changed, claim=claim)[0])
                    changed |= entry_changed
                except RefractureError as exc:
                    outcomes.append(exc)
            result = IngestResult(outcomes, sorted(changed))
            if audit is not None:
                session.append_audit(audit(result))
        return result

    def write_many(
        self, session: IngestSession, requests: Sequence[WriteRequest]
    ) -> tuple[list[EntryOutcome | RefractureError], set[str]]:
        """Write resources inside the caller's transaction (bulk import, which commits its checkpoint with them).

        Unlike a transaction Bundle, a resource that breaks a patient rule is refused on its own and the others are
        written. The requests must name distinct resources and carry no If-Match.

        Returns:
            Each request's outcome (or its refusal), and the patients whose records changed.
        """
        keys = [(r.resource_type, r.resource_id) for r in requests]
        current = session.current_versions(keys)
        outcomes: list[EntryOutcome | RefractureError | None] = []
        accepted: list[WriteRequest] = []
        for request, key in zip(requests, keys, strict=True):
            issues = _patient_issues(request, current.get(key))
            outcomes.append(RefractureError(Problem.UNPROCESSABLE, issues) if issues else None)
            if not issues:
                accepted.append(request)
        changed: set[str] = set()
        written = iter(self._write_all(session, accepted, changed, current))
        return [outcome if outcome is not None else next(written) for outcome in outcomes], changed

    # ------------------------------------------------------------------------------------------------
    def _write_all(
        self,
        session: IngestSession,
        requests: Sequence[WriteRequest],
        changed: set[str],
        current: dict[ResourceKey, StoredVersion] | None = None,
        *,
        claim: bool = False,
    ) -> list[EntryOutcome]:
        now = self._clock()
        keys = [(r.resource_type, r.resource_id) for r in requests]
        if current is None:
            current = session.current_versions(keys)
        _check_patients(requests, keys, current)
        inserts: list[ResourceWrite] = []
        updates: list[ResourceWrite] = []
        outcomes: list[EntryOutcome] = []
        for request, key in zip(requests, keys, strict=True):
            stored = current.get(key)
            _check_if_match(request, stored.version_id if stored else None)
            digest = content_hash(request.resource)
            if stored is not None and stored.content_hash == digest:
                outcomes.append(EntryOutcome(key[0], key[1], stored.version_id, stored.last_updated))
                continue
            version = stored.version_id + 1 if stored else 1
            body = _with_server_meta(request.resource, key[1], version, now)
            write = ResourceWrite(
                key[0],
                key[1],
                version,
                now,
                digest,
                patient_of(body),
                _status(body),
                _status(body) == _ERROR_STATUS or _verification(body) == _ERROR_STATUS,
                None,
                body,
            )
            (updates if stored else inserts).append(write)
            if stored is not None and stored.patient_id:
                changed.add(stored.patient_id)
            outcomes.append(EntryOutcome(key[0], key[1], version, now, created=stored is None, changed=True, body=body))
        written = inserts + updates
        if not written:
            return outcomes
        normalised = self._normalise(session, written)
        session.write_resources(
            [_with_ref(w, normalised[(w.resource_type, w.id)]) for w in inserts],
            [_with_ref(w, normalised[(w.resource_type, w.id)]) for w in updates],
        )
        self._store_facts(session, written, normalised, now, changed)
        patients = [w for w in written if w.resource_type == "Patient" and not w.entered_in_error]
        if patients:
            session.upsert_demographics([demographics_of(w.body, self._mrn_system) for w in patients], now)
        medications = [w for w in written if w.resource_type == "Medication"]
        if medications:
            self._renormalise_dependents(session, medications, {(w.resource_type, w.id) for w in written}, now, changed)
        session.mark_patients_changed(sorted(changed), now, claimed=claim)
        return outcomes

    def _normalise(self, session: IngestSession, written: Sequence[ResourceWrite]) -> dict[ResourceKey, Normalised]:
        in_flight = {f"Medication/{w.id}": w.body for w in written if w.resource_type == "Medication"}

        def resolve(ref: str) -> dict[str, Any] | None:
            return in_flight.get(ref) or session.medication(ref)

        return {(w.resource_type, w.id): self._normaliser.normalise(w.body, resolve) for w in written}

    def _store_facts(
        self,
        session: IngestSession,
        written: Sequence[ResourceWrite],
        normalised: dict[ResourceKey, Normalised],
        now: datetime,
        changed: set[str],
    ) -> None:
        facts: list[SourcedFact] = []
        unrecognised: Counter[tuple[str, str, str]] = Counter()
        displays: dict[tuple[str, str, str], str | None] = {}
        for write in written:
            result = normalised[(write.resource_type, write.id)]
            if result.patient_id:
                changed.add(result.patient_id)
                facts.extend(
                    SourcedFact(result.patient_id, f, write.resource_type, write.id, write.version_id)
                    for f in result.facts
                )
            for code in result.unrecognised:
                key = (code.resource_type, code.system, code.code)
                unrecognised[key] += 1
                displays.setdefault(key, code.display)
        # A resource stored for the first time has no facts yet: only new versions have old facts to drop.
        replaced = [(w.resource_type, w.id) for w in written if w.version_id > 1]
        changed |= session.replace_facts(replaced, facts, now)
        if unrecognised:
            session.count_unrecognised(
                [UnrecognisedCount(*key, displays[key], count) for key, count in sorted(unrecognised.items())],
                now,
            )

    def _renormalise_dependents(
        self,
        session: IngestSession,
        medications: Sequence[ResourceWrite],
        already: set[ResourceKey],
        now: datetime,
        changed: set[str],
    ) -> None:
        for medication in medications:
            ref = f"Medication/{medication.id}"
            body = medication.body

            def resolve(wanted: str, ref: str = ref, body: dict[str, Any] = body) -> dict[str, Any] | None:
                return body if wanted == ref else None

            dependents = [
                d for d in session.dependents_of_medication(ref) if (d["resourceType"], d["id"]) not in already
            ]
            if not dependents:
                continue
            facts: list[SourcedFact] = []
            for resource in dependents:
                result = self._normaliser.normalise(resource, resolve)
                version = int(resource.get("meta", {}).get("versionId", 1))
                if result.patient_id:
                    changed.add(result.patient_id)
                    facts.extend(
                        SourcedFact(result.patient_id, f, resource["resourceType"], resource["id"], version)
                        for f in result.facts
                    )
            changed |= session.replace_facts([(d["resourceType"], d["id"]) for d in dependents], facts, now)


def _write_request(plan: EntryPlan) -> WriteRequest:
    assert plan.resource is not None
    assert plan.resource_id is not None
    return WriteRequest(
        plan.resource_type, plan.resource_id, plan.resource, plan.if_match, f"Bundle.entry[{plan.index}].resource"
    )


def _check_patients(
    requests: Sequence[WriteRequest], keys: Sequence[ResourceKey], current: dict[ResourceKey, StoredVersion]
) -> None:
    """One resource, one patient (patient_rules.py), checked for every request before anything is written, so a
    transaction lists all its offending entries at once."""
    issues: list[Issue] = []
    for request, key in zip(requests, keys, strict=True):
        issues += _patient_issues(request, current.get(key))
    if issues:
        raise RefractureError(Problem.UNPROCESSABLE, issues)


def _patient_issues(request: WriteRequest, stored: StoredVersion | None) -> list[Issue]:
    resource = {**request.resource, "id": request.resource_id}  # an id-less POST's Patient is its new id
    path = request.path or request.resource_type
    return other_patient_issues(resource, path) + moved_patient_issues(
        stored.patient_id if stored else None, resource, path
    )


def _read(session: IngestSession, plan: EntryPlan) -> EntryOutcome | RefractureError:
    assert plan.resource_id is not None
    stored = session.read_text((plan.resource_type, plan.resource_id))
    if stored is None:
        return refuse(
            Problem.NOT_FOUND,
            "not-found",
            f"{plan.resource_type}/{plan.resource_id} is not known",
            f"Bundle.entry[{plan.index}].request.url",
        )
    return EntryOutcome(plan.resource_type, plan.resource_id, stored.version_id, stored.last_updated, text=stored)


def _check_if_match(request: WriteRequest, stored_version: int | None) -> None:
    if request.if_match is None:
        return
    wanted = request.if_match.strip().removeprefix("W/").strip('"')
    if stored_version is None or wanted != str(stored_version):
        raise RefractureError(
            Problem.PRECONDITION_FAILED,
            [
                Issue(
                    "conflict",
                    f"If-Match {request.if_match} does not match the stored version "
                    f"{stored_version if stored_version is not None else '(none)'}",
                )
            ],
        )


def _with_server_meta(resource: dict[str, Any], resource_id: str, version: int, now: datetime) -> dict[str, Any]:
    meta = resource.get("meta")
    new_meta = {
        **(meta if isinstance(meta, dict) else {}),
        "versionId": str(version),
        "lastUpdated": now.isoformat(timespec="milliseconds"),
    }
    return {**resource, "id": resource_id, "meta": new_meta}


def _with_ref(write: ResourceWrite, normalised: Normalised) -> ResourceWrite:
    return write if normalised.medication_ref is None else replace(write, medication_ref=normalised.medication_ref)


def _status(resource: dict[str, Any]) -> str | None:
    status = resource.get("status")
    return status if isinstance(status, str) else None


def _verification(resource: dict[str, Any]) -> str | None:
    concept = resource.get("verificationStatus")
    codings = concept.get("coding") if isinstance(concept, dict) else None
    for coding in codings or []:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            return str(coding["code"])
    return None
