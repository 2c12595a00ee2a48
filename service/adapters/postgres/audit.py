"""The audit trail in PostgreSQL (append-only by trigger, hash-chained on insert: migrations 0006 and 0013)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from service.adapters.postgres.errors import pooled_transaction
from service.domain.audit_record import AuditRecord, StoredAudit
from service.usecases.ports.audit import GENESIS, ChainAnchor, ChainLink

__all__ = ["PostgresAuditStore", "append_audit"]

_COLUMNS = (
    "at", "actor", "client_id", "auth_source", "roles", "action", "what", "resource_type", "resource_id",
    "patient_id", "outcome", "source_ip", "request_id", "detail",
)  # fmt: skip


def append_audit(conn: psycopg.Connection[Any], records: Sequence[AuditRecord]) -> None:
    """Insert audit rows on a connection (inside the caller's transaction when it has one).

    The chain trigger locks the chain head until that transaction ends, and every other append waits for it: append
    last, and never keep the transaction open across a network call afterwards.

    One statement for all the rows (a JSON array read by ``jsonb_to_recordset``, in the given order): a worklist page
    audits 50 patients, and the chain head moves once per statement (migration 0023), so one INSERT of 50 rows holds
    the head that ingest's writes wait for much shorter than 50 INSERTs (a 50-row append 11.4 → 5.6 ms on this
    machine, docs/performance.md).
    """
    if not records:
        return
    rows = json.dumps([{c: _value(r, c) for c in _COLUMNS} for r in records], separators=(",", ":"))
    conn.execute(_APPEND, (rows,))


# Rendered once: psycopg renders a composed statement again on every execution, and for these 28 identifiers that
# was about 0.2 ms of a single-resource PUT's Python time (docs/performance.md, bench/put_layers).
_APPEND: Final = (
    sql.SQL(
        "INSERT INTO audit_event ({columns}) SELECT {columns} FROM ROWS FROM (jsonb_to_recordset(%s::jsonb) AS "
        "(at timestamptz, actor text, client_id text, auth_source text, roles text[], action text, what text, "
        "resource_type text, resource_id text, patient_id text, outcome integer, source_ip text, request_id text, "
        "detail text)) WITH ORDINALITY AS r({columns}, n) ORDER BY n"
    )
    .format(columns=sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS))
    .as_bytes(None)
)


def _value(record: AuditRecord, column: str) -> Any:
    value = getattr(record, column)
    if column == "roles":
        return list(value)
    return value.isoformat() if isinstance(value, datetime) else value


def _record(row: dict[str, Any]) -> AuditRecord:
    values: dict[str, Any] = {c: row[c] for c in _COLUMNS}
    values["roles"] = tuple(row["roles"] or ())
    return AuditRecord(**values)


class PostgresAuditStore:
    """See service.usecases.ports.audit.AuditStore."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def _connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[dict[str, Any]]]:
        return pooled_transaction(self._pool)

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        """See AuditStore."""
        with self._connection() as conn:
            append_audit(conn, records)

    def audit_rows(
        self, since: datetime | None, until: datetime | None, patient_id: str | None, after_id: int, limit: int
    ) -> list[StoredAudit]:
        """See AuditStore."""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT * FROM audit_event WHERE id > %(after)s "
                "AND (%(since)s::timestamptz IS NULL OR at >= %(since)s) "
                "AND (%(until)s::timestamptz IS NULL OR at < %(until)s) "
                "AND (%(patient)s::text IS NULL OR patient_id = %(patient)s) ORDER BY id LIMIT %(limit)s",
                {"after": after_id, "since": since, "until": until, "patient": patient_id, "limit": limit},
            ).fetchall()
        return [StoredAudit(int(r["id"]), _record(r), int(r["seq"]), bytes(r["hash"])) for r in rows]

    def chain_rows(
        self, since: datetime | None, until: datetime | None, after_seq: int, limit: int
    ) -> list[StoredAudit]:
        """See AuditStore."""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT * FROM audit_event WHERE seq > %(after)s "
                "AND (%(since)s::timestamptz IS NULL OR at >= %(since)s) "
                "AND (%(until)s::timestamptz IS NULL OR at < %(until)s) ORDER BY seq LIMIT %(limit)s",
                {"after": after_seq, "since": since, "until": until, "limit": limit},
            ).fetchall()
        return [StoredAudit(int(r["id"]), _record(r), int(r["seq"]), bytes(r["hash"])) for r in rows]

    def purge_audit(self, retention_days: int) -> int:
        """See AuditStore."""
        with self._connection() as conn:
            row = conn.execute("SELECT purge_audit_events(%s) AS n", (retention_days,)).fetchone()
        return int(row["n"]) if row else 0

    @contextlib.contextmanager
    def audit_chain(self) -> Iterator[tuple[ChainAnchor, ChainAnchor, Iterator[ChainLink]]]:
        """See AuditStore: one repeatable-read snapshot, the rows through a server-side cursor."""
        with self._connection() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            checkpoint = conn.execute("SELECT seq, hash FROM audit_checkpoint ORDER BY seq DESC LIMIT 1").fetchone()
            head = conn.execute("SELECT seq, hash FROM audit_chain_head").fetchone()
            anchor = (
                ChainAnchor(int(checkpoint["seq"]), bytes(checkpoint["hash"]))
                if checkpoint
                else ChainAnchor(0, GENESIS)
            )
            top = ChainAnchor(int(head["seq"]), bytes(head["hash"])) if head else ChainAnchor(0, GENESIS)
            with conn.cursor(name="audit_chain") as cursor:
                cursor.itersize = 5000
                cursor.execute("SELECT * FROM audit_event WHERE seq > %s ORDER BY seq", (anchor.seq,))
                links = (
                    ChainLink(int(r["id"]), int(r["seq"]), bytes(r["prev_hash"]), bytes(r["hash"]), _record(r))
                    for r in cursor
                )
                yield anchor, top, links
