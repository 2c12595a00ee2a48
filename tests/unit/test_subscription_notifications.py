"""Reading Subscription notifications (R4B/R5 SubscriptionStatus, the R4 backport's Parameters) and tracking event
numbers: duplicates, gaps, restarts."""

from __future__ import annotations

from typing import Any

import pytest

from service.domain.event_feed import FeedPosition, advance
from service.fhir.subscription_builders import backport_advertised
from service.fhir.subscriptions import NotificationError, is_notification_bundle, parse_notification

TOPIC = "http://example.org/fhir/SubscriptionTopic/vertebral-care"
OBS = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"text": "x"},
    "subject": {"reference": "Patient/p1"},
}


def r4b(
    kind: str, since: Any, events: list[tuple[Any, str | None]], resources: tuple[dict[str, Any], ...] = ()
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "resourceType": "SubscriptionStatus",
        "status": "active",
        "type": kind,
        "eventsSinceSubscriptionStart": since,
        "subscription": {"reference": "https://ehr.example.org/fhir/Subscription/s1"},
        "topic": TOPIC,
    }
    if events:
        status["notificationEvent"] = [
            {"eventNumber": n, **({"focus": {"reference": f}} if f else {})} for n, f in events
        ]
    entries: list[dict[str, Any]] = [{"fullUrl": "urn:uuid:9b1f", "resource": status}]
    entries += [
        {"fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in resources
    ]
    return {"resourceType": "Bundle", "type": "history", "entry": entries}


def r4_backport(kind: str, since: str, events: list[tuple[str, str | None]]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": "Subscription/s1"}},
        {"name": "topic", "valueCanonical": TOPIC},
        {"name": "status", "valueCode": "active"},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": since},
    ]
    for number, focus in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": number},
            {"name": "timestamp", "valueInstant": "2026-06-01T08:00:00Z"},
        ]
        if focus:
            parts.append({"name": "focus", "valueReference": {"reference": focus}})
        parameters.append({"name": "notification-event", "part": parts})
    entries: list[dict[str, Any]] = [{"resource": {"resourceType": "Parameters", "parameter": parameters}}]
    entries += [{"fullUrl": f"https://ehr.example.org/fhir/{f}"} for _, f in events if f]  # id-only: no resource
    return {"resourceType": "Bundle", "type": "history", "entry": entries}


def test_r4b_full_resource_event() -> None:
    note = parse_notification(r4b("event-notification", "2", [("2", "Observation/o1")], (OBS,)))
    assert note.kind == "event-notification"
    assert note.events_since_start == 2
    assert note.numbers == (2,)
    assert note.events[0].focus == ("Observation", "o1")
    assert note.resources[("Observation", "o1")] == OBS
    assert note.subscription == "https://ehr.example.org/fhir/Subscription/s1"
    assert note.topic == TOPIC
    assert note.status == "active"


def test_r4_backport_id_only_event_has_foci_and_no_resources() -> None:
    body = r4_backport("event-notification", "7", [("6", "MedicationAdministration/m1"), ("7", "Patient/p1")])
    assert is_notification_bundle(body)
    note = parse_notification(body)
    assert note.numbers == (6, 7)
    assert [e.focus for e in note.events] == [("MedicationAdministration", "m1"), ("Patient", "p1")]
    assert note.resources == {}
    assert note.subscription == "Subscription/s1"


def test_empty_content_has_events_without_focus() -> None:
    note = parse_notification(r4_backport("event-notification", "3", [("3", None)]))
    assert note.events[0].focus is None
    assert note.numbers == (3,)


@pytest.mark.parametrize("kind", ["handshake", "heartbeat"])
def test_handshake_and_heartbeat(kind: str) -> None:
    for body in (r4b(kind, "0", []), r4_backport(kind, "0", [])):
        note = parse_notification(body)
        assert note.kind == kind
        assert note.events == ()
        assert note.events_since_start == 0


def test_r5_numbers_and_bundle_type() -> None:
    body = r4b("event-notification", 4, [(4, "Procedure/op1")])
    body["type"] = "subscription-notification"
    assert parse_notification(body).numbers == (4,)


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Bundle", "type": "transaction", "entry": []},
        {"resourceType": "Bundle", "type": "history", "entry": []},
        {"resourceType": "Bundle", "type": "history", "entry": [{"resource": OBS}]},
        r4b("nonsense", "1", []),
        r4b("event-notification", "-1", []),
        r4b("event-notification", "1", [("one", "Observation/o1")]),
        r4b("event-notification", True, []),
    ],
)
def test_malformed_notifications_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(NotificationError):
        parse_notification(body)


def test_a_plain_history_bundle_is_not_a_notification() -> None:
    assert not is_notification_bundle({"resourceType": "Bundle", "type": "history", "entry": [{"resource": OBS}]})
    assert not is_notification_bundle(OBS)


# --- event numbers --------------------------------------------------------------------------------------------
def test_in_order_events_advance_without_gap() -> None:
    step = advance(FeedPosition(), frozenset(), [1, 2], 2)
    assert step.position == FeedPosition(2, 2)
    assert step.new_events == (1, 2)
    assert not step.gap


def test_a_duplicate_is_not_new() -> None:
    step = advance(FeedPosition(3, 3), frozenset(), [2, 3], 3)
    assert step.new_events == ()
    assert not step.gap


def test_a_gap_asks_for_a_catchup_and_a_late_arrival_is_then_ignored() -> None:
    step = advance(FeedPosition(2, 2), frozenset(), [4], 4)
    assert step.gap
    assert step.new_events == (4,)
    assert step.position == FeedPosition(4, 4)
    late = advance(step.position, step.pending, [3], 4)
    assert late.new_events == ()
    assert not late.gap


def test_a_heartbeat_announcing_more_events_is_a_gap() -> None:
    assert advance(FeedPosition(5, 5), frozenset(), [], 7).gap
    assert not advance(FeedPosition(5, 5), frozenset(), [], 5).gap


def test_handshake_starts_and_restarts_the_count() -> None:
    first = advance(FeedPosition(), frozenset(), [], 0, handshake=True)
    assert first.position == FeedPosition(0, 0)
    assert not first.gap
    assert not first.restarted
    restart = advance(FeedPosition(9, 9), frozenset(), [], 0, handshake=True)
    assert restart.restarted
    assert restart.gap
    assert restart.position == FeedPosition(0, 0)


def test_the_backport_is_recognised_in_a_capability_statement() -> None:
    server = "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/backport-subscription-server-r4"
    assert backport_advertised({"resourceType": "CapabilityStatement", "instantiates": [server]})
    profile = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"
    rest = [{"mode": "server", "resource": [{"type": "Subscription", "supportedProfile": [profile]}]}]
    assert backport_advertised({"resourceType": "CapabilityStatement", "rest": rest})
    assert not backport_advertised({"resourceType": "CapabilityStatement", "rest": [{"mode": "server"}]})
