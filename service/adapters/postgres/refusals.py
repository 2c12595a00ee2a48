"""Refused-request counts and worklist searches in PostgreSQL (migration 0015)."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg_pool import ConnectionPool

from service.adapters.postgres.errors import pooled_transaction
from service.adapters.postgres.queries import query
from service.usecases.ports.refusals import RefusedRequests

__all__ = ["PostgresRefusalStore", "PostgresSearchStore"]

Conn = psycopg.Connection[dict[str, Any]]


def _query(name: str) -> LiteralString:
    return query(name, "refusals.sql")


class PostgresRefusalStore:
    """See usecases.refusals.RefusalStore."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def _transaction(self) -> contextlib.AbstractContextManager[Conn]:
        return pooled_transaction(self._pool)

    def count(self, minute: datetime, source_ip: str, what: str, outcome: int) -> None:
        """See RefusalStore."""
        with self._transaction() as conn:
            conn.execute(
                _query("count_refused_request"),
                {"minute": minute, "source_ip": source_ip, "what": what, "outcome": outcome},
            )

    def purge(self, before: datetime) -> int:
        """See RefusalStore."""
        with self._transaction() as conn:
            return conn.execute(_query("purge_refused_requests"), {"before": before}).rowcount

    def since(self, since: datetime) -> list[RefusedRequests]:
        """See RefusalStore."""
        with self._transaction() as conn:
            rows = conn.execute(_query("refused_requests_since"), {"since": since}).fetchall()
        return [RefusedRequests(**row) for row in rows]


class PostgresSearchStore:
    """See usecases.worklist.SearchStore."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def save_search(self, search_id: str, owner: str, text: str, expires_at: datetime, now: datetime) -> None:
        """See SearchStore."""
        with pooled_transaction(self._pool) as conn:
            conn.execute(_query("purge_worklist_searches"), {"now": now})
            values = {"id": search_id, "owner": owner, "text": text, "expires_at": expires_at}
            conn.execute(_query("save_worklist_search"), values)

    def find_search(self, search_id: str, owner: str, now: datetime) -> str | None:
        """See SearchStore."""
        with pooled_transaction(self._pool) as conn:
            row = conn.execute(_query("find_worklist_search"), {"id": search_id, "owner": owner, "now": now}).fetchone()
        return str(row["text"]) if row is not None else None
