"""Sign-in sessions and pending OpenID Connect sign-ins in PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from service.adapters.postgres.errors import pooled_transaction
from service.security.sessions import PendingSignIn

__all__ = ["PostgresSessionStore"]


class PostgresSessionStore:
    """See service.security.sessions.SessionStore."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def _connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[dict[str, Any]]]:
        return pooled_transaction(self._pool)

    def save_session(
        self, id_hash: bytes, claims: Mapping[str, Any], csrf_token: str, now: datetime, expires_at: datetime
    ) -> None:
        """See SessionStore."""
        with self._connection() as conn:
            # Expired sessions go when new ones come: no separate clean-up job to forget.
            conn.execute("DELETE FROM web_session WHERE expires_at < %s", (now,))
            conn.execute(
                "INSERT INTO web_session (id_hash, claims, csrf_token, created_at, expires_at, last_seen_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (id_hash, Jsonb(dict(claims)), csrf_token, now, expires_at, now),
            )

    def find_session(self, id_hash: bytes, now: datetime) -> tuple[dict[str, Any], str, datetime, datetime] | None:
        """See SessionStore."""
        with self._connection() as conn:
            row = conn.execute(
                "SELECT claims, csrf_token, expires_at, coalesce(last_seen_at, created_at) AS last_seen "
                "FROM web_session WHERE id_hash = %s AND expires_at > %s",
                (id_hash, now),
            ).fetchone()
        if row is None:
            return None
        return dict(row["claims"]), str(row["csrf_token"]), row["expires_at"], row["last_seen"]

    def touch_session(self, id_hash: bytes, now: datetime) -> None:
        """See SessionStore."""
        with self._connection() as conn:
            conn.execute(
                "UPDATE web_session SET last_seen_at = %s WHERE id_hash = %s AND last_seen_at < %s",
                (now, id_hash, now),
            )

    def delete_session(self, id_hash: bytes) -> None:
        """See SessionStore."""
        with self._connection() as conn:
            conn.execute("DELETE FROM web_session WHERE id_hash = %s", (id_hash,))

    def save_pending(self, pending: PendingSignIn) -> None:
        """See SessionStore."""
        with self._connection() as conn:
            conn.execute("DELETE FROM auth_pending WHERE expires_at < now()")
            conn.execute(
                "INSERT INTO auth_pending (state, nonce, code_verifier, return_to, expires_at, smart_iss) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    pending.state,
                    pending.nonce,
                    pending.code_verifier,
                    pending.return_to,
                    pending.expires_at,
                    pending.smart_iss,
                ),
            )

    def take_pending(self, state: str, now: datetime) -> PendingSignIn | None:
        """See SessionStore."""
        with self._connection() as conn:
            row = conn.execute(
                "DELETE FROM auth_pending WHERE state = %s RETURNING state, nonce, code_verifier, return_to, "
                "expires_at, smart_iss",
                (state,),
            ).fetchone()
        if row is None or row["expires_at"] <= now:
            return None
        return PendingSignIn(**row)
