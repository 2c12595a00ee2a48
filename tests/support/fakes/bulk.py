"""The bulk import ports (ImportStore, ImportSession, LineSource) in memory: checkpoints written with their batch.

The import session is the in-memory ingest session (tests/support/fakes/ingest.py) over the same MemoryDatabase, so
a batch's resources, facts and outbox rows and its file's checkpoint commit or roll back together, as in
service/adapters/postgres/bulk_import.sql (start_file, lock_file, reset_file, save_progress, file_counts,
file_issues). The SQL itself is tested in tests/integration/test_bulk_import.py.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.platform.errors import ConcurrentWrite
from service.usecases.ports.bulk import (
    Checkpoint,
    ExportGateway,
    ExportGone,
    ExportJob,
    ExportStatus,
    ExportStore,
    FileCounts,
    ImportSession,
    ImportStore,
    LineIssue,
    LineSource,
)
from tests.support.fakes.ingest import MemoryIngestStore, _MemorySession
from tests.support.fakes.tables import MemoryDatabase, Tables

__all__ = ["BytesLineSource", "ExportRow", "FileRow", "MemoryExportGateway", "MemoryExportStore", "MemoryImportStore"]


@dataclass
class FileRow:
    """A ``bulk_import_file`` row and its ``bulk_import_issue`` rows."""

    fingerprint: str | None
    started_at: datetime
    byte_offset: int = 0
    line_no: int = 0
    complete: bool = False
    counts: FileCounts = field(default_factory=FileCounts)
    issues: list[LineIssue] = field(default_factory=list)


class MemoryImportStore:
    """The ImportStore port over the ingest fake's database; tests read ``files`` by (source, file)."""

    def __init__(self, ingest: MemoryIngestStore | None = None) -> None:
        self.database: MemoryDatabase = (ingest or MemoryIngestStore()).database
        self.files: dict[tuple[str, str], FileRow] = {}
        self.batches = 0  # import sessions begun

    @property
    def tables(self) -> Tables:
        return self.database.tables

    @contextmanager
    def import_session(self) -> Iterator[ImportSession]:
        self.batches += 1
        with self.database.transaction() as working:
            files = copy.deepcopy(self.files)
            yield _ImportSession(working, files)
            self.files = files  # the checkpoint commits with the batch, after the tables' block succeeded

    def start_file(self, source: str, file: str, fingerprint: str | None, restart: bool, now: datetime) -> Checkpoint:
        with self.database.reading():
            row = self.files.setdefault((source, file), FileRow(fingerprint, now))
            if restart or row.fingerprint != fingerprint:
                # another file at the same path, or an explicit restart: counts and refused lines start again too
                self.files[source, file] = FileRow(fingerprint, now)
                return Checkpoint()
            return Checkpoint(row.byte_offset, row.line_no, row.complete)

    def file_counts(self, source: str, file: str) -> FileCounts:
        row = self.files.get((source, file))
        return copy.copy(row.counts) if row else FileCounts()

    def file_issues(self, source: str, file: str, limit: int) -> list[LineIssue]:
        row = self.files.get((source, file))
        return sorted(row.issues, key=lambda i: i.line_no)[:limit] if row else []


class _ImportSession(_MemorySession):
    def __init__(self, tables: Tables, files: dict[tuple[str, str], FileRow]) -> None:
        super().__init__(tables)
        self._files = files

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
        del now
        row = self._files.get((source, file))
        if row is None or row.byte_offset != from_offset or row.complete:
            # another process moved this file's checkpoint since the batch began: roll the batch back
            raise ConcurrentWrite("bulk_import_file")
        row.byte_offset, row.line_no, row.complete = checkpoint.byte_offset, checkpoint.line_no, checkpoint.complete
        row.counts.add(counts)
        row.issues += issues


@dataclass
class BytesLineSource:
    """A LineSource over bytes in memory, handed out in pieces of ``piece`` bytes (lines split across pieces)."""

    content: bytes
    name: str = "memory.ndjson"
    fingerprint: str | None = None
    piece: int = 7
    reads: list[int] = field(default_factory=list)  # the offsets read from

    @property
    def key(self) -> str:
        return self.name

    def chunks(self, offset: int) -> Iterator[bytes]:
        self.reads.append(offset)
        for start in range(offset, len(self.content), self.piece):
            yield self.content[start : start + self.piece]


@dataclass
class ExportRow:
    """A ``bulk_export`` row."""

    status_url: str | None
    requested_since: str | None
    manifest: dict[str, Any] | None = None
    since: str | None = None


class MemoryExportStore:
    """The ExportStore port (bulk_import.sql's export queries) over a dictionary of rows by source."""

    def __init__(self) -> None:
        self.exports: dict[str, ExportRow] = {}

    def export_job(self, source: str) -> ExportJob | None:
        row = self.exports.get(source)
        return ExportJob(row.status_url, row.requested_since, copy.deepcopy(row.manifest), row.since) if row else None

    def save_kick_off(self, source: str, status_url: str, requested_since: str | None, now: datetime) -> None:
        del now
        row = self.exports.setdefault(source, ExportRow(status_url, requested_since))
        row.status_url, row.requested_since, row.manifest = status_url, requested_since, None

    def save_manifest(self, source: str, manifest: dict[str, Any], now: datetime) -> None:
        del now
        if (row := self.exports.get(source)) is not None:
            row.manifest = copy.deepcopy(manifest)

    def finish_export(self, source: str, transaction_time: str, now: datetime) -> None:
        del now
        if (row := self.exports.get(source)) is not None:
            row.since, row.status_url, row.manifest = transaction_time, None, None

    def forget_export_job(self, source: str, now: datetime) -> None:
        del now
        if (row := self.exports.get(source)) is not None:
            row.status_url, row.manifest = None, None


@dataclass
class MemoryExportGateway:
    """The EHR's Bulk Data endpoints: every kick-off completes after ``polls_before_done`` polls with ``files``.

    ``files`` maps each output's type to its NDJSON; ``gone`` status URLs answer ExportGone (expired at the EHR).
    """

    files: dict[str, bytes] = field(default_factory=dict)
    transaction_time: str = "2026-06-01T09:00:00Z"
    polls_before_done: int = 1
    base_url: str = "https://ehr.example/fhir"
    kick_offs: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    polls: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)

    def kick_off(self, target: str, params: Mapping[str, str]) -> str:
        self.kick_offs.append((target, dict(params)))
        return f"{self.base_url}/$export-status/{len(self.kick_offs)}"

    def poll(self, status_url: str) -> ExportStatus:
        if status_url in self.gone:
            raise ExportGone(status_url)
        self.polls.append(status_url)
        if sum(1 for p in self.polls if p == status_url) <= self.polls_before_done:
            return ExportStatus(progress="running", retry_after=1.0)
        output = [{"type": kind, "url": f"{status_url}/{kind}.ndjson"} for kind in sorted(self.files)]
        return ExportStatus({"transactionTime": self.transaction_time, "output": output, "error": []})

    def file(self, url: str, with_token: bool) -> LineSource:
        del with_token
        status_url, _, name = url.rpartition("/")
        if status_url in self.gone:
            raise ExportGone(url)
        return BytesLineSource(self.files[name.removesuffix(".ndjson")], name=url)

    def cancel(self, status_url: str) -> None:
        self.cancelled.append(status_url)


def _typed(
    store: MemoryImportStore, source: BytesLineSource, exports: MemoryExportStore, gateway: MemoryExportGateway
) -> tuple[ImportStore, LineSource, ExportStore, ExportGateway]:
    return store, source, exports, gateway  # mypy checks the fakes against the ports here
