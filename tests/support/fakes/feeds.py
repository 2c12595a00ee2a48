"""The event-feed ports (FeedStore, FeedSession) in memory: feed positions, fetch jobs, the catch-up poll, the marks.

Each method does what its query in service/adapters/postgres/subscriptions.sql does (with the adapter's own steps
in service/adapters/postgres/subscriptions.py); a feed session that raises leaves everything as it was. The SQL
itself is tested in tests/integration/test_subscriptions.py.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from service.domain.event_feed import FeedPosition, FeedStep
from service.usecases.ports.feeds import FeedNote, FeedSession, FeedStore, FetchJob, PollClaim
from service.usecases.ports.resources import ResourceKey

__all__ = ["FeedRow", "FeedTables", "FetchRow", "MemoryFeedStore", "PollRow"]

_MAX_ERROR = 500


@dataclass
class FeedRow:
    """A ``subscription_feed`` row and its ``subscription_event`` numbers."""

    created_at: datetime
    position: FeedPosition = field(default_factory=FeedPosition)
    events: set[int] = field(default_factory=set)
    notifications: int = 0
    last_kind: str | None = None
    last_notification_at: datetime | None = None
    last_topic_at: datetime | None = None
    silence_noted_at: datetime | None = None
    ehr_subscription: str | None = None
    topic: str | None = None
    ehr_status: str | None = None


@dataclass
class FetchRow:
    """A ``subscription_fetch`` row."""

    requested_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    failed: bool = False
    last_error: str | None = None
    lease_until: datetime | None = None


@dataclass
class PollRow:
    """The one ``subscription_poll`` row."""

    due_at: datetime | None = None
    reason: str | None = None
    lease_until: datetime | None = None
    started_at: datetime | None = None
    polled_at: datetime | None = None
    last_error: str | None = None


@dataclass
class FeedTables:
    """Every table of the feeds; tests read and set them directly."""

    feeds: dict[str, FeedRow] = field(default_factory=dict)
    fetches: dict[ResourceKey, FetchRow] = field(default_factory=dict)  # in insertion order
    poll: PollRow = field(default_factory=PollRow)
    high_water: dict[str, datetime] = field(default_factory=dict)


class MemoryFeedStore:
    """The FeedStore port over FeedTables."""

    def __init__(self) -> None:
        self.tables = FeedTables()
        self._lock = threading.RLock()

    @contextmanager
    def _transaction(self) -> Iterator[FeedTables]:
        with self._lock:
            working = copy.deepcopy(self.tables)
            yield working
            self.tables = working

    @contextmanager
    def feed_session(self) -> Iterator[FeedSession]:
        with self._transaction() as working:
            yield _FeedSession(working)

    def feed_position(self, feed_id: str) -> tuple[FeedPosition, frozenset[int]]:
        row = self.tables.feeds.get(feed_id)
        return (row.position, frozenset(row.events)) if row else (FeedPosition(), frozenset())

    def claim_fetches(self, now: datetime, lease_until: datetime, limit: int) -> list[FetchJob]:
        with self._transaction() as t:
            due = sorted(
                (
                    (key, row)
                    for key, row in t.fetches.items()
                    if not row.failed
                    and row.next_attempt_at <= now
                    and (row.lease_until is None or row.lease_until < now)
                ),
                key=lambda item: item[1].next_attempt_at,
            )[:limit]
            for _, row in due:
                row.lease_until = lease_until
            return [FetchJob(k[0], k[1], r.requested_at, r.attempts) for k, r in due]

    def finish_fetch(self, job: FetchJob) -> None:
        with self._transaction() as t:
            key = (job.resource_type, job.resource_id)
            if (row := t.fetches.get(key)) is None:
                return
            if row.requested_at == job.requested_at:
                del t.fetches[key]
            else:  # announced again while it was read: the newer request stays, ready to run
                row.lease_until = None

    def retry_fetch(self, job: FetchJob, next_attempt_at: datetime, error: str) -> None:
        with self._transaction() as t:
            if (row := t.fetches.get((job.resource_type, job.resource_id))) is not None:
                row.attempts += 1
                row.next_attempt_at, row.last_error, row.lease_until = next_attempt_at, error[:_MAX_ERROR], None

    def fail_fetch(self, job: FetchJob, error: str) -> None:
        with self._transaction() as t:
            if (row := t.fetches.get((job.resource_type, job.resource_id))) is None:
                return
            if row.requested_at == job.requested_at:
                row.attempts += 1
                row.failed, row.last_error = True, error[:_MAX_ERROR]
            row.lease_until = None

    def note_silent_feeds(self, silent_since: datetime, now: datetime) -> list[str]:
        with self._transaction() as t:
            silent = [
                feed_id
                for feed_id, row in t.feeds.items()
                if row.last_topic_at is not None
                and row.last_topic_at < silent_since
                and (row.silence_noted_at is None or row.silence_noted_at < row.last_topic_at)
            ]
            for feed_id in silent:
                t.feeds[feed_id].silence_noted_at = now
            return sorted(silent)

    def claim_poll(self, now: datetime, periodic_before: datetime | None, lease_until: datetime) -> PollClaim | None:
        with self._transaction() as t:
            poll = t.poll
            free = poll.lease_until is None or poll.lease_until < now
            asked = poll.due_at is not None and poll.due_at <= now
            periodic = periodic_before is not None and (poll.polled_at is None or poll.polled_at <= periodic_before)
            if not (free and (asked or periodic)):
                return None
            poll.lease_until, poll.started_at = lease_until, now
            return PollClaim(now, asked)

    def high_water(self) -> dict[str, datetime]:
        return dict(self.tables.high_water)

    def save_high_water(self, resource_type: str, mark: datetime) -> None:
        with self._transaction() as t:
            t.high_water[resource_type] = max(t.high_water.get(resource_type, mark), mark)

    def ensure_high_water(self, resource_types: Sequence[str], mark: datetime) -> None:
        with self._transaction() as t:
            for resource_type in resource_types:
                t.high_water.setdefault(resource_type, mark)

    def finish_poll(self, claim: PollClaim, now: datetime, error: str | None) -> None:
        del now
        with self._transaction() as t:
            poll = t.poll
            if poll.started_at != claim.started_at:
                return
            poll.lease_until = None
            if error is None:
                poll.polled_at, poll.last_error = poll.started_at, None
                # requests made before the poll started are answered; those made during it stay due
                if poll.due_at is not None and poll.due_at <= poll.started_at:
                    poll.due_at = None
            else:
                poll.last_error = error[:_MAX_ERROR]


class _FeedSession:
    def __init__(self, tables: FeedTables) -> None:
        self._t = tables

    def lock_feed(self, feed_id: str, now: datetime) -> tuple[FeedPosition, frozenset[int]]:
        row = self._t.feeds.setdefault(feed_id, FeedRow(now))
        return row.position, frozenset(row.events)

    def save_feed(self, feed_id: str, step: FeedStep | None, note: FeedNote, now: datetime) -> None:
        row = self._t.feeds[feed_id]
        row.notifications += 1
        row.last_kind, row.last_notification_at = note.kind, now
        if step is None:
            return
        row.position, row.last_topic_at = step.position, now
        row.ehr_subscription = note.ehr_subscription or row.ehr_subscription
        row.topic = note.topic or row.topic
        row.ehr_status = note.status or row.ehr_status
        if step.restarted:
            row.events.clear()
        row.events = {n for n in row.events if n > step.position.contiguous} | set(step.pending)

    def queue_fetches(self, keys: Sequence[ResourceKey], now: datetime) -> None:
        for key in sorted(keys):
            row = self._t.fetches.get(key)
            if row is None:
                self._t.fetches[key] = FetchRow(now, now)
                continue
            if row.failed:  # a new notification revives a failed fetch from scratch
                row.attempts, row.next_attempt_at = 0, now
            else:
                row.next_attempt_at = min(row.next_attempt_at, now)
            row.requested_at, row.failed, row.last_error = now, False, None

    def request_catchup(self, reason: str, due_at: datetime) -> None:
        poll = self._t.poll
        # while a poll runs, a request made now must outlive it (it may announce a change the poll passed by)
        poll.due_at = due_at if poll.lease_until is not None else min(poll.due_at or due_at, due_at)
        poll.reason = reason


def _typed(store: MemoryFeedStore) -> FeedStore:
    return store  # mypy checks the fake against the port here
