"""A Task changed at the EHR: the alert follows (issue 18, docs/integration-guide.md 'Tasks').

The rule, as documented:
- completed or cancelled at the EHR → the alert is closed as ``dismissed`` (it holds for the episode, as a
  person's dismissal does: a completion the record does not show yet must not raise the alert again), with the
  reason "completed at the EHR" or "cancelled at the EHR"; the Task keeps the EHR's status from then on;
- in-progress or accepted at the EHR → an open alert is acknowledged;
- anything else (on-hold, rejected, failed, a new note) changes nothing.
Who: the author of the Task's last note (``note.authorReference``), else its owner when that is a Practitioner or
PractitionerRole, else "the EHR". When: ``Task.lastModified`` (else ``meta.lastUpdated``).
Each EHR version of a Task is acted on at most once, and a version refracture wrote itself (or whose status is the
one refracture last sent) is never taken for an action.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Final

from service.domain.alert_lifecycle import Transition
from service.fhir.task import ACTED_ON, TASK_SYSTEM
from service.usecases.alerts import AlertEvaluator
from service.usecases.ports.alerts import AlertEventRow, AlertStore
from service.usecases.ports.clock import Clock

__all__ = ["TaskSync", "task_actor"]

log = logging.getLogger(__name__)

_PEOPLE: Final = ("Practitioner/", "PractitionerRole/")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def task_actor(task: dict[str, Any]) -> str:
    """Who acted on a Task at the EHR (the documented rule), as the alert's history shows it."""
    for note in reversed(task.get("note") or []):
        author = note.get("authorReference") if isinstance(note, dict) else None
        if isinstance(author, dict):
            who = _text(author.get("reference")) or _text(author.get("display"))
            if who:
                return f"ehr:{who}"[:200]
        if isinstance(note, dict) and _text(note.get("authorString")):
            return f"ehr:{note['authorString']}"[:200]
    owner = task.get("owner")
    if isinstance(owner, dict) and str(owner.get("reference", "")).startswith(_PEOPLE):
        return f"ehr:{owner['reference']}"[:200]
    return "ehr"


def _moment(task: dict[str, Any]) -> datetime | None:
    meta = task.get("meta")
    for value in (task.get("lastModified"), meta.get("lastUpdated") if isinstance(meta, dict) else None):
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            if moment.tzinfo is not None:
                return moment
    return None


class TaskSync:
    """Applies the EHR's changes of refracture's Tasks to their alerts."""

    def __init__(
        self, store: AlertStore, evaluator: AlertEvaluator, clock: Clock, today: Callable[[datetime], date]
    ) -> None:
        self._store = store
        self._evaluator = evaluator
        self._clock = clock
        self._today = today

    def __call__(self, task: dict[str, Any]) -> str:
        """Look at a Task read from the EHR.

        Returns:
            ``not-ours`` (no refracture identifier or unknown), ``seen`` (this EHR version was looked at before),
            ``no-action`` (our own write, or a status without an action) or ``acted``.
        """
        identifier = next(
            (
                str(i.get("value"))
                for i in task.get("identifier") or []
                if isinstance(i, dict) and i.get("system") == TASK_SYSTEM and i.get("value")
            ),
            None,
        )
        if identifier is None or task.get("resourceType") != "Task":
            return "not-ours"
        ehr_id = _text(task.get("id"))
        meta = task.get("meta")
        ehr_version = _text(meta.get("versionId")) if isinstance(meta, dict) else None
        status = str(task.get("status", ""))
        now = self._clock()
        with self._store.alert_session() as session:
            stored = session.task_for_update(identifier)
            if stored is None:
                return "not-ours"
            if ehr_version is not None and ehr_version == stored.synced_ehr_version:
                return "seen"
            ours = stored.resource.get("status")
            if status == ours or status not in ACTED_ON or stored.ehr_final_status is not None:
                session.mark_task_synced(stored.alert_id, ehr_id, ehr_version, None)
                return "no-action"
            alert = session.alert_for_update(stored.alert_id)
            assert alert is not None  # alert_task references alert
            who = task_actor(task)
            when = _moment(task) or now
            closing = status in ("completed", "cancelled")
            note = f"Task {status} at the EHR at {when.isoformat(timespec='seconds')}"
            if closing and alert.active:
                reason = f"{status} at the EHR"
                session.apply_alert_action(alert.id, Transition("dismissed", alert.assignee, None, reason, note), now)
                session.add_alert_events(
                    [
                        AlertEventRow(
                            alert.id, min(when, now), who, f"ehr-task-{status}", alert.status, "dismissed", note
                        )
                    ]
                )
            elif not closing and alert.status == "open":
                session.apply_alert_action(alert.id, Transition("acknowledged", alert.assignee, None, None, note), now)
                session.add_alert_events(
                    [AlertEventRow(alert.id, min(when, now), who, "acknowledge", "open", "acknowledged", note)]
                )
            session.mark_task_synced(stored.alert_id, ehr_id, ehr_version, status if closing else None)
            patient_id = alert.patient_id
        log.info("a Task changed at the EHR (%s): the alert follows", status)
        # The CarePlan and the Task follow the alert (the Task keeps the EHR's final status).
        self._evaluator.evaluate_patients([patient_id])
        return "acted"
