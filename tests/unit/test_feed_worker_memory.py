"""The NotificationReceiver and the FeedWorker over the in-memory feed store (tests/support/fakes/feeds.py) and the
in-memory ingest store: fetch jobs, duplicate event numbers, gaps, catch-up polls and heartbeat silence.

Mirrors tests/integration/test_subscriptions.py; the SQL itself is tested there.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest

from service.fhir.normalise import Normaliser
from service.fhir.subscriptions import Notification, NotificationEvent
from service.fhir.terminology import Terminology
from service.platform.errors import EhrRejected, EhrTemporaryError
from service.usecases.ingest import Ingestor
from service.usecases.ports.ehr import EhrAnswer
from service.usecases.subscriptions import FeedSettings, FeedWorker, NotificationReceiver
from tests.support.clock import ManualClock
from tests.support.fakes import MemoryFeedStore, MemoryIngestStore
from tests.support.records import t_score

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
FEED = "feed-1"


class ReadingEhr:
    """The EHR's reads for the feed worker: GET /{type}/{id} and the _lastUpdated search (faults by status)."""

    base_url = "https://ehr.example/fhir"

    def __init__(self) -> None:
        self.held: dict[tuple[str, str], dict[str, Any]] = {}
        self.faults: list[int] = []  # statuses the next reads fail with
        self.paths: list[str] = []

    def put(self, resource: dict[str, Any], updated: datetime) -> None:
        self.held[resource["resourceType"], resource["id"]] = {**resource, "meta": {"lastUpdated": updated.isoformat()}}

    def metadata(self) -> Any:
        return {}

    def close(self) -> None:
        pass

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> EhrAnswer:
        assert method == "GET"
        self.paths.append(path)
        if self.faults:
            status = self.faults.pop(0)
            if status >= 500:
                raise EhrTemporaryError(f"the EHR answered {status}")
            raise EhrRejected(f"the EHR answered {status}", status)
        where, _, query = path.strip("/").partition("?")
        if query:
            since = datetime.fromisoformat(unquote(parse_qs(query)["_lastUpdated"][0])[2:])
            found = [
                r
                for (t, _), r in self.held.items()
                if t == where and datetime.fromisoformat(r["meta"]["lastUpdated"]) >= since
            ]
            return EhrAnswer(200, {}, {"resourceType": "Bundle", "entry": [{"resource": r} for r in found]})
        resource_type, _, rid = where.partition("/")
        if (resource_type, unquote(rid)) not in self.held:
            raise EhrRejected("the EHR answered 404", 404)
        return EhrAnswer(200, {}, self.held[resource_type, unquote(rid)])


class Setup:
    def __init__(self, silence_s: float | None = None) -> None:
        self.clock = ManualClock(T0)
        self.feeds = MemoryFeedStore()
        self.ingest = MemoryIngestStore()
        self.ingestor = Ingestor(self.ingest, Normaliser(Terminology()), self.clock)
        self.ehr = ReadingEhr()
        self.rung: list[list[str]] = []
        self.receiver = NotificationReceiver(self.feeds, self.ingestor, self.clock)
        settings = FeedSettings(("Patient", "Observation"), 0, 3600, silence_s)
        self.worker = FeedWorker(
            self.feeds, self.ehr, self.ingestor, self.ring, self.clock, settings, jitter=lambda: 0.0
        )

    def ring(self, patients: Sequence[str]) -> None:
        self.rung.append(list(patients))


@pytest.fixture
def setup() -> Setup:
    return Setup()


def patient(pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1950-02-03"}


def events(
    *numbers: int, focus: tuple[str, str] | None = ("Observation", "o1"), since: int | None = None
) -> Notification:
    return Notification(
        "event-notification",
        since if since is not None else max(numbers),
        tuple(NotificationEvent(n, focus) for n in numbers),
        topic="http://example.org/topic",
    )


def test_an_id_only_notification_is_fetched_by_the_worker_once(setup: Setup) -> None:
    setup.ehr.put(t_score("o1"), T0)
    receipt = setup.receiver.notification(FEED, events(1))
    assert (receipt.fetches, receipt.catchup) == (1, False)
    assert list(setup.feeds.tables.fetches) == [("Observation", "o1")]
    done = setup.worker.work()
    assert done.fetched == 1
    assert ("Observation", "o1") in setup.ingest.tables.resources
    assert setup.feeds.tables.fetches == {}
    assert setup.rung == [["p1"]]
    assert setup.worker.work().fetched == 0


def test_duplicate_and_reordered_event_numbers_are_handled_once(setup: Setup) -> None:
    assert setup.receiver.notification(FEED, events(1)).fetches == 1
    again = setup.receiver.notification(FEED, events(1))
    assert (again.duplicates, again.fetches) == (1, 0)
    third = setup.receiver.notification(FEED, events(3, focus=("Observation", "o3")))
    assert third.catchup  # number 2 is missing
    assert setup.feeds.tables.poll.reason == "gap"
    row = setup.feeds.tables.feeds[FEED]
    assert (row.position.contiguous, row.position.highest) == (3, 3)  # the catch-up poll covers number 2
    late = setup.receiver.notification(FEED, events(2, focus=("Observation", "o2"), since=3))
    assert (late.duplicates, late.fetches, late.catchup) == (1, 0, False)
    assert sorted(setup.feeds.tables.fetches) == [("Observation", "o1"), ("Observation", "o3")]


def test_a_fetch_the_ehr_cannot_answer_now_is_tried_again_later(setup: Setup) -> None:
    setup.ehr.put(t_score("o1"), T0)
    setup.receiver.notification(FEED, events(1))
    setup.ehr.faults = [503]
    assert setup.worker.work().fetched == 0
    row = setup.feeds.tables.fetches["Observation", "o1"]
    assert (row.attempts, row.lease_until) == (1, None)
    assert row.next_attempt_at > T0
    assert setup.worker.work().fetched == 0  # not due yet
    setup.clock.now = row.next_attempt_at
    assert setup.worker.work().fetched == 1


def test_a_resource_gone_at_the_ehr_is_dropped_and_a_refusal_kept_until_announced_again(setup: Setup) -> None:
    setup.receiver.notification(FEED, events(1))  # o1 never existed at the EHR: 404
    setup.worker.work()
    assert setup.feeds.tables.fetches == {}
    setup.receiver.notification(FEED, events(2, focus=("Observation", "o2")))
    setup.ehr.faults = [403]
    setup.worker.work()
    failed = setup.feeds.tables.fetches["Observation", "o2"]
    assert failed.failed
    assert setup.worker.work().fetched == 0  # kept for operators, not tried again
    setup.ehr.put(t_score("o2"), T0)
    setup.clock.now += timedelta(seconds=1)
    setup.receiver.notification(FEED, events(3, focus=("Observation", "o2")))  # revives it
    assert setup.worker.work().fetched == 1


def test_a_notification_during_a_fetch_keeps_the_newer_request(setup: Setup) -> None:
    setup.ehr.put(t_score("o1"), T0)
    setup.receiver.notification(FEED, events(1))
    (job,) = setup.feeds.claim_fetches(T0, T0 + timedelta(minutes=5), 10)
    setup.clock.now += timedelta(seconds=1)
    setup.receiver.notification(FEED, events(2))  # announced again while it is read
    setup.feeds.finish_fetch(job)
    row = setup.feeds.tables.fetches["Observation", "o1"]
    assert row.lease_until is None  # released, ready to run
    assert setup.worker.work().fetched == 1


def test_a_ping_makes_the_worker_poll_from_the_high_water_mark(setup: Setup) -> None:
    setup.ehr.put(patient(), T0 - timedelta(minutes=10))
    setup.ehr.put(t_score("o1"), T0 - timedelta(minutes=5))
    assert setup.worker.work().polled is False  # no periodic poll, nothing asked for
    assert setup.receiver.ping(FEED).catchup
    done = setup.worker.work()
    assert (done.polled, done.read) == (True, 2)
    assert setup.feeds.tables.high_water["Observation"] == T0 - timedelta(minutes=5)
    assert setup.feeds.tables.poll.due_at is None  # the request is answered
    assert setup.rung == [["p1"]]
    assert setup.worker.work().polled is False


def test_a_catchup_asked_for_while_the_poll_runs_outlives_it(setup: Setup) -> None:
    setup.receiver.ping(FEED)
    claim = setup.feeds.claim_poll(T0, None, T0 + timedelta(minutes=5))
    assert claim is not None
    assert claim.requested
    assert setup.feeds.claim_poll(T0, None, T0 + timedelta(minutes=5)) is None  # another worker polls already
    setup.clock.now += timedelta(seconds=1)
    setup.receiver.ping(FEED)
    setup.feeds.finish_poll(claim, setup.clock.now, None)
    assert setup.feeds.tables.poll.due_at == setup.clock.now  # still due: the next run polls again


def test_heartbeat_silence_asks_for_one_catchup_per_silence() -> None:
    setup = Setup(silence_s=120)
    setup.receiver.notification(FEED, Notification("heartbeat", 0, topic="http://example.org/topic"))
    setup.clock.now += timedelta(seconds=60)
    assert setup.worker.work().polled is False
    setup.clock.now += timedelta(seconds=61)
    assert setup.worker.work().polled is True
    assert setup.feeds.tables.poll.reason == "silence"
    setup.clock.now += timedelta(minutes=10)
    assert setup.worker.work().polled is False  # noted once until the feed speaks again
