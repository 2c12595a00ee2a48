"""Bulk import and Bulk Data $export: NDJSON files, checkpoints, export jobs and the EHR's Bulk Data endpoints."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from service.usecases.ports.ingest import IngestSession


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a file stands: the next unread line starts at byte_offset and is line line_no + 1."""

    byte_offset: int = 0
    line_no: int = 0
    complete: bool = False


@dataclass(slots=True)
class FileCounts:
    """What became of a file's lines (blank lines count nowhere)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0
    skipped: int = 0  # resource types refracture does not take

    @property
    def stored(self) -> int:
        """Resources written or found identical."""
        return self.created + self.updated + self.unchanged

    def add(self, other: FileCounts) -> None:
        """Add another's counts to these."""
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.invalid += other.invalid
        self.skipped += other.skipped


@dataclass(frozen=True, slots=True)
class LineIssue:
    """Why a line was refused: its number, the FHIRPath of the problem (when there is one) and the text."""

    line_no: int
    expression: str | None
    message: str


class LineSource(Protocol):
    """An NDJSON file, local or at the EHR."""

    @property
    def name(self) -> str:
        """What reports call it (a path, or a URL's last segment): never patient data."""

    @property
    def key(self) -> str:
        """Its identity in the checkpoint table."""

    @property
    def fingerprint(self) -> str | None:
        """Something that changes when another file takes its place (None: the key says it all)."""

    def chunks(self, offset: int) -> Iterator[bytes]:
        """The file's bytes from ``offset`` on, in pieces of any size."""


class ImportSession(IngestSession, Protocol):
    """The ingest transaction, which also carries the checkpoint of the batch it writes."""

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
        """Move the file's checkpoint from ``from_offset`` (where this batch started), add these counts to its totals
        and keep its refused lines.

        Raises:
            ConcurrentWrite: the checkpoint is no longer at ``from_offset`` (another process imports the file too).
        """


class ImportStore(Protocol):
    """Checkpoints and the transactions that write with them."""

    def import_session(self) -> AbstractContextManager[ImportSession]:
        """One transaction."""

    def start_file(self, source: str, file: str, fingerprint: str | None, restart: bool, now: datetime) -> Checkpoint:
        """The file's checkpoint, made at its start when new, changed (another fingerprint) or restarted."""

    def file_counts(self, source: str, file: str) -> FileCounts:
        """The file's totals over every run."""

    def file_issues(self, source: str, file: str, limit: int) -> list[LineIssue]:
        """The file's first refused lines."""


class ExportGone(Exception):
    """The EHR no longer knows the export job or its files (404/410): a new export has to be asked for."""


@dataclass(frozen=True, slots=True)
class ExportStatus:
    """One poll's answer: still running (progress, Retry-After) or complete (the manifest)."""

    manifest: dict[str, Any] | None = None
    progress: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class ExportJob:
    """What is kept of an export source: the running job (if any) and the next _since."""

    status_url: str | None
    requested_since: str | None
    manifest: dict[str, Any] | None
    since: str | None


class ExportGateway(Protocol):
    """The EHR's Bulk Data endpoints."""

    @property
    def base_url(self) -> str:
        """The EHR's FHIR base."""

    def kick_off(self, target: str, params: Mapping[str, str]) -> str:
        """Start an export of ``target`` ("Patient" or "Group/{id}"); returns the status URL.

        Raises:
            EhrTemporaryError: 429, 5xx or no answer (Retry-After carried).
            EhrRejected: the EHR refused the request.
        """

    def poll(self, status_url: str) -> ExportStatus:
        """Ask how the export stands.

        Raises:
            ExportGone: the EHR no longer knows the job.
            EhrTemporaryError: 429 (polled too often), 5xx or no answer.
            EhrRejected: the export failed (the EHR's OperationOutcome carried).
        """

    def file(self, url: str, with_token: bool) -> LineSource:
        """An output or error file (ExportGone when it expired)."""

    def cancel(self, status_url: str) -> None:
        """DELETE the job: cancels a running export, or lets the EHR remove a finished one's files."""


class ExportStore(Protocol):
    """The export jobs and the _since of each export source."""

    def export_job(self, source: str) -> ExportJob | None:
        """The source's job and since, if it was ever exported."""

    def save_kick_off(self, source: str, status_url: str, requested_since: str | None, now: datetime) -> None:
        """A job was started."""

    def save_manifest(self, source: str, manifest: dict[str, Any], now: datetime) -> None:
        """The job completed with this manifest."""

    def finish_export(self, source: str, transaction_time: str, now: datetime) -> None:
        """Every file is imported: transaction_time is the next _since; no job runs any more."""

    def forget_export_job(self, source: str, now: datetime) -> None:
        """The job is gone (expired at the EHR, or cancelled): the next run asks for a new one with the same _since."""
