"""The notification digests' candidates and the record of what was sent, in PostgreSQL (migration 0021)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, LiteralString

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from service.adapters.postgres.errors import pooled_transaction
from service.adapters.postgres.queries import query
from service.domain.alert_types import AlertType
from service.domain.notifications import Digest, DigestAlert, DigestPatient
from service.usecases.ports.notifications import Candidates, StoredNotification

__all__ = ["PostgresNotificationStore"]

Conn = psycopg.Connection[dict[str, Any]]

_CODES = [
    AlertType.DENOSUMAB_DOSE_DUE.value,
    AlertType.DENOSUMAB_OVERDUE.value,
    AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON.value,
    AlertType.TREATMENT_GAP.value,
]


def _query(name: str) -> LiteralString:
    return query(name, "notifications.sql")


def _stored(row: dict[str, Any]) -> StoredNotification:
    return StoredNotification(
        id=row["id"],
        owner=row["owner"],
        channel=row["channel"],
        day=row["day"],
        alert_ids=list(row["alert_ids"]),
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        subject=row["subject"],
        body=row["body"],
        payload=dict(row["payload"]),
    )


class PostgresNotificationStore:
    """See usecases.notify.NotificationStore."""

    def __init__(self, pool: ConnectionPool, lease_s: float = 600.0) -> None:
        self._pool = pool
        self._lease = timedelta(seconds=lease_s)

    def _transaction(self) -> contextlib.AbstractContextManager[Conn]:
        return pooled_transaction(self._pool)

    def candidates(self) -> Candidates:
        """See NotificationStore."""
        with self._transaction() as conn:
            alerts = conn.execute(_query("digest_alerts"), {"codes": _CODES}).fetchall()
            high = conn.execute(_query("digest_high_risk")).fetchall()
        return Candidates(
            alerts=[
                DigestAlert(
                    r["alert_id"], r["patient_id"], r["code"], r["due_date"], r["organization"], r["name"], r["mrn"]
                )
                for r in alerts
            ],
            high_risk=[DigestPatient(r["patient_id"], r["organization"], r["name"], r["mrn"]) for r in high],
        )

    def recorded(self, owner: str, channel: str, day: date, keys: Sequence[str]) -> set[str]:
        """See NotificationStore."""
        with self._transaction() as conn:
            rows = conn.execute(
                _query("items_already_sent"), {"owner": owner, "channel": channel, "day": day, "items": list(keys)}
            ).fetchall()
        return {r["item"] for r in rows}

    def claim(self, channel: str, digest: Digest, now: datetime) -> StoredNotification | None:
        """See NotificationStore. Runs for one owner, channel and day are serialised by an advisory lock."""
        key = {"owner": digest.owner, "channel": channel, "day": digest.day}
        with self._transaction() as conn:
            conn.execute(_query("lock_owner_day"), key)
            taken = conn.execute(_query("items_already_sent"), {**key, "items": list(digest.keys)}).fetchall()
            if any(r["item"] in digest.keys for r in taken):
                return None
            row = conn.execute(
                _query("insert_notification"),
                {
                    **key,
                    "alert_ids": list(digest.keys),
                    "subject": digest.subject,
                    "body": digest.text,
                    "payload": Jsonb(digest.payload),
                    "now": now,
                    "leased_until": now + self._lease,
                },
            ).fetchone()
            assert row is not None
            with conn.cursor() as cursor:
                cursor.executemany(
                    _query("insert_notification_item"), [{**key, "item": k, "id": row["id"]} for k in digest.keys]
                )
        return StoredNotification(
            id=row["id"],
            owner=digest.owner,
            channel=channel,
            day=digest.day,
            alert_ids=list(digest.keys),
            status="pending",
            attempts=0,
            last_error=None,
            subject=digest.subject,
            body=digest.text,
            payload=digest.payload,
        )

    def take_unsent(self, day: date, now: datetime) -> list[StoredNotification]:
        """See NotificationStore."""
        params = {"day": day, "now": now, "leased_until": now + self._lease}
        with self._transaction() as conn:
            rows = conn.execute(_query("take_unsent_notifications"), params).fetchall()
        return sorted((_stored(r) for r in rows), key=lambda n: n.id)

    def mark(
        self, notification_id: int, status: str, attempts: int, last_error: str | None, now: datetime, *, final: bool
    ) -> None:
        """See NotificationStore."""
        params = {
            "id": notification_id,
            "status": status,
            "attempts": attempts,
            "last_error": last_error,
            "now": now,
            "final": final,
        }
        with self._transaction() as conn:
            conn.execute(_query("mark_notification"), params)

    def of_day(self, day: date) -> list[StoredNotification]:
        """See NotificationStore."""
        with self._transaction() as conn:
            return [_stored(r) for r in conn.execute(_query("notifications_of_day"), {"day": day}).fetchall()]
