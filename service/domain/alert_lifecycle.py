"""What a person may do to an alert, and what state it leads to (docs/sources/alerts.md, 'Lifecycle')."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final

__all__ = ["ACTIVE", "ActionRequest", "AlertAction", "Transition", "TransitionError", "transition"]

ACTIVE: Final = frozenset({"open", "acknowledged", "assigned", "snoozed"})


class AlertAction(StrEnum):
    """A person's action on an alert."""

    ACKNOWLEDGE = "acknowledge"
    ASSIGN = "assign"
    SNOOZE = "snooze"
    DISMISS = "dismiss"
    REOPEN = "reopen"
    NOTE = "note"


class TransitionError(ValueError):
    """The action does not apply to the alert as it is (a clear message for the person)."""


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """An action with what it needs."""

    action: AlertAction
    assignee: str | None = None
    until: date | None = None
    reason: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """The alert's fields after the action."""

    status: str
    assignee: str | None
    snoozed_until: date | None
    dismiss_reason: str | None
    note: str | None


def transition(status: str, assignee: str | None, request: ActionRequest, today: date) -> Transition:
    """The state an action leads to.

    Raises:
        TransitionError: the action does not apply (e.g. dismissing a resolved alert, snoozing into the past,
            dismissing without a reason).
    """
    action = request.action
    if action is AlertAction.NOTE:
        if not (request.note or "").strip():
            raise TransitionError("a note needs text")
        return Transition(status, assignee, None, None, request.note)
    if action is AlertAction.REOPEN:
        if status != "dismissed":
            raise TransitionError(f"only a dismissed alert can be reopened; this one is {status}")
        return Transition("open", assignee, None, None, request.note)
    if status not in ACTIVE:
        raise TransitionError(f"the alert is {status}: it can no longer be changed")
    if action is AlertAction.ACKNOWLEDGE:
        return Transition("acknowledged", assignee, None, None, request.note)
    if action is AlertAction.ASSIGN:
        if not (request.assignee or "").strip():
            raise TransitionError("assign needs an assignee")
        return Transition("assigned", request.assignee, None, None, request.note)
    if action is AlertAction.SNOOZE:
        if request.until is None or request.until <= today:
            raise TransitionError("snooze needs a date after today")
        return Transition("snoozed", assignee, request.until, None, request.note)
    if not (request.reason or "").strip():
        raise TransitionError("dismissing an alert needs a reason")
    return Transition("dismissed", assignee, None, request.reason, request.note)
