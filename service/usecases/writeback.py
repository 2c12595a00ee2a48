"""Deliver each patient's newest RiskAssessment and CarePlan to the EHR: exactly once in effect, never lost.

The job is a row in the outbox (queued in the transaction that made the new state); a worker claims it under a
lease, sends in the write mode the EHR's CapabilityStatement allows, and records the EHR's ids and versions.
Temporary failures are retried with backoff and jitter (Retry-After honoured) until the retry window closes;
answers that retrying cannot fix go to the dead letter with the EHR's answer kept; a circuit breaker stops hammering
an EHR that is down.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from service.domain.backoff import RetryPolicy
from service.fhir.task import TASK_SYSTEM
from service.fhir.writeback import (
    PLAN_SYSTEM,
    RA_SYSTEM,
    TaskWrite,
    WriteMode,
    WritePlan,
    build_provenance,
    choose_mode,
    conditional_url,
    etag_version,
    merge_care_plan,
    parse_location,
    prepare_care_plan,
    prepare_risk_assessment,
    prepare_task,
    provenance_allowed,
    task_writes_allowed,
    transaction_bundle,
)
from service.platform.errors import EhrConflict, EhrError, EhrRejected, EhrTemporaryError
from service.usecases.ports.clock import Clock
from service.usecases.ports.ehr import EhrGateway
from service.usecases.ports.metrics import Metrics, NoMetrics
from service.usecases.ports.writeback import ClaimedWriteback, DeliveryRecord, WritebackState, WritebackStore

__all__ = ["CircuitBreaker", "Deliverer", "DeliveryOutcome"]

log = logging.getLogger(__name__)

_NAMESPACE: Final = uuid.UUID("0b6c1e8d-3f2a-4d5b-9c7e-1a2b3c4d5e6f")
_REFUSES_TRANSACTIONS: Final = frozenset({404, 405, 501})  # "no such endpoint / not implemented" on POST [base]
# A Task the EHR completed or cancelled is finished there: refracture never writes it again (the alert follows it).
_CLOSED_AT_EHR: Final = frozenset({"completed", "cancelled"})


class CircuitBreaker:
    """Stops attempts to an EHR after repeated failures; lets one try through after a cool-down."""

    def __init__(self, failures: int, cooldown_s: float) -> None:
        self._threshold = failures
        self._cooldown = timedelta(seconds=cooldown_s)
        self._failures = 0
        self._open_until: datetime | None = None
        self._lock = threading.Lock()

    def allows(self, now: datetime) -> bool:
        """Whether an attempt may be made now."""
        with self._lock:
            return self._open_until is None or now >= self._open_until

    def success(self) -> None:
        """The EHR answered: close the circuit."""
        with self._lock:
            self._failures = 0
            self._open_until = None

    def failure(self, now: datetime) -> None:
        """The EHR did not answer usefully."""
        with self._lock:
            self._failures += 1
            if self._failures >= self._threshold:
                self._open_until = now + self._cooldown

    @property
    def open_until(self) -> datetime | None:
        """When the circuit lets the next try through (None when closed)."""
        return self._open_until


@dataclass(slots=True)
class DeliveryOutcome:
    """What one run did."""

    mode: str = WriteMode.PULL.value
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0


@dataclass(slots=True)
class _Mode:
    mode: WriteMode | None = None  # None: not known yet (the EHR's CapabilityStatement could not be read)
    provenance: bool = False
    checked_at: datetime | None = None
    detail: str = ""
    tasks: bool = False  # the EHR takes Task writes in this mode


@dataclass(slots=True)
class _Sent:
    record: DeliveryRecord
    notes: list[str] = field(default_factory=list)


class Deliverer:
    """Sends the outbox's write-back jobs to the EHR."""

    def __init__(
        self,
        store: WritebackStore,
        ehr: EhrGateway | None,
        clock: Clock,
        *,
        policy: RetryPolicy,
        mode_setting: str,
        breaker: CircuitBreaker,
        lease_s: float,
        batch_size: int,
        capability_refresh_s: float,
        software: str,
        random_source: Callable[[], float] = random.random,
        metrics: Metrics | None = None,
        task_changed_at_ehr: Callable[[dict[str, Any]], object] | None = None,
        write_tasks: bool = True,
    ) -> None:
        """``task_changed_at_ehr`` is told of a Task the EHR completed or cancelled that a write found (the event
        feed finds it too; telling it twice is harmless)."""
        self._task_changed_at_ehr = task_changed_at_ehr
        self._write_tasks = write_tasks
        self._store = store
        self._metrics = metrics or NoMetrics()
        self._ehr = ehr
        self._clock = clock
        self._policy = policy
        self._mode_setting = mode_setting
        self._breaker = breaker
        self._lease = timedelta(seconds=lease_s)
        self._batch_size = batch_size
        self._refresh = timedelta(seconds=capability_refresh_s)
        self._software = software
        self._random = random_source
        self._mode = _Mode()

    # --- the write mode ----------------------------------------------------------------------------------------
    def refresh_mode(self) -> tuple[str, str]:
        """Read the EHR's CapabilityStatement and choose the write mode; keep it for /readyz.

        Returns:
            The mode ("unknown" when the EHR could not be read) and why.
        """
        now = self._clock()
        base = self._ehr.base_url if self._ehr else None
        if self._ehr is None:
            self._mode = _Mode(WriteMode.PULL, False, now, "no EHR configured: results are served, not sent")
        else:
            try:
                capability = self._ehr.metadata()
            except EhrError as exc:
                # Keep what we knew; with nothing known, deliveries wait (they are not lost).
                detail = f"the EHR's CapabilityStatement could not be read: {exc}"
                self._mode = replace(self._mode, checked_at=now, detail=detail)
                self._store.save_ehr_state(base, (self._mode.mode or "unknown"), detail, now)
                return (self._mode.mode or "unknown"), detail
            chosen, reason = choose_mode(capability)
            if self._mode_setting != "auto":
                chosen, reason = WriteMode(self._mode_setting), f"set by configuration (the EHR allows: {reason})"
            tasks = self._write_tasks and task_writes_allowed(capability, chosen)
            if not tasks and chosen is not WriteMode.PULL:
                why = "the EHR takes none" if self._write_tasks else "REFRACTURE_EHR_WRITE_TASKS=false"
                reason += f"; Tasks are served, not sent ({why})"
            self._mode = _Mode(chosen, provenance_allowed(capability), now, reason, tasks)
        assert self._mode.mode is not None
        self._store.save_ehr_state(base, self._mode.mode.value, self._mode.detail, now)
        return self._mode.mode.value, self._mode.detail

    def _current_mode(self, now: datetime) -> WriteMode | None:
        if self._mode.checked_at is None or now - self._mode.checked_at >= self._refresh:
            self.refresh_mode()
        return self._mode.mode

    # --- delivering --------------------------------------------------------------------------------------------
    def deliver_due(self, patient_ids: Sequence[str] | None = None) -> DeliveryOutcome:
        """Deliver the due jobs (of these patients only, when given)."""
        now = self._clock()
        mode = self._current_mode(now)
        outcome = DeliveryOutcome(mode=mode.value if mode else "unknown")
        if mode is None or mode is WriteMode.PULL or not self._breaker.allows(now):
            return outcome
        jobs = self._store.claim_writebacks(now, now + self._lease, self._batch_size, patient_ids)
        for job in jobs:
            if not self._breaker.allows(self._clock()):
                self._store.release_writeback(job.patient_id, self._breaker.open_until or now, self._clock())
                outcome.skipped += 1
                continue
            self._deliver_one(job, mode, outcome)
        return outcome

    def work(self, patient_ids: Sequence[str]) -> None:
        """The step the change processor runs last: send what the assessment and alert steps just queued."""
        outcome = self.deliver_due(patient_ids)
        if outcome.delivered or outcome.retried or outcome.dead:
            log.info(
                "write-back (%s): %d delivered, %d to retry, %d dead",
                outcome.mode,
                outcome.delivered,
                outcome.retried,
                outcome.dead,
            )

    def _deliver_one(self, job: ClaimedWriteback, mode: WriteMode, outcome: DeliveryOutcome) -> None:
        state = self._store.writeback_state(job.patient_id)
        plan = self._plan(job.patient_id, state)
        try:
            if plan.risk_assessment is None and plan.care_plan is None and not plan.tasks:
                sent = _Sent(DeliveryRecord(mode.value))  # already there: nothing to send
            else:
                sent = self._send(plan, mode)
        except EhrRejected as exc:
            self._breaker.success()  # the EHR is up; it said no
            self._store.dead_writeback(job.patient_id, str(exc), exc.status, exc.outcome, self._clock())
            self._metrics.count_writeback(mode.value, "dead")
            outcome.dead += 1
            log.warning("write-back refused by the EHR (%s); kept for replay", exc.status)
            return
        except EhrError as exc:  # temporary, or a conflict that re-reading did not settle
            now = self._clock()
            self._breaker.failure(now)
            failing_since = job.first_failure_at or now
            if self._policy.exhausted((now - failing_since).total_seconds()):
                self._store.dead_writeback(job.patient_id, f"gave up retrying: {exc}", exc.status, exc.outcome, now)
                self._metrics.count_writeback(mode.value, "dead")
                outcome.dead += 1
                return
            retry_after = exc.retry_after if isinstance(exc, EhrTemporaryError) else None
            delay = self._policy.delay(job.attempts, retry_after, self._random)
            self._store.retry_writeback(
                job.patient_id, now + timedelta(seconds=delay), str(exc), exc.status, exc.outcome, now
            )
            self._metrics.count_writeback(mode.value, "retried")
            outcome.retried += 1
            return
        self._breaker.success()
        self._store.complete_writeback(job, sent.record, self._clock())
        self._metrics.count_writeback(mode.value, "delivered")
        outcome.delivered += 1

    def _plan(self, patient_id: str, state: WritebackState) -> WritePlan:
        send_ra = state.risk_assessment is not None and not state.assessment_delivered
        send_plan = state.care_plan is not None and state.plan_version != state.plan_delivered_version
        inputs = [b["reference"] for b in (state.risk_assessment or {}).get("basis", []) if "reference" in b]
        return WritePlan(
            patient_id=patient_id,
            risk_assessment=state.risk_assessment if send_ra else None,
            assessment_id=state.assessment_id,
            delivered_assessment_ref=(
                f"RiskAssessment/{state.last_delivered_ehr_id}" if state.last_delivered_ehr_id else None
            ),
            care_plan=state.care_plan if send_plan else None,
            plan_id=state.plan_id,
            plan_version=state.plan_version if send_plan else None,
            plan_ehr_version=state.plan_ehr_version,
            inputs=inputs,
            plan_ehr_id=state.plan_ehr_id,
            tasks=[
                TaskWrite(t.alert_id, t.id, t.version, t.resource, t.ehr_version)
                for t in state.tasks
                if self._mode.tasks
            ],
        )

    def _send(self, plan: WritePlan, mode: WriteMode) -> _Sent:
        if mode is WriteMode.TRANSACTION:
            try:
                return self._with_conflict_retry(plan, self._send_transaction)
            except (EhrRejected, EhrTemporaryError) as exc:
                if exc.status not in _REFUSES_TRANSACTIONS:
                    raise
                # The EHR refuses transactions after all: fall back to separate conditional requests.
                log.warning("the EHR refused a transaction (%s); using separate conditional updates", exc.status)
                self._mode = replace(
                    self._mode,
                    mode=WriteMode.CONDITIONAL,
                    detail=f"the EHR refused a transaction ({exc.status}): separate requests",
                )
                mode = WriteMode.CONDITIONAL
        if mode is WriteMode.CONDITIONAL:
            return self._with_conflict_retry(plan, self._send_conditional)
        return self._with_conflict_retry(plan, self._send_client_id)

    def _with_conflict_retry(self, plan: WritePlan, send: Callable[[WritePlan], _Sent]) -> _Sent:
        try:
            return send(plan)
        except EhrConflict:
            if (plan.care_plan is None or plan.plan_id is None) and not any(t.ehr_version for t in plan.tasks):
                raise
        # The CarePlan or a Task changed at the EHR since we last saw it: re-read them, re-apply ours, once.
        assert self._ehr is not None
        if plan.care_plan is not None and plan.plan_id is not None:
            found = self._ehr.request("GET", "/" + conditional_url("CarePlan", PLAN_SYSTEM, plan.plan_id))
            entries = (found.body or {}).get("entry", [])
            if not entries:
                raise EhrConflict("the CarePlan conflicted but could not be found at the EHR", 412)
            theirs = entries[0].get("resource", {})
            version = (theirs.get("meta") or {}).get("versionId")
            self._store.set_plan_ehr_version(plan.patient_id, theirs.get("id"), version)
            plan = replace(plan, care_plan=merge_care_plan(plan.care_plan, theirs), plan_ehr_version=version)
        tasks, settled = self._reread_tasks(plan)
        sent = send(replace(plan, tasks=tasks))
        return replace(sent, record=replace(sent.record, tasks=sent.record.tasks + tuple(settled)))

    def _reread_tasks(self, plan: WritePlan) -> tuple[list[TaskWrite], list[tuple[str, int, str | None, str | None]]]:
        """The Tasks to send again after a conflict, and those the EHR already closed (theirs stands)."""
        assert self._ehr is not None
        again: list[TaskWrite] = []
        settled: list[tuple[str, int, str | None, str | None]] = []
        for task in plan.tasks:
            if not task.ehr_version:
                again.append(task)
                continue
            found = self._ehr.request("GET", "/" + conditional_url("Task", TASK_SYSTEM, task.task_id))
            entries = (found.body or {}).get("entry", [])
            theirs = entries[0].get("resource", {}) if entries else {}
            version = (theirs.get("meta") or {}).get("versionId")
            if not entries:
                again.append(replace(task, ehr_version=None))
            elif theirs.get("status") in _CLOSED_AT_EHR and theirs.get("status") != task.resource.get("status"):
                # Someone at the EHR completed or cancelled it: never reopen it from here. The alert follows it.
                self._store.set_task_ehr_version(task.alert_id, theirs.get("id"), version)
                if self._task_changed_at_ehr is not None:
                    self._task_changed_at_ehr(theirs)
                settled.append((task.alert_id, task.version, theirs.get("id"), version))
            else:
                self._store.set_task_ehr_version(task.alert_id, theirs.get("id"), version)
                resource = dict(task.resource)
                if theirs.get("note"):
                    resource["note"] = theirs["note"]  # notes added at the EHR are kept
                again.append(replace(task, resource=resource, ehr_version=version))
        return again, settled

    def _provenance(self, plan: WritePlan, targets: list[str]) -> dict[str, Any] | None:
        if not self._mode.provenance or not targets:
            return None
        key = f"{plan.patient_id}|{plan.assessment_id if plan.risk_assessment else '-'}|{plan.plan_version or '-'}"
        key += "".join(f"|{t.task_id}:{t.version}" for t in plan.tasks)
        return build_provenance(
            str(uuid.uuid5(_NAMESPACE, key)),
            targets,
            plan.inputs,
            self._clock().isoformat(timespec="seconds"),
            self._software,
        )

    def _send_transaction(self, plan: WritePlan) -> _Sent:
        assert self._ehr is not None
        targets = [f"urn:uuid:{plan.assessment_id}"] if plan.risk_assessment else []
        targets += [f"urn:uuid:{plan.plan_id}"] if plan.care_plan else []
        targets += [f"urn:uuid:{t.task_id}" for t in plan.tasks]
        bundle = transaction_bundle(plan, self._provenance(plan, targets))
        tasks = {f"urn:uuid:{t.task_id}": t for t in plan.tasks}
        response = self._ehr.request("POST", "", bundle)
        results = (response.body or {}).get("entry", [])
        record = DeliveryRecord(WriteMode.TRANSACTION.value)
        for entry, result in zip(bundle["entry"], results, strict=False):
            answer = result.get("response", {})
            ehr_id, version = parse_location(answer.get("location"))
            version = etag_version(answer.get("etag")) or version
            kind = entry["resource"]["resourceType"]
            if kind == "RiskAssessment":
                record = replace(record, assessment_id=plan.assessment_id, ehr_assessment_id=ehr_id)
            elif kind == "CarePlan":
                record = replace(record, plan_version=plan.plan_version, ehr_plan_id=ehr_id, ehr_plan_version=version)
            elif kind == "Task":
                task = tasks[entry["fullUrl"]]
                record = replace(record, tasks=(*record.tasks, (task.alert_id, task.version, ehr_id, version)))
        return _Sent(record)

    def _put(self, path: str, resource: dict[str, Any], if_match: str | None) -> tuple[str | None, str | None]:
        assert self._ehr is not None
        headers = {"If-Match": f'W/"{if_match}"'} if if_match else None
        response = self._ehr.request("PUT", path, resource, headers)
        body = response.body if isinstance(response.body, dict) else {}
        response_headers = {k.lower(): v for k, v in response.headers.items()}
        ehr_id, version = parse_location(response_headers.get("location") or response_headers.get("content-location"))
        ehr_id = body.get("id") or ehr_id
        version = (body.get("meta") or {}).get("versionId") or etag_version(response_headers.get("etag")) or version
        return ehr_id, version

    def _send_conditional(self, plan: WritePlan) -> _Sent:
        return self._send_separately(plan, WriteMode.CONDITIONAL)

    def _send_client_id(self, plan: WritePlan) -> _Sent:
        return self._send_separately(plan, WriteMode.CLIENT_ID)

    def _send_separately(self, plan: WritePlan, mode: WriteMode) -> _Sent:
        record = DeliveryRecord(mode.value)
        ra_ref = plan.delivered_assessment_ref
        targets: list[str] = []
        if plan.risk_assessment is not None and plan.assessment_id:
            path = (
                "/" + conditional_url("RiskAssessment", RA_SYSTEM, plan.assessment_id)
                if mode is WriteMode.CONDITIONAL
                else f"/RiskAssessment/{plan.assessment_id}"
            )
            ehr_id, _ = self._put(path, prepare_risk_assessment(plan.risk_assessment, mode), None)
            record = replace(record, assessment_id=plan.assessment_id, ehr_assessment_id=ehr_id)
            ra_ref = f"RiskAssessment/{ehr_id}" if ehr_id else ra_ref
            targets.append(f"RiskAssessment/{ehr_id}")
        if plan.care_plan is not None and plan.plan_id:
            path = (
                "/" + conditional_url("CarePlan", PLAN_SYSTEM, plan.plan_id)
                if mode is WriteMode.CONDITIONAL
                else f"/CarePlan/{plan.plan_id}"
            )
            ehr_id, version = self._put(path, prepare_care_plan(plan.care_plan, mode, ra_ref), plan.plan_ehr_version)
            record = replace(record, plan_version=plan.plan_version, ehr_plan_id=ehr_id, ehr_plan_version=version)
            targets.append(f"CarePlan/{ehr_id}")
        plan_ref = (
            f"CarePlan/{record.ehr_plan_id or plan.plan_ehr_id}" if (record.ehr_plan_id or plan.plan_ehr_id) else None
        )
        for task in plan.tasks:
            path = (
                "/" + conditional_url("Task", TASK_SYSTEM, task.task_id)
                if mode is WriteMode.CONDITIONAL
                else f"/Task/{task.task_id}"
            )
            ehr_id, version = self._put(
                path, prepare_task(task.resource, mode, plan.plan_id, plan_ref), task.ehr_version
            )
            record = replace(record, tasks=(*record.tasks, (task.alert_id, task.version, ehr_id, version)))
            targets.append(f"Task/{ehr_id}")
        provenance = self._provenance(plan, targets)
        if provenance is not None:
            self._put(f"/Provenance/{provenance['id']}", provenance, None)
        return _Sent(record)
