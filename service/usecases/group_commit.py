"""Group commit: the single-resource writes waiting at one moment go to PostgreSQL in one transaction.

One write per transaction pays a commit (a WAL flush), BEGIN and the round trips for every resource; under load most
of a PUT's database time was that (docs/performance.md, bench/put_layers). A writer thread takes every request that
arrived while its previous transaction ran and writes them together; with one request waiting it is a plain write,
so it adds no latency when idle. The doorbell is rung once per group.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Final

from service.usecases.ingest import AuditOf, Ingestor, IngestResult, WriteRequest

__all__ = ["GroupCommit"]

log = logging.getLogger(__name__)

_MAX_GROUP: Final = 200


@dataclass(slots=True)
class _Pending:
    request: WriteRequest
    audit: AuditOf | None
    future: Future[IngestResult]
    context: contextvars.Context  # the caller's (request id, trace span), for the doorbell it rings

    @property
    def key(self) -> tuple[str, str]:
        return (self.request.resource_type, self.request.resource_id)


class GroupCommit:
    """Writes submitted requests in groups on one thread; each caller gets its own result or refusal."""

    def __init__(
        self, ingestor: Ingestor, ring: Callable[[Sequence[str]], object], max_group: int = _MAX_GROUP
    ) -> None:
        """
        Args:
            ring: the doorbell for the patients a group changed (Relay.publish_claimed), rung after the commit and
                before the callers hear back, so an answered write has rung it (or left its row to the relay).
        """
        self._ingestor = ingestor
        self._ring = ring
        self._max_group = max_group
        self._queue: deque[_Pending] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, request: WriteRequest, audit: AuditOf | None = None) -> Future[IngestResult]:
        """Queue one write (as ``Ingestor.write`` with ``claim=True``); the future holds its result or its error."""
        pending = _Pending(request, audit, Future(), contextvars.copy_context())
        with self._ready:
            if self._closed:
                raise RuntimeError("the group-commit writer is closed")
            self._queue.append(pending)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                self._thread.start()
            self._ready.notify()
        return pending.future

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                group = self._take()
            try:
                self._write(group)
            except BaseException as exc:  # never leave a caller waiting on a future nobody will resolve
                for pending in group:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                log.exception("the group-commit writer failed on a group of %d writes", len(group))

    def _take(self) -> list[_Pending]:
        # A second write of a resource already in the group waits for the next one: one group, distinct resources.
        group: list[_Pending] = []
        keys: set[tuple[str, str]] = set()
        while self._queue and len(group) < self._max_group:
            pending = self._queue[0]
            if pending.key in keys or (group and not _groupable(pending.request)):
                break
            self._queue.popleft()
            group.append(pending)
            keys.add(pending.key)
            if not _groupable(pending.request):
                break
        return group

    def _write(self, group: list[_Pending]) -> None:
        results: list[IngestResult | BaseException]
        if len(group) == 1:  # _take leaves a Medication alone
            results = [self._alone(group[0])]
        else:
            try:
                results = list(self._ingestor.write_group([(p.request, p.audit) for p in group]))
            except Exception as exc:  # noqa: BLE001 - a refusal or conflict in one: each is then written on its own
                log.info("a group of %d writes failed (%s); writing them one by one", len(group), type(exc).__name__)
                results = [self._alone(p) for p in group]
        changed = sorted({p for r in results if isinstance(r, IngestResult) for p in r.changed_patients})
        if changed:
            try:
                group[0].context.run(self._ring, changed)
            except Exception:  # the rows stay claimed; the relay rings them again after redeliver_after_s
                log.exception("the doorbell of a group of %d writes failed", len(group))
        for pending, result in zip(group, results, strict=True):
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)

    def _alone(self, pending: _Pending) -> IngestResult | BaseException:
        try:
            return self._ingestor.write(pending.request, claim=True, audit=pending.audit)
        except Exception as exc:  # noqa: BLE001 - the caller's own error, raised where it awaits its future
            return exc


def _groupable(request: WriteRequest) -> bool:
    # A Medication's write re-reads the resources that name it and changes their patients' facts: written alone.
    return request.resource_type != "Medication"
