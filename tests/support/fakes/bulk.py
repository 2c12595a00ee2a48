"""The bulk import ports (ImportStore, ImportSession, LineSource) in memory: checkpoints written with their batch.

The import session is the in-memory ingest session (tests/support/fakes/ingest.py) over the same MemoryDatabase, so
a batch's resources, facts and outbox rows and its file's checkpoint commit or roll back together, as in
service/adapters/postgres/bulk_import.sql (start_file, lock_file, reset_file, save_progress, file_counts,
file_issues). The SQL itself is tested in tests/integration/test_bulk_import.py.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from service.platform.errors import ConcurrentWrite
from service.usecases.ports.bulk import Checkpoint, FileCounts, ImportSession, ImportStore, LineIssue, LineSource
from tests.support.fakes.ingest import MemoryIngestStore, _MemorySession
from tests.support.fakes.tables import MemoryDatabase, Tables

__all__ = ["BytesLineSource", "FileRow", "MemoryImportStore"]


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


def _typed(store: MemoryImportStore, source: BytesLineSource) -> tuple[ImportStore, LineSource]:
    return store, source  # mypy checks the fakes against the ports here
