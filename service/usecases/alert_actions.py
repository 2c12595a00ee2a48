"""A person acts on an alert: acknowledge, assign, snooze, dismiss with a reason, reopen, add a note."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from service.domain.alert_lifecycle import ActionRequest, TransitionError, transition
from service.platform.errors import ConcurrentWrite, Problem, refuse
from service.usecases.alerts import AlertEvaluator
from service.usecases.ports.alerts import AlertEventRow, AlertStore, StoredAlert
from service.usecases.ports.clock import Clock

__all__ = ["ActionResult", "AlertActions"]


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The alert after the action, and its history."""

    alert: StoredAlert
    history: list[AlertEventRow]


class AlertActions:
    """Applies people's actions to alerts, keeps who and when, and refreshes the patient's CarePlan."""

    def __init__(
        self, store: AlertStore, evaluator: AlertEvaluator, clock: Clock, today: Callable[[datetime], date]
    ) -> None:
        self._store = store
        self._evaluator = evaluator
        self._clock = clock
        self._today = today

    def act(
        self, alert_id: str, request: ActionRequest, actor: str, expected_revision: int | None = None
    ) -> ActionResult:
        """Apply one action.

        Args:
            alert_id: the alert.
            request: the action and what it needs.
            actor: who acts (the signed-in user).
            expected_revision: the revision the person saw; a different one means someone else acted first.

        Raises:
            RefractureError: NOT_FOUND, CONFLICT (someone acted first, or the action does not fit the alert's state).
        """
        try:
            uuid.UUID(alert_id)
        except ValueError:
            raise refuse(Problem.NOT_FOUND, "not-found", f"alert {alert_id} is not known") from None
        try:
            with self._store.alert_session() as session:
                alert = session.alert_for_update(alert_id)
                if alert is None:
                    raise refuse(Problem.NOT_FOUND, "not-found", f"alert {alert_id} is not known")
                if expected_revision is not None and expected_revision != alert.revision:
                    raise refuse(
                        Problem.CONFLICT,
                        "conflict",
                        f"the alert changed (revision {alert.revision}, "
                        f"you saw {expected_revision}): reload it and try again",
                    )
                now = self._clock()
                try:
                    result = transition(alert.status, alert.assignee, request, self._today(now))
                except TransitionError as exc:
                    raise refuse(Problem.CONFLICT, "business-rule", str(exc)) from None
                session.apply_alert_action(alert_id, result, now)
                details = [
                    part
                    for part in (
                        request.assignee,
                        str(request.until) if request.until else None,
                        request.reason,
                        result.note,
                    )
                    if part
                ]
                session.add_alert_events(
                    [
                        AlertEventRow(
                            alert_id,
                            now,
                            actor,
                            request.action.value,
                            alert.status,
                            result.status,
                            "; ".join(details) or None,
                        )
                    ]
                )
        except ConcurrentWrite:
            raise refuse(
                Problem.CONFLICT, "conflict", "another alert of this kind is already open for the patient"
            ) from None
        # The care plan shows the alert's new state (and a reopened alert is re-checked against the rules).
        self._evaluator.evaluate_patients([alert.patient_id])
        with self._store.alert_session() as session:
            updated = session.alert_for_update(alert_id)
            history = session.alert_history(alert_id)
        assert updated is not None
        return ActionResult(updated, history)
