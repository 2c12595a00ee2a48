"""The event feeds in PostgreSQL (migration 0008): feed positions, fetch jobs, the catch-up poll and its marks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg_pool import ConnectionPool

from service.adapters.postgres.errors import pooled_transaction
from service.adapters.postgres.queries import query
from service.domain.event_feed import FeedPosition, FeedStep
from service.usecases.ports.feeds import FeedNote, FetchJob, PollClaim
from service.usecases.ports.resources import ResourceKey

__all__ = ["PostgresFeedStore"]

Conn = psycopg.Connection[dict[str, Any]]
_MAX_ERROR = 500  # the EHR's message, cut: enough to act on, never a whole answer


def _query(name: str) -> LiteralString:
    return query(name, "subscriptions.sql")


class PostgresFeedSession:
    """See service.usecases.ports.feeds.FeedSession."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    def lock_feed(self, feed_id: str, now: datetime) -> tuple[FeedPosition, frozenset[int]]:
        """See FeedSession."""
        self._conn.execute(_query("ensure_feed"), {"feed_id": feed_id, "now": now})
        row = self._conn.execute(_query("lock_feed"), {"feed_id": feed_id}).fetchone()
        assert row is not None
        above = self._conn.execute(_query("events_above"), {"feed_id": feed_id}).fetchall()
        return FeedPosition(row["contiguous"], row["highest"]), frozenset(r["event_number"] for r in above)

    def save_feed(self, feed_id: str, step: FeedStep | None, note: FeedNote, now: datetime) -> None:
        """See FeedSession."""
        if step is None:
            self._conn.execute(_query("count_notification"), {"feed_id": feed_id, "kind": note.kind, "now": now})
            return
        position = step.position
        self._conn.execute(
            _query("save_feed"),
            {
                "feed_id": feed_id,
                "contiguous": position.contiguous,
                "highest": position.highest,
                "kind": note.kind,
                "now": now,
                "ehr_subscription": note.ehr_subscription,
                "topic": note.topic,
                "status": note.status,
            },
        )
        if step.restarted:
            self._conn.execute(_query("drop_events"), {"feed_id": feed_id})
        self._conn.execute(_query("drop_events_upto"), {"feed_id": feed_id, "contiguous": position.contiguous})
        for number in sorted(step.pending):
            self._conn.execute(_query("insert_event"), {"feed_id": feed_id, "number": number, "now": now})

    def queue_fetches(self, keys: Sequence[ResourceKey], now: datetime) -> None:
        """See FeedSession."""
        for resource_type, resource_id in sorted(keys):
            self._conn.execute(
                _query("queue_fetch"), {"resource_type": resource_type, "resource_id": resource_id, "now": now}
            )

    def request_catchup(self, reason: str, due_at: datetime) -> None:
        """See FeedSession."""
        self._conn.execute(_query("request_catchup"), {"reason": reason, "due_at": due_at})


class PostgresFeedStore:
    """See service.usecases.ports.feeds.FeedStore."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def _connection(self) -> contextlib.AbstractContextManager[Conn]:
        return pooled_transaction(self._pool)

    @contextlib.contextmanager
    def feed_session(self) -> Iterator[PostgresFeedSession]:
        """See FeedStore."""
        with self._connection() as conn:
            yield PostgresFeedSession(conn)

    def feed_position(self, feed_id: str) -> tuple[FeedPosition, frozenset[int]]:
        """See FeedStore."""
        with self._connection() as conn:
            row = conn.execute(_query("feed_position"), {"feed_id": feed_id}).fetchone()
            above = conn.execute(_query("events_above"), {"feed_id": feed_id}).fetchall()
        position = FeedPosition(row["contiguous"], row["highest"]) if row else FeedPosition()
        return position, frozenset(r["event_number"] for r in above)

    def claim_fetches(self, now: datetime, lease_until: datetime, limit: int) -> list[FetchJob]:
        """See FeedStore."""
        with self._connection() as conn:
            rows = conn.execute(
                _query("claim_fetches"), {"now": now, "lease_until": lease_until, "limit": limit}
            ).fetchall()
        return [FetchJob(r["resource_type"], r["resource_id"], r["requested_at"], r["attempts"]) for r in rows]

    def finish_fetch(self, job: FetchJob) -> None:
        """See FeedStore."""
        key = {"resource_type": job.resource_type, "resource_id": job.resource_id}
        with self._connection() as conn:
            deleted = conn.execute(_query("finish_fetch"), {**key, "requested_at": job.requested_at}).rowcount
            if not deleted:  # announced again while it was read: the newer request stays, ready to run
                conn.execute(_query("release_fetch"), key)

    def retry_fetch(self, job: FetchJob, next_attempt_at: datetime, error: str) -> None:
        """See FeedStore."""
        with self._connection() as conn:
            conn.execute(
                _query("retry_fetch"),
                {
                    "resource_type": job.resource_type,
                    "resource_id": job.resource_id,
                    "next_attempt_at": next_attempt_at,
                    "error": error[:_MAX_ERROR],
                },
            )

    def fail_fetch(self, job: FetchJob, error: str) -> None:
        """See FeedStore."""
        key = {"resource_type": job.resource_type, "resource_id": job.resource_id}
        with self._connection() as conn:
            failed = conn.execute(
                _query("fail_fetch"), {**key, "requested_at": job.requested_at, "error": error[:_MAX_ERROR]}
            ).rowcount
            if not failed:
                conn.execute(_query("release_fetch"), key)

    def note_silent_feeds(self, silent_since: datetime, now: datetime) -> list[str]:
        """See FeedStore."""
        with self._connection() as conn:
            rows = conn.execute(_query("note_silent_feeds"), {"silent_since": silent_since, "now": now}).fetchall()
        return sorted(r["feed_id"] for r in rows)

    def claim_poll(self, now: datetime, periodic_before: datetime | None, lease_until: datetime) -> PollClaim | None:
        """See FeedStore."""
        with self._connection() as conn:
            row = conn.execute(
                _query("claim_poll"), {"now": now, "periodic_before": periodic_before, "lease_until": lease_until}
            ).fetchone()
        if row is None:
            return None
        return PollClaim(row["started_at"], row["due_at"] is not None and row["due_at"] <= now)

    def high_water(self) -> dict[str, datetime]:
        """See FeedStore."""
        with self._connection() as conn:
            rows = conn.execute(_query("high_water")).fetchall()
        return {r["resource_type"]: r["high_water"] for r in rows}

    def save_high_water(self, resource_type: str, mark: datetime) -> None:
        """See FeedStore."""
        with self._connection() as conn:
            conn.execute(_query("save_high_water"), {"resource_type": resource_type, "mark": mark})

    def ensure_high_water(self, resource_types: Sequence[str], mark: datetime) -> None:
        """See FeedStore."""
        with self._connection() as conn:
            for resource_type in resource_types:
                conn.execute(_query("ensure_high_water"), {"resource_type": resource_type, "mark": mark})

    def finish_poll(self, claim: PollClaim, now: datetime, error: str | None) -> None:
        """See FeedStore."""
        with self._connection() as conn:
            if error is None:
                conn.execute(_query("finish_poll_ok"), {"started_at": claim.started_at})
            else:
                conn.execute(
                    _query("finish_poll_failed"), {"started_at": claim.started_at, "error": error[:_MAX_ERROR]}
                )
