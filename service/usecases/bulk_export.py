"""Onboarding from the EHR's FHIR Bulk Data $export: kick-off, polling, then each NDJSON file through BulkImporter.

Bulk Data Access IG (v2): kick-off `GET [base]/Group/[id]/$export` or `[base]/Patient/$export` with
`Prefer: respond-async` answers 202 and a status URL (Content-Location); polling it answers 202 (X-Progress,
Retry-After) while the export runs, 429 when polled too often, and 200 with the manifest once done. Output files may
need the access token (`requiresAccessToken`); error files are OperationOutcome NDJSON. The manifest's
`transactionTime` is kept as the next `_since`, but only once every file is imported: an incremental export from an
unfinished one would lose what it did not get to.

The running job (its status URL and then its manifest) is kept too, so an interrupted import resumes the same export
instead of asking the EHR for another; each file resumes from its checkpoint (bulk_import.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from service.fhir.jsonio import parse
from service.fhir.resource_types import INPUT_TYPES
from service.platform.errors import EhrRejected, EhrTemporaryError
from service.usecases.bulk_import import BulkImporter, FileResult, close_chunks, split_lines
from service.usecases.ports.bulk import ExportGateway, ExportGone, ExportJob, ExportStore, LineSource
from service.usecases.ports.clock import Clock

__all__ = ["BulkExporter", "ExportReport"]

log = logging.getLogger(__name__)

# Patients first, then Medications (what medication resources point at), then the rest: not needed for correctness
# (the store keys facts by the patient named in each resource, and re-reads dependents when a Medication arrives),
# but it spares the workers assessing a patient before their demographics are in.
_ORDER: Final = {"Patient": 0, "Medication": 1}
_MAX_TEMPORARY_FAILURES: Final = 8
_ERROR_LINES_KEPT: Final = 50


@dataclass(slots=True)
class ExportReport:
    """What an export import did."""

    source: str
    transaction_time: str
    since: str | None
    files: list[FileResult] = field(default_factory=list)
    skipped_files: dict[str, int] = field(default_factory=dict)  # types refracture does not take → resources
    error_count: int = 0  # issues in the EHR's error files
    errors: list[str] = field(default_factory=list)  # their first texts
    resumed: bool = False


class BulkExporter:
    """Runs (or resumes) an export at the EHR and imports its files."""

    def __init__(
        self,
        store: ExportStore,
        gateway: ExportGateway,
        importer: BulkImporter,
        clock: Clock,
        sleep: Callable[[float], None],
        first_wait_s: float = 1.0,
        max_wait_s: float = 120.0,
        give_up_after_s: float = 24 * 3600.0,
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._importer = importer
        self._clock = clock
        self._sleep = sleep
        self._first_wait = first_wait_s
        self._max_wait = max_wait_s
        self._give_up_after = give_up_after_s

    def source_of(self, target: str) -> str:
        """The export source's key: the EHR's base and what is exported."""
        return f"{self._gateway.base_url} {target}"

    def run(self, target: str, full: bool = False) -> ExportReport:
        """Import ``target``'s export: resume the running job, or start one with _since = the last transactionTime.

        Args:
            target: "Patient" (every patient) or "Group/{id}".
            full: ignore the stored _since and export everything (a running job is still resumed).

        Raises:
            EhrRejected: the EHR refused the export or it failed.
            EhrTemporaryError: the EHR stayed unreachable or kept answering 429/5xx.
            TimeoutError: the export did not complete within give_up_after_s.
        """
        source = self.source_of(target)
        job = self._store.export_job(source)
        resumed = job is not None and job.status_url is not None
        for attempt in (1, 2):
            if job is None or job.status_url is None:
                job = self._kick_off(source, target, None if full or job is None else job.since)
            try:
                assert job.status_url is not None
                manifest = job.manifest or self._wait(source, job.status_url)
                report = self._import(source, job, manifest)
            except ExportGone:
                if attempt == 2:
                    raise
                log.warning("the EHR no longer has the export job or its files; asking for a new export")
                self._store.forget_export_job(source, self._clock())
                job = ExportJob(None, job.requested_since, None, job.since)
                continue
            report.resumed = resumed
            self._store.finish_export(source, report.transaction_time, self._clock())
            try:
                self._gateway.cancel(job.status_url)  # the IG's "client MAY DELETE" after download: files can go
            except (EhrTemporaryError, EhrRejected, ExportGone) as exc:
                log.info("the EHR did not take the DELETE of a finished export (%s); its files expire anyway", exc)
            return report
        raise AssertionError("unreachable")  # pragma: no cover

    def cancel(self, target: str) -> bool:
        """Cancel the source's running export (DELETE at the EHR); False when none runs."""
        source = self.source_of(target)
        job = self._store.export_job(source)
        if job is None or job.status_url is None:
            return False
        with contextlib.suppress(ExportGone):  # already gone at the EHR: nothing to cancel there
            self._gateway.cancel(job.status_url)
        self._store.forget_export_job(source, self._clock())
        return True

    def _kick_off(self, source: str, target: str, since: str | None) -> ExportJob:
        params = {"_type": ",".join(sorted(INPUT_TYPES))}
        if since:
            params["_since"] = since
        status_url = self._retrying(lambda: self._gateway.kick_off(target, params))
        self._store.save_kick_off(source, status_url, since, self._clock())
        log.info("bulk export started (%s)", "since the last export" if since else "everything")
        return ExportJob(status_url, since, None, since)

    def _wait(self, source: str, status_url: str) -> dict[str, Any]:
        started = self._clock()
        wait = self._first_wait
        failures = 0
        while True:
            if (self._clock() - started).total_seconds() > self._give_up_after:
                raise TimeoutError(f"the export did not complete within {self._give_up_after:.0f} s")
            try:
                status = self._gateway.poll(status_url)
                failures = 0
            except EhrTemporaryError as exc:
                # 429: polled too often. Either way the next poll waits longer (and at least Retry-After).
                failures += exc.status != 429
                if failures > _MAX_TEMPORARY_FAILURES:
                    raise
                wait = min(self._max_wait, wait * 2)
                self._sleep(max(wait, exc.retry_after or 0.0))
                continue
            if status.manifest is not None:
                self._store.save_manifest(source, status.manifest, self._clock())
                return status.manifest
            if status.progress:
                log.info("bulk export in progress: %s", status.progress[:100])
            # The EHR's Retry-After when it gives one; exponential back-off otherwise.
            self._sleep(status.retry_after if status.retry_after is not None else wait)
            wait = min(self._max_wait, wait * 2)

    def _retrying(self, call: Callable[[], str]) -> str:
        wait = self._first_wait
        for attempt in range(1, _MAX_TEMPORARY_FAILURES + 1):
            try:
                return call()
            except EhrTemporaryError as exc:
                if attempt == _MAX_TEMPORARY_FAILURES:
                    raise
                self._sleep(max(wait, exc.retry_after or 0.0))
                wait = min(self._max_wait, wait * 2)
        raise AssertionError("unreachable")  # pragma: no cover

    def _import(self, source: str, job: ExportJob, manifest: dict[str, Any]) -> ExportReport:
        transaction_time = manifest.get("transactionTime")
        outputs = manifest.get("output")
        if not isinstance(transaction_time, str) or not isinstance(outputs, list):
            raise EhrRejected("the export's manifest lacks transactionTime or output", 200, None)
        with_token = bool(manifest.get("requiresAccessToken"))
        report = ExportReport(source, transaction_time, job.requested_since)
        files = [o for o in outputs if isinstance(o, dict) and isinstance(o.get("url"), str)]
        files.sort(key=lambda o: (_ORDER.get(str(o.get("type")), 2), str(o.get("type"))))
        for output in files:
            kind = str(output.get("type"))
            if kind not in INPUT_TYPES:
                # Not asked for (_type), but an EHR may send more: counted, never downloaded.
                count = output.get("count")
                report.skipped_files[kind] = report.skipped_files.get(kind, 0) + (
                    count if isinstance(count, int) else 0
                )
                continue
            report.files.append(self._importer.import_file(source, self._gateway.file(output["url"], with_token)))
        for error in manifest.get("error") or []:
            if isinstance(error, dict) and isinstance(error.get("url"), str):
                self._read_errors(self._gateway.file(error["url"], with_token), report)
        return report

    def _read_errors(self, file: LineSource, report: ExportReport) -> None:
        """The EHR's error file: OperationOutcome per line; reported, never imported."""
        chunks = file.chunks(0)
        try:
            for raw, _ in split_lines(chunks, 0, 1024 * 1024):
                if raw is None or not raw.strip():
                    continue
                for text in _outcome_texts(raw):
                    report.error_count += 1
                    if len(report.errors) < _ERROR_LINES_KEPT:
                        report.errors.append(text)
        finally:
            close_chunks(chunks)


def _outcome_texts(raw: bytes) -> Iterator[str]:
    try:
        outcome = parse(raw)
    except Exception:  # noqa: BLE001 - an unreadable error line is itself worth one line of the report
        yield "an error line that is not JSON"
        return
    issues = outcome.get("issue") if isinstance(outcome, dict) else None
    for issue in issues if isinstance(issues, list) else [None]:
        if not isinstance(issue, dict):
            yield "an OperationOutcome without issues"
            continue
        details = issue.get("details")
        text = issue.get("diagnostics") or (details.get("text") if isinstance(details, dict) else None)
        yield f"{issue.get('severity', 'error')} {issue.get('code', '')}: {str(text or '(no text)')[:300]}"
