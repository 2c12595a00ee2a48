"""Workers' heartbeats in PostgreSQL (migration 0012): written by each worker, read by /readyz."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, LiteralString

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from service.adapters.postgres.queries import query

__all__ = ["HeartbeatWriter", "WorkersSeen", "workers_seen"]

# A worker not seen for this long is forgotten (its row deleted): pods get new host names on every start.
_FORGET_AFTER: Final = timedelta(days=7)


def _query(name: str) -> LiteralString:
    return query(name, "heartbeats.sql")


@dataclass(frozen=True, slots=True)
class WorkersSeen:
    """How many workers were seen since a moment, and the latest time any was."""

    seen: int
    last_seen: datetime | None


def workers_seen(pool: ConnectionPool, since: datetime) -> WorkersSeen:
    """The workers that wrote a heartbeat at or after ``since`` and have not stopped."""
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        row: dict[str, Any] | None = cur.execute(_query("workers_seen"), {"since": since}).fetchone()
    return WorkersSeen(int(row["seen"]), row["last_seen"]) if row else WorkersSeen(0, None)


class HeartbeatWriter:
    """A worker's heartbeat, on one connection of its own (the worker's main process has no pool); a lost
    connection is opened again at the next beat."""

    def __init__(self, database_url: str, hostname: str, started_at: datetime, connect_timeout_s: int = 5) -> None:
        self._url = database_url
        self._hostname = hostname
        self._started_at = started_at
        self._timeout = connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None

    def beat(self, now: datetime) -> None:
        """Say the worker is alive at ``now``."""
        params = {
            "hostname": self._hostname,
            "started_at": self._started_at,
            "now": now,
            "purge_before": now - _FORGET_AFTER,
        }
        self._run(_query("record_heartbeat"), params)

    def stopped(self, now: datetime) -> None:
        """Say the worker stopped cleanly (readiness no longer counts it)."""
        self._run(_query("record_worker_stopped"), {"hostname": self._hostname, "now": now})

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self, statement: LiteralString, params: dict[str, Any]) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=self._timeout)
            self._conn.execute(statement, params)
        except psycopg.Error:
            self.close()
            raise
