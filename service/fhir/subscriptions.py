"""Subscription notifications, read: topic-based notification Bundles (R4B/R5 SubscriptionStatus, or the R4
backport's Parameters) and R4 rest-hook payloads, as plain data. Pure: no I/O.

Shapes (HL7 Subscriptions R5 Backport IG, STU 1.1; R4B and R5 subscription.html):

- R4B/R5: ``Bundle.type`` ``history`` (R4B, the backport) or ``subscription-notification`` (R5); the first entry is
  a ``SubscriptionStatus`` with ``type`` (handshake | heartbeat | event-notification | query-status | query-event),
  ``eventsSinceSubscriptionStart`` and ``notificationEvent[]`` (``eventNumber``, ``focus``).
- R4 backport: the same Bundle with a ``Parameters`` first entry (profile backport-subscription-status-r4):
  parameters ``subscription``, ``topic``, ``status``, ``type``, ``events-since-subscription-start`` and
  ``notification-event`` (parts ``event-number``, ``timestamp``, ``focus``, ``additional-context``).

Content: ``full-resource`` (the focus resources are further entries), ``id-only`` (entries with a fullUrl and no
resource; the focus must be fetched) and ``empty`` (no focus at all: the receiver catches up by ``_lastUpdated``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from service.fhir.references import split_reference

__all__ = ["Notification", "NotificationError", "NotificationEvent", "is_notification_bundle", "parse_notification"]

KINDS: Final = frozenset({"handshake", "heartbeat", "event-notification", "query-status", "query-event"})
# R4B/backport notifications are history Bundles; R5 has its own Bundle type.
BUNDLE_TYPES: Final = frozenset({"history", "subscription-notification"})


class NotificationError(ValueError):
    """The body is not a notification refracture can read (the message names the element, never its value)."""


@dataclass(frozen=True, slots=True)
class NotificationEvent:
    """One event of a notification: its number (when the EHR numbers them) and its focus, if any."""

    number: int | None
    focus: tuple[str, str] | None  # (resource type, id), from a relative or absolute reference


@dataclass(frozen=True, slots=True)
class Notification:
    """A topic-based notification as refracture needs it."""

    kind: str
    events_since_start: int | None
    events: tuple[NotificationEvent, ...] = ()
    # Resources that came with the notification (full-resource content), by (type, id).
    resources: Mapping[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    subscription: str | None = None  # the Subscription at the EHR, as the notification names it
    topic: str | None = None
    status: str | None = None

    @property
    def numbers(self) -> tuple[int, ...]:
        """The event numbers it carries."""
        return tuple(e.number for e in self.events if e.number is not None)


def is_notification_bundle(body: Mapping[str, Any]) -> bool:
    """Whether a body is a topic-based notification (a history/subscription-notification Bundle whose first entry
    is a SubscriptionStatus or Parameters)."""
    if body.get("resourceType") != "Bundle" or body.get("type") not in BUNDLE_TYPES:
        return False
    first = _first_resource(body)
    return isinstance(first, dict) and first.get("resourceType") in ("SubscriptionStatus", "Parameters")


def parse_notification(body: Mapping[str, Any]) -> Notification:
    """Read a topic-based notification Bundle.

    Raises:
        NotificationError: not such a Bundle, or its status part is malformed.
    """
    if body.get("resourceType") != "Bundle" or body.get("type") not in BUNDLE_TYPES:
        raise NotificationError("a notification is a Bundle of type history (R4/R4B) or subscription-notification")
    status = _first_resource(body)
    if not isinstance(status, dict):
        raise NotificationError("Bundle.entry[0].resource must be the SubscriptionStatus (or Parameters in R4)")
    if status.get("resourceType") == "SubscriptionStatus":
        notification = _from_status(status)
    elif status.get("resourceType") == "Parameters":
        notification = _from_parameters(status)
    else:
        raise NotificationError("Bundle.entry[0].resource must be the SubscriptionStatus (or Parameters in R4)")
    resources = _included(body)
    return Notification(
        notification.kind,
        notification.events_since_start,
        notification.events,
        resources,
        notification.subscription,
        notification.topic,
        notification.status,
    )


def _first_resource(body: Mapping[str, Any]) -> Any:
    entries = body.get("entry")
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        return None
    return entries[0].get("resource")


def _from_status(status: Mapping[str, Any]) -> Notification:
    kind = _kind(status.get("type"), "SubscriptionStatus.type")
    events: list[NotificationEvent] = []
    raw_events = status.get("notificationEvent") or []
    if not isinstance(raw_events, list):
        raise NotificationError("SubscriptionStatus.notificationEvent must be a list")
    for index, event in enumerate(raw_events):
        if not isinstance(event, dict):
            raise NotificationError(f"SubscriptionStatus.notificationEvent[{index}] must be an object")
        where = f"SubscriptionStatus.notificationEvent[{index}]"
        events.append(
            NotificationEvent(_number(event.get("eventNumber"), f"{where}.eventNumber"), _focus(event.get("focus")))
        )
    subscription = status.get("subscription")
    return Notification(
        kind,
        _number(status.get("eventsSinceSubscriptionStart"), "SubscriptionStatus.eventsSinceSubscriptionStart"),
        tuple(events),
        subscription=_reference(subscription),
        topic=status.get("topic") if isinstance(status.get("topic"), str) else None,
        status=status.get("status") if isinstance(status.get("status"), str) else None,
    )


def _from_parameters(parameters: Mapping[str, Any]) -> Notification:
    found: dict[str, Any] = {}
    events: list[NotificationEvent] = []
    raw = parameters.get("parameter") or []
    if not isinstance(raw, list):
        raise NotificationError("Parameters.parameter must be a list")
    for index, parameter in enumerate(raw):
        if not isinstance(parameter, dict):
            continue
        name = parameter.get("name")
        if name == "notification-event":
            parts = {p.get("name"): p for p in parameter.get("part") or [] if isinstance(p, dict)}
            where = f"Parameters.parameter[{index}].part"
            events.append(
                NotificationEvent(
                    _number(_value(parts.get("event-number")), f"{where}:event-number"),
                    _focus(_value(parts.get("focus"))),
                )
            )
        elif isinstance(name, str):
            found[name] = _value(parameter)
    return Notification(
        _kind(found.get("type"), "Parameters.parameter:type"),
        _number(found.get("events-since-subscription-start"), "Parameters.parameter:events-since-subscription-start"),
        tuple(events),
        subscription=_reference(found.get("subscription")),
        topic=found.get("topic") if isinstance(found.get("topic"), str) else None,
        status=found.get("status") if isinstance(found.get("status"), str) else None,
    )


def _value(parameter: Any) -> Any:
    """A Parameters parameter's value[x], whatever its type."""
    if not isinstance(parameter, dict):
        return None
    for key, value in parameter.items():
        if key.startswith("value"):
            return value
    return None


def _kind(value: Any, where: str) -> str:
    if value not in KINDS:
        raise NotificationError(f"{where} must be one of {', '.join(sorted(KINDS))}")
    return str(value)


def _number(value: Any, where: str) -> int | None:
    """Event counts are integer64 in R5 (a JSON string), string in R4B and the backport, unsignedInt in its 1.0."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise NotificationError(f"{where} must be a whole number")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    raise NotificationError(f"{where} must be a whole number")


def _reference(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return str(value["reference"])
    return None


def _focus(value: Any) -> tuple[str, str] | None:
    reference = _reference(value)
    return split_reference(reference) if reference else None


def _included(body: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The resources after the status entry that carry a type and an id (full-resource content)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in (body.get("entry") or [])[1:]:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if (
            isinstance(resource, dict)
            and isinstance(resource.get("resourceType"), str)
            and isinstance(resource.get("id"), str)
        ):
            found[(resource["resourceType"], resource["id"])] = resource
    return found
