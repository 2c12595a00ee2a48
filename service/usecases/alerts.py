"""Evaluate the alerts of patients and keep their lifecycle and their CarePlan up to date, in one transaction.

Re-evaluating an unchanged record changes nothing; new evidence resolves an alert by itself; a dismissed alert
stays dismissed for its episode; every change of state is kept with who (here: refracture) and when.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Final

from service.domain.alert_rules import AlertConfig, AlertFinding, evaluate, index_episode, resolution_of
from service.domain.alert_types import ALERT_TYPES, AlertType
from service.domain.care_plan import AlertView, AssessmentView, PlanContext, plan_activities
from service.domain.drugs import ANTI_OSTEOPOROSIS
from service.domain.exposure import denosumab_state
from service.domain.facts import Fact
from service.domain.latest_only import AsOf
from service.domain.medication_timeline import events_of, last_dose
from service.domain.safety import renal_check
from service.fhir.care_plan import build_care_plan, previous_activities
from service.fhir.jsonio import content_hash
from service.fhir.task import TaskInput, TaskRoute, build_task, route_owner, task_id_of
from service.usecases.ports.alerts import (
    AlertEventRow,
    AlertSession,
    AlertStore,
    CareSummary,
    LatestAssessmentView,
    StoredAlert,
    StoredCarePlan,
    StoredTask,
)
from service.usecases.ports.clock import Clock
from service.usecases.ports.metrics import Metrics, NoMetrics

__all__ = ["SYSTEM_ACTOR", "AlertEvaluator", "EvaluationOutcome"]

log = logging.getLogger(__name__)

SYSTEM_ACTOR: Final = "refracture"
_NAMESPACE: Final = uuid.UUID("8d3f0a61-2c4b-4e8a-b1f7-5a9e0c3d2b14")
_CLOSED_SHOWN: Final = timedelta(days=90)  # closed alerts stay on the care plan, completed or cancelled, this long
_DENOSUMAB: Final = frozenset(
    {AlertType.DENOSUMAB_DOSE_DUE, AlertType.DENOSUMAB_OVERDUE, AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON}
)


@dataclass(slots=True)
class EvaluationOutcome:
    """What one run changed."""

    patients: int = 0
    opened: int = 0
    resolved: int = 0
    updated: int = 0
    care_plans: int = 0
    opened_codes: Counter[str] = field(default_factory=Counter)
    resolved_codes: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _Writes:
    """A batch's new rows, written together at its end: one round trip per kind (executemany pipelines them), not
    one per alert, plan and Task (issue 15: the sweep spent most of its time waiting on those round trips)."""

    alerts: list[StoredAlert] = field(default_factory=list)
    plans: list[tuple[str, StoredCarePlan]] = field(default_factory=list)
    tasks: list[StoredTask] = field(default_factory=list)
    writeback: set[str] = field(default_factory=set)


def plan_id_of(patient_id: str) -> str:
    """The patient's CarePlan id: one per patient, stable."""
    return str(uuid.uuid5(_NAMESPACE, f"care-plan|{patient_id}"))


class AlertEvaluator:
    """Applies the alert rules to patients and keeps the alert table and the CarePlan in step with them."""

    def __init__(
        self,
        store: AlertStore,
        clock: Clock,
        config: AlertConfig,
        today: Callable[[datetime], date],
        metrics: Metrics | None = None,
        task_routes: Sequence[TaskRoute] = (),
        organization_sites: Mapping[str, str] | None = None,
    ) -> None:
        """Args: ``today`` turns the clock's instant into the service's calendar date (its time zone);
        ``task_routes`` the Tasks' routing table; ``organization_sites`` each Organization reference's site."""
        self._routes = list(task_routes)
        self._sites = dict(organization_sites or {})
        self._metrics = metrics or NoMetrics()
        self._store = store
        self._clock = clock
        self._config = config
        self._today = today

    def evaluate_patients(self, patient_ids: Sequence[str]) -> EvaluationOutcome:
        """Evaluate these patients now.

        Returns:
            How many alerts were opened, resolved and updated, and how many CarePlans got a new version.
        """
        ids = sorted(set(patient_ids))
        if not ids:
            return EvaluationOutcome()
        with self._store.alert_session() as session:
            session.lock_patients(ids)
            now = self._clock()
            facts = session.facts_for_assessment(ids, AsOf.at(now, self.today(now)))
            outcome = self.evaluate_in(session, ids, facts, now)
        self.count(outcome)
        return outcome

    def today(self, now: datetime) -> date:
        """The service's calendar date at a moment (its time zone): the day the alert rules count in."""
        return self._today(now)

    def count(self, outcome: EvaluationOutcome) -> None:
        """Count the alerts opened and resolved: only once their transaction committed (a rolled-back evaluation
        opened nothing)."""
        self._metrics.count_alerts("opened", outcome.opened_codes)
        self._metrics.count_alerts("resolved", outcome.resolved_codes)

    def evaluate_in(
        self, session: AlertSession, ids: Sequence[str], facts: Mapping[str, Sequence[Fact]], now: datetime
    ) -> EvaluationOutcome:
        """Evaluate locked patients inside the caller's transaction, from facts the caller has read (and after
        their assessment in it: the care plan points at the newest RiskAssessment). The caller ``count``s the
        outcome once the transaction committed.

        Args:
            session: the open transaction, the patients locked in it.
            ids: the patients, sorted and distinct.
            facts: their facts (patient_pipeline.py reads them once for the assessment and the alerts).
            now: the evaluation moment.
        """
        outcome = EvaluationOutcome(patients=len(ids))
        if not ids:
            return outcome
        today = self._today(now)
        alerts = session.alerts_of(ids, now - _CLOSED_SHOWN)
        dismissed = session.dismissed_episodes(ids)
        assessments = session.latest_assessment_views(ids)
        plans = session.care_plans(ids)
        tasks = session.tasks_of(ids)
        organizations = session.patient_organizations(ids)
        schedules: list[tuple[str, date | None]] = []
        summaries: list[CareSummary] = []
        events: list[AlertEventRow] = []
        writes = _Writes()
        for patient_id in ids:
            patient_facts = facts.get(patient_id, [])
            evaluation = evaluate(patient_facts, today, self._config)
            current = self._apply(
                session,
                patient_id,
                alerts.get(patient_id, []),
                evaluation.findings,
                dismissed,
                now,
                today,
                events,
                outcome,
                writes,
            )
            snoozes = [a.snoozed_until for a in current if a.status == "snoozed" and a.snoozed_until]
            next_dates = [d for d in [evaluation.next_check, *snoozes] if d is not None and d > today]
            schedules.append((patient_id, min(next_dates) if next_dates else None))
            episode = index_episode(patient_facts, today, self._config.episode_days, self._config.minimum_age)
            dose = last_dose(events_of(patient_facts), ANTI_OSTEOPOROSIS)
            summaries.append(
                CareSummary(
                    patient_id,
                    dose.day if dose else None,
                    dose.drug.value if dose else None,
                    episode.day if episode else None,
                )
            )
            changed, plan = self._save_plan(
                writes,
                patient_id,
                current,
                assessments.get(patient_id),
                plans.get(patient_id),
                episode.day if episode else None,
                [r for r in (episode.evidence if episode else ()) if r.startswith("Condition/")],
                now,
                patient_facts,
                today,
            )
            if changed:
                outcome.care_plans += 1
            if plan is not None:
                self._save_tasks(writes, patient_id, current, plan, tasks, organizations.get(patient_id), now)
        # Alerts before their Tasks and events (which refer to them); the write-back queued in the same transaction,
        # so a new version cannot be lost.
        session.insert_alerts(writes.alerts)
        session.save_care_plans(writes.plans, now)
        session.save_tasks(writes.tasks, now)
        session.add_alert_events(events)
        session.queue_writeback(sorted(writes.writeback), now)
        session.set_schedules(schedules, now)
        session.update_care_summaries(summaries, now)
        return outcome

    def work(self, patient_ids: Sequence[str]) -> None:
        """The step the change processor runs for changed patients (after their assessment)."""
        outcome = self.evaluate_patients(patient_ids)
        log.info(
            "alerts: %d opened, %d resolved, %d updated; %d care plans",
            outcome.opened,
            outcome.resolved,
            outcome.updated,
            outcome.care_plans,
        )

    # ------------------------------------------------------------------------------------------------
    def _apply(
        self,
        session: AlertSession,
        patient_id: str,
        stored: list[StoredAlert],
        findings: Sequence[AlertFinding],
        dismissed: set[tuple[str, str, str]],
        now: datetime,
        today: date,
        events: list[AlertEventRow],
        outcome: EvaluationOutcome,
        writes: _Writes,
    ) -> list[StoredAlert]:
        by_code = {f.code.value: f for f in findings}
        current: list[StoredAlert] = []
        active_codes: set[str] = set()
        for stored_alert in stored:
            alert = stored_alert
            if not alert.active:
                current.append(alert)
                continue
            finding = by_code.get(alert.code)
            if finding is None:
                session.set_alert_status(alert.id, "resolved", now)
                events.append(
                    AlertEventRow(
                        alert.id,
                        now,
                        SYSTEM_ACTOR,
                        "resolved",
                        alert.status,
                        "resolved",
                        _resolution_note(alert.code, findings),
                    )
                )
                current.append(replace(alert, status="resolved", closed_at=now))
                outcome.resolved += 1
                outcome.resolved_codes[alert.code] += 1
                continue
            active_codes.add(alert.code)
            if alert.status == "snoozed" and alert.snoozed_until is not None and alert.snoozed_until <= today:
                session.set_alert_status(alert.id, "open", now)
                events.append(
                    AlertEventRow(
                        alert.id,
                        now,
                        SYSTEM_ACTOR,
                        "unsnoozed",
                        "snoozed",
                        "open",
                        f"snoozed until {alert.snoozed_until}",
                    )
                )
                alert = replace(alert, status="open", snoozed_until=None)
            changed = (alert.due, alert.episode, alert.evidence, alert.detail) != (
                finding.due,
                finding.episode,
                finding.evidence,
                finding.detail,
            )
            if changed:
                alert = replace(
                    alert,
                    due=finding.due,
                    episode=finding.episode,
                    evidence=finding.evidence,
                    detail=finding.detail,
                    priority=finding.priority,
                )
                session.update_alert_finding(alert, now)
                events.append(
                    AlertEventRow(alert.id, now, SYSTEM_ACTOR, "updated", alert.status, alert.status, finding.detail)
                )
                outcome.updated += 1
            current.append(alert)
        for finding in findings:
            code = finding.code.value
            if code in active_codes or (patient_id, code, finding.episode) in dismissed:
                continue
            alert = StoredAlert(
                id=str(uuid.uuid5(_NAMESPACE, f"{patient_id}|{code}|{finding.episode}|{now.isoformat()}")),
                patient_id=patient_id,
                code=code,
                status="open",
                priority=finding.priority,
                due=finding.due,
                episode=finding.episode,
                evidence=finding.evidence,
                detail=finding.detail,
                opened_at=now,
            )
            writes.alerts.append(alert)
            events.append(AlertEventRow(alert.id, now, SYSTEM_ACTOR, "opened", None, "open", finding.detail))
            current.append(alert)
            outcome.opened += 1
            outcome.opened_codes[code] += 1
        return current

    def _save_plan(
        self,
        writes: _Writes,
        patient_id: str,
        alerts: list[StoredAlert],
        assessment: LatestAssessmentView | None,
        stored: StoredCarePlan | None,
        period_start: date | None,
        conditions: list[str],
        now: datetime,
        facts: Sequence[Fact],
        today: date,
    ) -> tuple[bool, dict[str, Any] | None]:
        """Save a new CarePlan version if it changed; returns whether it did, and the plan as it now stands."""
        if not alerts and assessment is None and stored is None:
            return False, None  # nothing to plan for: no care plan
        views = [self._view(a, alerts, facts, today) for a in alerts]
        context = PlanContext(
            renal_check(facts, today),
            denosumab_state(events_of(facts), today, self._config.rules()).on_time,
        )
        assessment_view = (
            AssessmentView(assessment.resource_id, assessment.band, assessment.inputs, assessment.missing)
            if assessment
            else None
        )
        activities = plan_activities(
            views, assessment_view, previous_activities(stored.resource if stored else None), context
        )
        plan_id = stored.id if stored else plan_id_of(patient_id)
        resource = build_care_plan(
            plan_id, patient_id, activities, assessment.resource_id if assessment else None, conditions, period_start
        )
        digest = content_hash(resource).hex()
        if stored is not None and stored.content_hash == digest:
            return False, resource
        version = stored.version + 1 if stored else 1
        resource["meta"] = {"versionId": str(version), "lastUpdated": now.isoformat(timespec="milliseconds")}
        writes.plans.append((patient_id, StoredCarePlan(plan_id, version, digest, resource)))
        writes.writeback.add(patient_id)
        return True, resource

    def _save_tasks(
        self,
        writes: _Writes,
        patient_id: str,
        alerts: list[StoredAlert],
        plan: dict[str, Any],
        stored: Mapping[str, StoredTask],
        organization: str | None,
        now: datetime,
    ) -> None:
        """One Task per alert, following its CarePlan activity: a new version when its content changes (issue 18).

        An alert gets a Task while it is active; a closed alert's Task is completed or cancelled, never deleted.
        """
        activities = {str(a.get("id")): a for a in plan.get("activity", [])}
        site = self._sites.get(organization, organization.removeprefix("Organization/")) if organization else None
        changed = False
        for alert in alerts:
            previous = stored.get(alert.id)
            activity = activities.get(f"alert-{alert.id}")
            if activity is None or (previous is None and not alert.active):
                continue
            when = now.isoformat(timespec="seconds")
            resource = build_task(
                TaskInput(
                    alert_id=alert.id,
                    alert_code=alert.code,
                    priority=alert.priority,
                    patient_id=patient_id,
                    activity=activity,
                    plan_ref=f"CarePlan/{plan['id']}",
                    medication_request=next((r for r in alert.evidence if r.startswith("MedicationRequest/")), None),
                    owner=route_owner(self._routes, alert.code, site),
                    authored_on=(
                        str(previous.resource.get("authoredOn"))
                        if previous
                        else alert.opened_at.isoformat(timespec="seconds")
                    ),
                    last_modified=when,
                    ehr_status=previous.ehr_final_status if previous else None,
                )
            )
            # lastModified is when the content last changed, so it is left out of the comparison.
            digest = content_hash({k: v for k, v in resource.items() if k != "lastModified"}).hex()
            if previous is not None and previous.content_hash == digest:
                continue
            version = previous.version + 1 if previous else 1
            resource["meta"] = {"versionId": str(version), "lastUpdated": now.isoformat(timespec="milliseconds")}
            # Closed at the EHR: the EHR holds the final state and owns it now; nothing to send.
            settled = previous is not None and previous.ehr_final_status is not None
            delivered = version if settled else (previous.delivered_version if previous else None)
            writes.tasks.append(
                StoredTask(
                    alert.id, patient_id, task_id_of(alert.id), version, digest, resource, delivered_version=delivered
                )
            )
            changed = changed or not settled
        if changed:
            writes.writeback.add(patient_id)

    def _view(self, alert: StoredAlert, alerts: Sequence[StoredAlert], facts: Sequence[Fact], today: date) -> AlertView:
        """The alert as the care plan sees it; for a resolved one, what resolved it (docs/sources/alerts.md, 'Activity
        status')."""
        resolution: str | None = None
        reason: str | None = None
        if alert.status == "resolved":
            code = AlertType(alert.code)
            # Escalation keeps the episode (the same last dose): an active successor for it superseded this one.
            successor = next(
                (
                    a
                    for a in alerts
                    if a.active
                    and a.code != alert.code
                    and a.episode == alert.episode
                    and AlertType(a.code) in _DENOSUMAB
                ),
                None,
            )
            if code in _DENOSUMAB and successor is not None:
                resolution, reason = "superseded", f"superseded by '{ALERT_TYPES[AlertType(successor.code)].title}'"
            else:
                resolution, reason = resolution_of(code, facts, today, self._config)
        elif alert.status == "dismissed":
            reason = "dismissed by the care team"
        return AlertView(
            alert.id,
            AlertType(alert.code),
            alert.status,
            alert.due,
            self._today(alert.opened_at),
            alert.evidence,
            alert.detail,
            alert.episode,
            resolution,
            reason,
        )


def _resolution_note(code: str, findings: Sequence[AlertFinding]) -> str:
    successor = next((f.code.value for f in findings if f.code in _DENOSUMAB and f.code.value != code), None)
    if successor and AlertType(code) in _DENOSUMAB:
        return f"superseded by {successor}"
    return "no longer indicated by the record"
