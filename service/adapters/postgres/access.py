"""What patient scoping reads: a patient's managing Organization, an alert's patient, break-the-glass grants."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from service.adapters.postgres.errors import pooled_transaction

__all__ = ["PostgresAccess"]


class PostgresAccess:
    """Implements the PatientAccess port (service/usecases/ports/reads.py)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def organization_of(self, patient_id: str) -> str | None:
        """The stored Patient's managingOrganization reference (None: no Patient, or none named)."""
        with pooled_transaction(self._pool) as conn:
            row: Any = conn.execute(
                "SELECT body -> 'managingOrganization' ->> 'reference' AS org FROM resource "
                "WHERE resource_type = 'Patient' AND id = %s",
                (patient_id,),
            ).fetchone()
        return None if row is None else row["org"]

    def patient_of_alert(self, alert_id: str) -> str | None:
        """The patient an alert is about (None: no such alert, or not a valid id)."""
        with pooled_transaction(self._pool) as conn:
            row: Any = conn.execute("SELECT patient_id FROM alert WHERE id::text = %s", (alert_id,)).fetchone()
        return None if row is None else str(row["patient_id"])

    def live_grants(self, actor: str, now: datetime) -> list[str]:
        """The patients ``actor`` broke the glass for, while the grants last."""
        with pooled_transaction(self._pool) as conn:
            rows = conn.execute(
                "SELECT DISTINCT patient_id FROM break_glass WHERE actor = %s AND expires_at > %s", (actor, now)
            ).fetchall()
        return [str(r["patient_id"]) for r in rows]

    def grant(self, actor: str, patient_id: str, reason: str, now: datetime, expires_at: datetime) -> None:
        """Record a break-the-glass grant."""
        with pooled_transaction(self._pool) as conn:
            conn.execute(
                "INSERT INTO break_glass (actor, patient_id, reason, granted_at, expires_at) "
                "VALUES (%s, %s, %s, %s, %s)",
                (actor, patient_id, reason, now, expires_at),
            )


class PostgresSubscriptionSecrets:
    """See service.usecases.ports.feeds.SecretStore."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def rotate(self, feed_id: str, secret_hash: bytes, now: datetime, previous_until: datetime) -> None:
        """Make ``secret_hash`` the feed's secret; the one it replaces stays valid until ``previous_until``."""
        with pooled_transaction(self._pool) as conn:
            conn.execute(
                "INSERT INTO subscription_secret (feed_id, secret_hash, rotated_at) "
                "VALUES (%(feed)s, %(hash)s, %(now)s) "
                "ON CONFLICT (feed_id) DO UPDATE SET previous_hash = subscription_secret.secret_hash, "
                "previous_until = %(until)s, secret_hash = EXCLUDED.secret_hash, rotated_at = EXCLUDED.rotated_at",
                {"feed": feed_id, "hash": secret_hash, "now": now, "until": previous_until},
            )

    def accepted(self, feed_id: str, now: datetime) -> list[bytes] | None:
        """The hashes a notification's secret may have now; None when `refracture subscribe` never made one."""
        with pooled_transaction(self._pool) as conn:
            row: Any = conn.execute(
                "SELECT secret_hash, previous_hash, previous_until FROM subscription_secret WHERE feed_id = %s",
                (feed_id,),
            ).fetchone()
        if row is None:
            return None
        hashes = [bytes(row["secret_hash"])]
        if row["previous_hash"] is not None and row["previous_until"] is not None and row["previous_until"] > now:
            hashes.append(bytes(row["previous_hash"]))
        return hashes
