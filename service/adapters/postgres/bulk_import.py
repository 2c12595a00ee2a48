"""Bulk import in PostgreSQL (migration 0009): checkpoints written with their batch, refused lines, export jobs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from service.adapters.postgres.errors import pooled_transaction
from service.adapters.postgres.queries import query
from service.adapters.postgres.store import PostgresSession
from service.platform.errors import ConcurrentWrite
from service.usecases.ports.bulk import Checkpoint, ExportJob, FileCounts, LineIssue

__all__ = ["PostgresImportSession", "PostgresImportStore"]

Conn = psycopg.Connection[dict[str, Any]]


def _query(name: str) -> LiteralString:
    return query(name, "bulk_import.sql")


class PostgresImportSession(PostgresSession):
    """The ingest session of one batch, which also moves its file's checkpoint: implements ImportSession."""

    def save_progress(
        self,
        source: str,
        file: str,
        from_offset: int,
        checkpoint: Checkpoint,
        counts: FileCounts,
        issues: Sequence[LineIssue],
        now: datetime,
    ) -> None:
        """See ImportSession."""
        conn: Conn = self._conn
        moved = conn.execute(
            _query("save_progress"),
            {
                "source": source,
                "file": file,
                "from_offset": from_offset,
                "byte_offset": checkpoint.byte_offset,
                "line_no": checkpoint.line_no,
                "complete": checkpoint.complete,
                "created": counts.created,
                "updated": counts.updated,
                "unchanged": counts.unchanged,
                "invalid": counts.invalid,
                "skipped": counts.skipped,
                "now": now,
            },
        ).fetchone()
        if moved is None:
            # Another process moved this file's checkpoint since the batch began: roll the batch back.
            raise ConcurrentWrite("bulk_import_file")
        if issues:
            with conn.cursor() as cur, cur.copy(_query("copy_issues")) as copy:
                for issue in issues:
                    copy.write_row((source, file, issue.line_no, issue.expression, issue.message, now))


class PostgresImportStore:
    """Implements the ImportStore and ExportStore ports over the connection pool."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def _transaction(self) -> contextlib.AbstractContextManager[Conn]:
        return pooled_transaction(self._pool)

    @contextlib.contextmanager
    def import_session(self) -> Iterator[PostgresImportSession]:
        """See ImportStore."""
        with self._transaction() as conn:
            yield PostgresImportSession(conn)

    def start_file(self, source: str, file: str, fingerprint: str | None, restart: bool, now: datetime) -> Checkpoint:
        """See ImportStore."""
        key = {"source": source, "file": file, "fingerprint": fingerprint, "now": now}
        with self._transaction() as conn:
            conn.execute(_query("start_file"), key)
            row = conn.execute(_query("lock_file"), key).fetchone()
            assert row is not None
            if restart or row["fingerprint"] != fingerprint:
                conn.execute(_query("reset_file"), key)
                conn.execute(_query("forget_file_issues"), key)
                return Checkpoint()
            return Checkpoint(row["byte_offset"], row["line_no"], row["complete"])

    def file_counts(self, source: str, file: str) -> FileCounts:
        """See ImportStore."""
        with self._transaction() as conn:
            row = conn.execute(_query("file_counts"), {"source": source, "file": file}).fetchone()
        return FileCounts(**row) if row else FileCounts()

    def file_issues(self, source: str, file: str, limit: int) -> list[LineIssue]:
        """See ImportStore."""
        with self._transaction() as conn:
            rows = conn.execute(_query("file_issues"), {"source": source, "file": file, "limit": limit}).fetchall()
        return [LineIssue(r["line_no"], r["expression"], r["message"]) for r in rows]

    # --- ExportStore ------------------------------------------------------------------------------------------
    def export_job(self, source: str) -> ExportJob | None:
        """See ExportStore."""
        with self._transaction() as conn:
            row = conn.execute(_query("export_job"), {"source": source}).fetchone()
        if row is None:
            return None
        return ExportJob(row["status_url"], row["requested_since"], row["manifest"], row["since"])

    def save_kick_off(self, source: str, status_url: str, requested_since: str | None, now: datetime) -> None:
        """See ExportStore."""
        with self._transaction() as conn:
            conn.execute(
                _query("save_kick_off"),
                {"source": source, "status_url": status_url, "requested_since": requested_since, "now": now},
            )

    def save_manifest(self, source: str, manifest: dict[str, Any], now: datetime) -> None:
        """See ExportStore."""
        with self._transaction() as conn:
            conn.execute(_query("save_manifest"), {"source": source, "manifest": Jsonb(manifest), "now": now})

    def finish_export(self, source: str, transaction_time: str, now: datetime) -> None:
        """See ExportStore."""
        with self._transaction() as conn:
            conn.execute(_query("finish_export"), {"source": source, "since": transaction_time, "now": now})

    def forget_export_job(self, source: str, now: datetime) -> None:
        """See ExportStore."""
        with self._transaction() as conn:
            conn.execute(_query("forget_export_job"), {"source": source, "now": now})
