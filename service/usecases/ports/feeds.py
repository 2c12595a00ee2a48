"""Event feeds from the EHR: feed positions, fetch jobs, catch-up polls and the feed's shared secret."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from service.domain.event_feed import FeedPosition, FeedStep
from service.usecases.ports.resources import ResourceKey


@dataclass(frozen=True, slots=True)
class FetchJob:
    """A resource to read from the EHR (an id-only notification), claimed by this worker."""

    resource_type: str
    resource_id: str
    requested_at: datetime
    attempts: int


@dataclass(frozen=True, slots=True)
class PollClaim:
    """A catch-up poll this worker now runs (under a lease)."""

    started_at: datetime
    requested: bool  # asked for (ping, gap, silence), not only periodic


@dataclass(frozen=True, slots=True)
class FeedNote:
    """What a notification said of its Subscription, kept on the feed for operators."""

    kind: str
    ehr_subscription: str | None = None
    topic: str | None = None
    status: str | None = None


class FeedSession(Protocol):
    """One transaction over a feed."""

    def lock_feed(self, feed_id: str, now: datetime) -> tuple[FeedPosition, frozenset[int]]:
        """The feed's position and the event numbers above it, locked (the feed is created when new)."""

    def save_feed(self, feed_id: str, step: FeedStep | None, note: FeedNote, now: datetime) -> None:
        """Store the new position (None: only count the notification) and what it said."""

    def queue_fetches(self, keys: Sequence[ResourceKey], now: datetime) -> None:
        """Ask for these resources to be read from the EHR."""

    def request_catchup(self, reason: str, due_at: datetime) -> None:
        """Ask for a catch-up poll at (or after) ``due_at``."""


class FeedStore(Protocol):
    """The feeds, the fetch jobs and the poll state (service/adapters/postgres/subscriptions.py)."""

    def feed_session(self) -> AbstractContextManager[FeedSession]:
        """A transaction."""

    def feed_position(self, feed_id: str) -> tuple[FeedPosition, frozenset[int]]:
        """The feed's position and the numbers above it, unlocked (a new feed is at 0)."""

    def claim_fetches(self, now: datetime, lease_until: datetime, limit: int) -> list[FetchJob]:
        """Due fetch jobs (and those whose lease ran out), leased to this worker."""

    def finish_fetch(self, job: FetchJob) -> None:
        """Done: drop the row unless the resource was announced again meanwhile."""

    def retry_fetch(self, job: FetchJob, next_attempt_at: datetime, error: str) -> None:
        """Try again later."""

    def fail_fetch(self, job: FetchJob, error: str) -> None:
        """Give up on it (kept for operators; a new notification revives it)."""

    def note_silent_feeds(self, silent_since: datetime, now: datetime) -> list[str]:
        """Topic feeds with no notification since ``silent_since`` not yet noted as silent; notes them."""

    def claim_poll(self, now: datetime, periodic_before: datetime | None, lease_until: datetime) -> PollClaim | None:
        """The poll, if asked for or (with ``periodic_before``) not run since then, and no other worker runs it."""

    def high_water(self) -> dict[str, datetime]:
        """The newest ``meta.lastUpdated`` read so far, per resource type."""

    def save_high_water(self, resource_type: str, mark: datetime) -> None:
        """Move a type's mark forward."""

    def ensure_high_water(self, resource_types: Sequence[str], mark: datetime) -> None:
        """Set the marks of types that have none yet."""

    def finish_poll(self, claim: PollClaim, now: datetime, error: str | None) -> None:
        """Release the poll; on success the requests made before it started are answered."""


class SecretStore(Protocol):
    """Where the feed's shared secret is kept (as a hash)."""

    def rotate(self, feed_id: str, secret_hash: bytes, now: datetime, previous_until: datetime) -> None:
        """Make this the feed's secret; the previous one stays valid until ``previous_until``."""
