"""What patient scoping reads: a patient's managing Organization, an alert's patient, break-the-glass grants."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from service.adapters.postgres.errors import pooled_transaction

__all__ = ["PostgresAccess"]


class PostgresAccess:
    """See service.usecases.access.AccessStore."""

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
