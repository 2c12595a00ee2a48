"""Event feeds against the EHR stand-in at the HTTP boundary: R4 rest-hooks, topic-based notifications (id-only,
full-resource), lost, duplicated and reordered notifications, the secret, the periodic poll and `refracture
subscribe`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from service.entrypoints.cli import main
from service.platform.config import get_settings
from service.usecases.subscriptions import WorkDone
from service.usecases.task_names import TASK_SUBSCRIPTION_WORK
from tests.ehr_standin import RunningStandIn
from tests.support.clock import ManualClock
from tests.support.databases import query_one, table_counts
from tests.support.http import FHIR_JSON
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.records import t_score
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration

SECRET = "synthetic-shared-secret"
FROM_EHR = {"Authorization": f"Bearer {SECRET}", **FHIR_JSON}
# Payloads are stored on receipt only from an integration client's token; the shared secret only announces changes.
WITH_TOKEN = {"Authorization": "Bearer test-integration", **FHIR_JSON}
HOOK = "/fhir/$subscription-hook/ehr"
TOPIC = "http://example.org/fhir/SubscriptionTopic/vertebral-care"


def test_the_secret_announces_changes_but_writes_nothing_itself(
    app: tuple[Parts, TestClient], ehr: RunningStandIn
) -> None:
    parts, client = app
    url = parts.core.settings.database_url.get_secret_value()
    ehr.app.put(observation("o1", value="-2.5"))
    forged = observation("o1", value="-4.9")  # what the holder of the secret claims the record says
    assert client.put(f"{HOOK}/Observation/o1", content=json.dumps(forged), headers=FROM_EHR).status_code == 200
    notice = notification("event-notification", 1, [(1, "Observation/o1")], (forged,))
    assert post(client, notice).status_code == 200
    assert stored(parts, "Observation", "o1") is None  # nothing taken from the notification's body
    work(parts)
    assert stored(parts, "Observation", "o1")["valueQuantity"]["value"] == -2.5  # type: ignore[index]
    # The secret opens no other route.
    for path in ("/fhir/Observation/o1", "/api/worklist"):
        assert client.get(path, headers=FROM_EHR).status_code == 401
    written = client.put("/fhir/Observation/o9", content=json.dumps(observation("o9")), headers=FROM_EHR)
    assert written.status_code == 401
    assert query_one(url, "SELECT count(*) FROM resource WHERE id = 'o9'") == 0


def test_an_unknown_feed_id_is_refused_and_leaves_no_row(app: tuple[Parts, TestClient]) -> None:
    parts, client = app
    url = parts.core.settings.database_url.get_secret_value()
    for feed in ("other", "ehr-2"):
        answer = client.post(f"/fhir/$subscription-hook/{feed}", content=b"", headers=FROM_EHR)
        assert answer.status_code == 404
        put = client.put(f"/fhir/$subscription-hook/{feed}/Observation/o1", headers=WITH_TOKEN)
        assert put.status_code == 404
    assert query_one(url, "SELECT count(*) FROM subscription_feed") == 0
    assert query_one(url, "SELECT count(*) FROM subscription_fetch") == 0


def test_the_secret_is_rate_limited(services: LocalServices, database_url: str, ehr: RunningStandIn) -> None:
    settings = make_settings(services, database_url, **feed_settings(ehr), rate_limit_per_minute=3)
    parts = build_parts(settings, queue=RecordingQueue())
    try:
        with TestClient(api_app(parts), raise_server_exceptions=False) as client:
            answers = [post(client).status_code for _ in range(6)]
        assert 429 in answers
    finally:
        parts.close()


BACKPORT_SERVER = "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/backport-subscription-server-r4"


def feed_settings(ehr: RunningStandIn) -> dict[str, Any]:
    return {
        "ehr_base_url": ehr.base_url,
        "ehr_read_timeout_s": 2.0,
        "ehr_write_mode": "pull",  # these tests are about what comes in, not the write-back
        "subscription_public_url": "https://refracture.example.org",
        "subscription_secret": SECRET,
    }


@contextmanager
def feed_app(services: LocalServices, database_url: str, ehr: RunningStandIn) -> Iterator[tuple[Parts, TestClient]]:
    """The API with the EHR stand-in's feed (subscriptions and polling) configured, over a reset stand-in."""
    ehr.app.reset()
    parts = build_parts(make_settings(services, database_url, **feed_settings(ehr)), queue=RecordingQueue())
    with TestClient(api_app(parts), raise_server_exceptions=False) as client:
        yield parts, client
    parts.close()


@pytest.fixture
def app(services: LocalServices, database_url: str, ehr: RunningStandIn) -> Iterator[tuple[Parts, TestClient]]:
    with feed_app(services, database_url, ehr) as running:
        yield running


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1944-04-04"}


def observation(oid: str, pid: str = "p1", value: str = "-2.5") -> dict[str, Any]:
    return t_score(oid, float(value), pid)


def notification(
    kind: str, since: int, events: list[tuple[int, str | None]], resources: tuple[dict[str, Any], ...] = ()
) -> dict[str, Any]:
    """An R4 backport notification (Parameters first); id-only unless resources are given."""
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": "Subscription/s1"}},
        {"name": "topic", "valueCanonical": TOPIC},
        {"name": "status", "valueCode": "active"},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(since)},
    ]
    for number, focus in events:
        parts: list[dict[str, Any]] = [{"name": "event-number", "valueString": str(number)}]
        if focus:
            parts.append({"name": "focus", "valueReference": {"reference": focus}})
        parameters.append({"name": "notification-event", "part": parts})
    entries: list[dict[str, Any]] = [{"resource": {"resourceType": "Parameters", "parameter": parameters}}]
    included = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    for _, focus in events:
        if focus:
            entries.append(
                {
                    "fullUrl": f"http://ehr.example.org/fhir/{focus}",
                    **({"resource": included[focus]} if focus in included else {}),
                }
            )
    return {"resourceType": "Bundle", "type": "history", "entry": entries}


def post(client: TestClient, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    content = json.dumps(body) if body is not None else b""
    return client.post(HOOK, content=content, headers=headers or FROM_EHR)


def stored(parts: Parts, resource_type: str, resource_id: str) -> dict[str, Any] | None:
    text = parts.resources.read_text((resource_type, resource_id))
    return json.loads(text.body) if text else None


def work(parts: Parts) -> WorkDone:
    return parts.feed_worker.work()


def ehr_gets(ehr: RunningStandIn, path: str) -> int:
    return sum(1 for r in ehr.app.requests if r.method == "GET" and r.path == path)


def test_a_rest_hook_ping_makes_the_worker_poll(app: tuple[Parts, TestClient], ehr: RunningStandIn) -> None:
    parts, client = app
    ehr.app.put(patient("p1"))
    ehr.app.put(observation("o1"))
    answer = post(client)
    assert answer.status_code == 200, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert (TASK_SUBSCRIPTION_WORK, []) in parts.queue.sent  # type: ignore[attr-defined]
    assert stored(parts, "Observation", "o1") is None  # acknowledged first; read by the worker
    done = work(parts)
    assert done.polled
    assert stored(parts, "Observation", "o1") is not None
    assert stored(parts, "Patient", "p1") is not None
    assert query_one(parts.core.settings.database_url.get_secret_value(), "SELECT count(*) FROM patient_change") == 1


def test_a_rest_hook_update_with_the_resource_and_one_with_its_id_only(
    app: tuple[Parts, TestClient], ehr: RunningStandIn
) -> None:
    parts, client = app
    answer = client.put(f"{HOOK}/Observation/o1", content=json.dumps(observation("o1")), headers=WITH_TOKEN)
    assert answer.status_code == 200, answer.text
    assert stored(parts, "Observation", "o1")["meta"]["versionId"] == "1"  # type: ignore[index]
    again = client.put(f"{HOOK}/Observation/o1", content=json.dumps(observation("o1")), headers=WITH_TOKEN)
    assert again.status_code == 200
    assert stored(parts, "Observation", "o1")["meta"]["versionId"] == "1"  # type: ignore[index]
    # Id only: the EHR sends no body; the worker reads the resource.
    ehr.app.put(observation("o2", value="-3.1"))
    assert client.put(f"{HOOK}/Observation/o2", headers=FROM_EHR).status_code == 200
    assert (
        query_one(parts.core.settings.database_url.get_secret_value(), "SELECT count(*) FROM subscription_fetch") == 1
    )
    work(parts)
    assert stored(parts, "Observation", "o2")["valueQuantity"]["value"] == -3.1  # type: ignore[index]
    assert ehr_gets(ehr, "/Observation/o2") == 1
    assert (
        query_one(parts.core.settings.database_url.get_secret_value(), "SELECT count(*) FROM subscription_fetch") == 0
    )
    # Invalid FHIR in a payload is refused like any PUT.
    bad = {**observation("o3"), "status": "nonsense"}
    assert client.put(f"{HOOK}/Observation/o3", content=json.dumps(bad), headers=WITH_TOKEN).status_code == 400


def test_an_id_only_topic_notification_is_fetched_by_a_worker(
    app: tuple[Parts, TestClient], ehr: RunningStandIn
) -> None:
    parts, client = app
    assert post(client, notification("handshake", 0, [])).status_code == 200
    ehr.app.put(patient("p1"))
    ehr.app.put(observation("o1"))
    answer = post(client, notification("event-notification", 2, [(1, "Patient/p1"), (2, "Observation/o1")]))
    assert answer.status_code == 200, answer.text
    assert stored(parts, "Observation", "o1") is None
    work(parts)
    assert stored(parts, "Observation", "o1") is not None
    assert stored(parts, "Patient", "p1") is not None
    assert ehr_gets(ehr, "/Observation/o1") == 1
    url = parts.core.settings.database_url.get_secret_value()
    assert query_one(url, "SELECT contiguous FROM subscription_feed") == 2


def test_a_lost_notification_is_caught_up_by_polling(app: tuple[Parts, TestClient], ehr: RunningStandIn) -> None:
    parts, client = app
    assert work(parts).polled  # the first periodic poll: nothing at the EHR yet
    assert post(client, notification("handshake", 0, [])).status_code == 200
    first = ehr.app.put(observation("o1"))
    first_notice = notification("event-notification", 1, [(1, "Observation/o1")], (first,))
    assert post(client, first_notice, WITH_TOKEN).status_code == 200
    assert not work(parts).polled  # in step, and the periodic poll is not due
    ehr.app.put(observation("o2", value="-2.9"))  # event 2: its notification is lost
    third = ehr.app.put(observation("o3", value="-1.0"))
    third_notice = notification("event-notification", 3, [(3, "Observation/o3")], (third,))
    assert post(client, third_notice, WITH_TOKEN).status_code == 200
    assert stored(parts, "Observation", "o3") is not None  # full resource: stored on receipt
    assert stored(parts, "Observation", "o2") is None
    assert work(parts).polled  # the gap asked for a catch-up poll
    assert stored(parts, "Observation", "o2")["valueQuantity"]["value"] == -2.9  # type: ignore[index]


def test_duplicated_and_reordered_notifications_store_each_version_once(
    app: tuple[Parts, TestClient], ehr: RunningStandIn
) -> None:
    parts, client = app
    url = parts.core.settings.database_url.get_secret_value()
    assert post(client, notification("handshake", 0, [])).status_code == 200
    old = ehr.app.put(observation("o1", value="-2.5"))
    new = ehr.app.put({**observation("o1", value="-2.7"), "meta": old["meta"]})
    # Event 2 (the newer version) arrives first, then event 2 again, then the late event 1 with the older version.
    for event, body in [(2, new), (2, new), (1, old)]:
        answer = post(client, notification("event-notification", 2, [(event, "Observation/o1")], (body,)), WITH_TOKEN)
        assert answer.status_code == 200, answer.text
    assert stored(parts, "Observation", "o1")["valueQuantity"]["value"] == -2.7  # type: ignore[index]
    assert query_one(url, "SELECT count(*) FROM resource_history") == 0
    assert query_one(url, "SELECT changed_seq FROM patient_change WHERE patient_id = 'p1'") == 1
    work(parts)  # the catch-up poll reads the current version again: no new version, no new outbox work
    assert stored(parts, "Observation", "o1")["meta"]["versionId"] == "1"  # type: ignore[index]
    assert query_one(url, "SELECT changed_seq FROM patient_change WHERE patient_id = 'p1'") == 1


def test_a_bad_secret_is_refused_and_nothing_is_stored(app: tuple[Parts, TestClient]) -> None:
    parts, client = app
    before = table_counts(parts.core.settings.database_url.get_secret_value())
    for headers in (
        {**FROM_EHR, "Authorization": "Bearer not-the-secret"},
        FHIR_JSON,
    ):
        answer = post(
            client, notification("event-notification", 1, [(1, "Observation/o1")], (observation("o1"),)), headers
        )
        assert answer.status_code == 401
        assert answer.json()["resourceType"] == "OperationOutcome"
        assert answer.headers["www-authenticate"].startswith("Bearer")
        put = client.put(f"{HOOK}/Observation/o1", content=json.dumps(observation("o1")), headers=headers)
        assert put.status_code == 401
    assert table_counts(parts.core.settings.database_url.get_secret_value()) == before
    assert query_one(parts.core.settings.database_url.get_secret_value(), "SELECT count(*) FROM subscription_feed") == 0
    # An integration client's own token is accepted too; a coordinator's is not.
    token = {"Authorization": "Bearer test-integration", **FHIR_JSON}
    assert post(client, None, token).status_code == 200
    coordinator = {"Authorization": "Bearer test-coordinator"}
    assert post(client, None, coordinator).status_code == 403


def test_the_periodic_poll_alone_catches_everything(app: tuple[Parts, TestClient], ehr: RunningStandIn) -> None:
    parts, _ = app
    worker = parts.feed_worker
    worker._settings = dataclasses.replace(worker._settings, page_size=2)  # several pages
    ehr.app.put(patient("p1"))
    for n in range(5):
        ehr.app.put(observation(f"o{n}", value=f"-{n}.5"))
    done = work(parts)
    assert done.polled
    for n in range(5):
        assert stored(parts, "Observation", f"o{n}") is not None
    pages = [r for r in ehr.app.requests if r.path == "/Observation" and r.method == "GET"]
    assert len(pages) == 3
    assert "_lastUpdated=ge" in pages[0].query
    assert "Observation" in parts.feeds.high_water()
    assert not work(parts).polled  # not due again until the interval has passed


def test_subscribe_twice_makes_one_subscription_per_criteria(
    services: LocalServices, database_url: str, ehr: RunningStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    ehr.app.reset()
    values = {
        **feed_settings(ehr),
        "database_url": database_url,
        "redis_url": services.redis_url,
        "environment": "test",
        "subscription_topic": TOPIC,
    }
    for key, value in values.items():
        monkeypatch.setenv(f"REFRACTURE_{key.upper()}", str(value))
    get_settings.cache_clear()
    try:
        assert main(["subscribe"]) == 0
        assert main(["subscribe"]) == 0
        rest_hooks = ehr.app.resources("Subscription")
        # No backport in the CapabilityStatement: one R4 rest-hook per input type, each registered once.
        assert len(rest_hooks) == 9
        assert {s["criteria"] for s in rest_hooks} >= {"Observation?", "Procedure?", "MedicationAdministration?"}
        channel = rest_hooks[0]["channel"]
        assert channel["endpoint"] == "https://refracture.example.org/fhir/$subscription-hook/ehr"
        # Each run made a fresh secret (never the configured one), the same for every Subscription of the run.
        [header] = channel["header"]
        assert header.startswith("Authorization: Bearer ")
        assert SECRET not in header
        assert {s["channel"]["header"][0] for s in rest_hooks} == {header}
        assert len([r for r in ehr.app.requests if r.method == "POST" and r.path == "/Subscription"]) == 9
        # An EHR that advertises the backport gets one topic-based Subscription instead.
        ehr.app.reset()
        ehr.app.capability = {**ehr.app.capability, "instantiates": [BACKPORT_SERVER]}
        assert main(["subscribe"]) == 0
        assert main(["subscribe"]) == 0
        topics = ehr.app.resources("Subscription")
        assert len(topics) == 1
        assert topics[0]["criteria"] == TOPIC
        assert query_one(database_url, "SELECT count(*) FROM subscription_high_water") == 9
    finally:
        get_settings.cache_clear()


def test_subscribe_rotates_the_secret(
    services: LocalServices, database_url: str, ehr: RunningStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    ehr.app.reset()
    values = {**feed_settings(ehr), "database_url": database_url, "redis_url": services.redis_url}
    for key, value in {**values, "environment": "test"}.items():
        monkeypatch.setenv(f"REFRACTURE_{key.upper()}", str(value))
    get_settings.cache_clear()
    clock = ManualClock(datetime.now(UTC))  # `refracture subscribe` runs on the real clock
    settings = make_settings(services, database_url, **feed_settings(ehr))
    parts = build_parts(settings, queue=RecordingQueue(), clock=clock)
    try:
        with TestClient(api_app(parts), raise_server_exceptions=False) as client:

            def answer(secret: str) -> int:
                headers = {"Authorization": f"Bearer {secret}", **FHIR_JSON}
                return int(post(client, None, headers).status_code)

            assert answer(SECRET) == 200  # before any `refracture subscribe`: the configured secret
            assert main(["subscribe"]) == 0
            first = ehr.app.resources("Subscription")[0]["channel"]["header"][0].removeprefix("Authorization: Bearer ")
            assert answer(first) == 200
            assert answer(SECRET) == 401  # rotated away
            ehr.app.capability = {**ehr.app.capability, "status": "active"}  # any change: the channel is re-sent
            assert main(["subscribe"]) == 0
            second = ehr.app.resources("Subscription")[0]["channel"]["header"][0].removeprefix("Authorization: Bearer ")
            assert second != first
            assert answer(second) == 200
            assert answer(first) == 200  # notifications already on their way, for the grace period
            clock.now += timedelta(seconds=parts.core.settings.subscription_secret_grace_s + 120)
            assert answer(first) == 401
            assert answer(second) == 200
        assert (
            query_one(database_url, "SELECT count(*) FROM subscription_secret WHERE secret_hash = %s", second.encode())
            == 0
        )
    finally:
        parts.close()
        get_settings.cache_clear()
