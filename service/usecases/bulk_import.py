"""Bulk import: stream NDJSON files of FHIR resources into the store, a batch per transaction, resumable.

Each line is parsed and passes the intake gate every way in passes (service/fhir/intake.py; the patient rules),
then written through the Ingestor's own write path (versions, facts, demographics, the patient-change outbox). A
file's checkpoint (byte offset and line number of the next unread line) and the lines it refused are saved in the
same transaction as the batch they cover: a process killed at any moment resumes exactly where the last commit left
it, and re-sent content makes no new version anyway. A bad line is reported with its file:line and FHIRPath,
counted and skipped; it never stops the import.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from service.domain.audit_record import AuditRecord
from service.fhir.intake import Ids, admit
from service.fhir.jsonio import parse
from service.fhir.r4 import is_resource_type as r4_type
from service.fhir.references import patient_of
from service.fhir.resource_types import INPUT_TYPES
from service.platform.errors import ConcurrentWrite, EhrTemporaryError, Problem, RefractureError
from service.usecases.audit import system_record
from service.usecases.ingest import EntryOutcome, Ingestor, WriteRequest
from service.usecases.intake import outcome_label
from service.usecases.ports.bulk import Checkpoint, FileCounts, ImportSession, ImportStore, LineIssue, LineSource
from service.usecases.ports.clock import Clock
from service.usecases.ports.metrics import Metrics, NoMetrics
from service.usecases.ports.resources import ResourceKey

__all__ = [
    "BulkImporter",
    "FileResult",
    "close_chunks",
    "split_lines",
]

log = logging.getLogger(__name__)

DEFAULT_BATCH: Final = 2000
# A line longer than the API's largest body is no resource refracture would take.
DEFAULT_MAX_LINE_BYTES: Final = 50 * 1024 * 1024
_ATTEMPTS: Final = 3
_MAX_MESSAGE: Final = 500  # an issue's text, cut: enough to act on


@dataclass(slots=True)
class FileResult:
    """One file's import: its counts over every run and in this one, whether it was done already, its first issues."""

    name: str
    counts: FileCounts
    run_counts: FileCounts = field(default_factory=FileCounts)
    already_complete: bool = False
    issues: list[LineIssue] = field(default_factory=list)
    skipped_types: Counter[str] = field(default_factory=Counter)
    changed_patients: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Pending:
    """Lines read since the last commit."""

    from_offset: int
    requests: list[tuple[int, WriteRequest]] = field(default_factory=list)
    keys: set[ResourceKey] = field(default_factory=set)
    counts: FileCounts = field(default_factory=FileCounts)
    issues: list[LineIssue] = field(default_factory=list)
    lines: int = 0
    tally: Counter[tuple[str, str]] = field(default_factory=Counter)  # (type, outcome) for refracture_ingested


@dataclass(frozen=True, slots=True)
class _RefusedLine:
    resource_type: str  # "other" when the line names no type refracture takes
    issues: list[LineIssue]


def split_lines(chunks: Iterable[bytes], offset: int, max_line: int) -> Iterator[tuple[bytes | None, int]]:
    """NDJSON lines and the byte offset just past each (its newline included).

    A line longer than ``max_line`` is yielded as None (and skipped to its end) rather than held in memory; the last
    line may lack its newline.
    """
    buffer = bytearray()
    too_long = False
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if not too_long:
                    buffer += chunk[start:]
                    if len(buffer) > max_line:
                        too_long, buffer = True, bytearray()
                offset += len(chunk) - start
                break
            offset += end + 1 - start
            if too_long:
                yield None, offset
            else:
                buffer += chunk[start:end]
                yield (None if len(buffer) > max_line else bytes(buffer)), offset
            buffer, too_long, start = bytearray(), False, end + 1
    if buffer or too_long:
        yield (None if too_long else bytes(buffer)), offset


def close_chunks(chunks: Iterator[bytes]) -> None:
    """Close a generator of chunks (its file or HTTP stream) when its reader stops early."""
    close = getattr(chunks, "close", None)
    if callable(close):
        close()


class BulkImporter:
    """Streams NDJSON files into the store: validated like the API, a batch per transaction, checkpointed."""

    def __init__(
        self,
        store: ImportStore,
        ingestor: Ingestor,
        clock: Clock,
        batch_size: int = DEFAULT_BATCH,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        issues_shown: int = 20,
        audit: Callable[[Sequence[AuditRecord]], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics or NoMetrics()
        self._audit = audit
        self._ingestor = ingestor
        self._clock = clock
        self._batch = max(1, batch_size)
        self._max_line = max_line_bytes
        self._issues_shown = issues_shown

    def import_file(self, source: str, file: LineSource, restart: bool = False) -> FileResult:
        """Import one file from its checkpoint to its end.

        Args:
            source: which import this file belongs to ("files", or an EHR export).
            file: the NDJSON file.
            restart: forget its checkpoint and read it from its first line again (identical content still makes no
                new version).

        Raises:
            EhrTemporaryError: a download broke off three times in a row (the checkpoint keeps what was done).
            RefractureError: the database is not reachable.
        """
        result = FileResult(file.name, FileCounts())
        start = self._store.start_file(source, file.key, file.fingerprint, restart, self._clock())
        if start.complete:
            result.already_complete = True
        else:
            for attempt in range(1, _ATTEMPTS + 1):
                try:
                    self._read(source, file, result)
                    break
                except EhrTemporaryError as exc:
                    if attempt == _ATTEMPTS:
                        raise
                    log.warning("download of an export file broke off (%s); resuming from its checkpoint", exc)
        result.counts = self._store.file_counts(source, file.key)
        result.issues = self._store.file_issues(source, file.key, self._issues_shown)
        return result

    def _read(self, source: str, file: LineSource, result: FileResult) -> None:
        at = self._store.start_file(source, file.key, file.fingerprint, False, self._clock())
        line_no, offset = at.line_no, at.byte_offset
        pending = _Pending(from_offset=offset)
        chunks = file.chunks(offset)
        try:
            for raw, end in split_lines(chunks, at.byte_offset, self._max_line):
                line_no += 1
                request = self._take(raw, line_no, pending, result)
                if request is not None:
                    key = (request.resource_type, request.resource_id)
                    if key in pending.keys:
                        # The same resource twice in one batch: the second must see the first's version, so the
                        # batch so far commits first, with the checkpoint of the line before this one.
                        self._commit(source, file, pending, Checkpoint(offset, line_no - 1), result)
                        pending = _Pending(from_offset=offset)
                    pending.keys.add(key)
                    pending.requests.append((line_no, request))
                pending.lines += 1
                offset = end
                if len(pending.requests) >= self._batch or pending.lines >= 4 * self._batch:
                    self._commit(source, file, pending, Checkpoint(offset, line_no), result)
                    pending = _Pending(from_offset=offset)
        finally:
            close_chunks(chunks)  # a download stopped halfway releases its connection now
        self._commit(source, file, pending, Checkpoint(offset, line_no, complete=True), result)

    def _take(self, raw: bytes | None, line_no: int, pending: _Pending, result: FileResult) -> WriteRequest | None:
        """A line's resource to write; otherwise the line is counted (invalid, or skipped) in ``pending``."""
        if raw is not None and not raw.strip():
            return None  # blank lines (a trailing one is common) are no resource and count nowhere
        checked = self._check(raw, line_no)
        if isinstance(checked, WriteRequest):
            return checked
        if isinstance(checked, str):
            pending.counts.skipped += 1
            pending.tally[checked, "skipped"] += 1
            result.skipped_types[checked] += 1
        else:
            pending.counts.invalid += 1
            pending.tally[checked.resource_type, "refused"] += 1
            pending.issues += checked.issues
        return None

    def _check(self, raw: bytes | None, line_no: int) -> WriteRequest | str | _RefusedLine:
        """The resource to write, the type of one refracture does not take, or why the line is refused."""
        if raw is None:
            return _RefusedLine("other", [LineIssue(line_no, None, f"the line is longer than {self._max_line} bytes")])
        try:
            resource = parse(raw)
        except RefractureError as exc:
            return _RefusedLine("other", _issues(line_no, exc))
        resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
        if isinstance(resource_type, str) and r4_type(resource_type) and resource_type not in INPUT_TYPES:
            return resource_type  # another FHIR type (an export may hold any): counted and skipped, no error
        try:
            admitted = admit(resource, Ids.OWN)
        except RefractureError as exc:
            label = resource_type if isinstance(resource_type, str) and resource_type in INPUT_TYPES else "other"
            return _RefusedLine(label, _issues(line_no, exc))
        return WriteRequest(admitted.resource_type, admitted.resource_id, admitted.resource)

    def _commit(
        self, source: str, file: LineSource, pending: _Pending, checkpoint: Checkpoint, result: FileResult
    ) -> None:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                counts, changed, patients, tally = self._write(source, file.key, pending, checkpoint)
                break
            except ConcurrentWrite:
                if attempt == _ATTEMPTS:
                    raise
                log.info("concurrent write during a bulk batch; writing it again (attempt %d)", attempt + 1)
        result.run_counts.add(counts)
        for (resource_type, outcome), n in tally.items():  # counted once the batch is committed
            self._metrics.count_ingested(resource_type, outcome, n)
        result.changed_patients |= changed
        if self._audit is not None and patients:
            # Imported under refracture's own name (no person asked): one row per patient of the batch.
            now = self._clock()
            what = f"refracture import ({source})"[:200]
            self._audit(
                [
                    system_record(now, "import", what, patient_id=p, detail=f"to line {checkpoint.line_no}")
                    for p in sorted(patients)
                ]
            )

    def _write(
        self, source: str, file: str, pending: _Pending, checkpoint: Checkpoint
    ) -> tuple[FileCounts, set[str], set[str], Counter[tuple[str, str]]]:
        counts = FileCounts(skipped=pending.counts.skipped, invalid=pending.counts.invalid)
        tally = Counter(pending.tally)
        issues = list(pending.issues)
        changed: set[str] = set()
        patients: set[str] = set()
        with self._store.import_session() as session:
            outcomes = self._write_requests(session, [r for _, r in pending.requests], changed)
            for (line_no, request), outcome in zip(pending.requests, outcomes, strict=True):
                if isinstance(outcome, RefractureError):
                    counts.invalid += 1
                    tally[request.resource_type, "refused"] += 1
                    issues += _issues(line_no, outcome)
                    continue
                tally[request.resource_type, outcome_label(outcome)] += 1
                if patient := patient_of(request.resource):
                    patients.add(patient[:64])
                if outcome.created:
                    counts.created += 1
                elif outcome.changed:
                    counts.updated += 1
                else:
                    counts.unchanged += 1
            issues.sort(key=lambda issue: issue.line_no)
            session.save_progress(source, file, pending.from_offset, checkpoint, counts, issues, self._clock())
        return counts, changed, patients, tally

    def _write_requests(
        self, session: ImportSession, requests: Sequence[WriteRequest], changed: set[str]
    ) -> list[EntryOutcome | RefractureError]:
        if not requests:
            return []
        try:
            with session.savepoint():
                outcomes, found = self._ingestor.write_many(session, requests)
            changed |= found
            return outcomes
        except RefractureError as exc:
            if exc.problem is not Problem.INVALID or len(requests) == 1:
                raise
        # A value PostgreSQL cannot hold refused the batch: find the resources at fault, one savepoint each.
        outcomes = []
        for request in requests:
            try:
                with session.savepoint():
                    one, found = self._ingestor.write_many(session, [request])
                outcomes += one
                changed |= found
            except RefractureError as exc:
                if exc.problem is not Problem.INVALID:
                    raise
                outcomes.append(exc)
        return outcomes


def _issues(line_no: int, error: RefractureError) -> list[LineIssue]:
    return [LineIssue(line_no, issue.expression, issue.text[:_MAX_MESSAGE]) for issue in error.issues]
