"""The relay: rings the workers' doorbell for every patient whose change is not yet handled."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence

from service.usecases.ports.clock import Clock
from service.usecases.ports.outbox import OutboxStore
from service.usecases.ports.queue import TaskQueue
from service.usecases.task_names import TASK_PATIENTS_CHANGED

__all__ = ["Relay"]

log = logging.getLogger(__name__)


class Relay:
    """Publishes outbox rows to the queue at least once; the rows, not the messages, are the record."""

    def __init__(
        self,
        store: OutboxStore,
        queue: TaskQueue,
        clock: Clock,
        *,
        redeliver_after_s: float,
        batch_size: int,
        chunk_size: int,
    ) -> None:
        self._store = store
        self._queue = queue
        self._clock = clock
        self._redeliver_after_s = redeliver_after_s
        self._batch_size = batch_size
        self._chunk_size = chunk_size
        # publish_claimed's coalescing: patients waiting for the call that is publishing now
        self._doorbell = threading.Lock()
        self._waiting: set[str] = set()
        self._publishing = False

    def publish_claimed(self, patient_ids: Sequence[str]) -> int:
        """Ring the doorbell for changes whose rows the write's own transaction marked rung (``claim=True``).

        No transaction of its own when the broker takes the tasks (the write already committed the claim); when it
        refuses, the rows are released, and the relay's next run (beat, every ``relay_interval_s``) rings them. If the
        process dies between the commit and this call, the rows count as rung and are rung again once
        ``redeliver_after_s`` has passed, as a lost message is.

        Concurrent calls coalesce: while one call publishes, the others add their patients to the next publish and
        return at once, so under load one task carries many patients (the task's request id and trace context are
        the publishing call's) instead of one broker round trip per write.

        Returns:
            How many patients this call published itself (0 when it handed them to the call publishing already, or
            when the broker is unreachable).
        """
        with self._doorbell:
            self._waiting.update(patient_ids)
            if self._publishing:
                return 0
            self._publishing = True
        published = 0
        try:
            while True:
                with self._doorbell:
                    ids = sorted(self._waiting)
                    self._waiting.clear()
                    if not ids:
                        self._publishing = False
                        return published
                published += self._publish(ids)
        except BaseException:
            with self._doorbell:
                self._publishing = False
            raise

    def _publish(self, ids: list[str]) -> int:
        try:
            for chunk in chunks(ids, self._chunk_size):
                self._queue.send(TASK_PATIENTS_CHANGED, [list(chunk)])
        except Exception as exc:  # noqa: BLE001 - any broker failure: hand the rows back to the relay
            log.warning("relay could not publish (%s); the outbox keeps the changes", exc)
            try:
                with self._store.outbox() as outbox:
                    outbox.release(ids)
            except Exception as released:  # noqa: BLE001 - the rows are rung again after redeliver_after_s
                log.warning("claimed changes not released (%s); rung again after the redelivery wait", released)
            return 0
        return len(ids)

    def ring(self, patient_ids: Sequence[str] | None = None) -> int:
        """Publish due changes: those of these patients (right after their ingest), or all that are due.

        The rows are marked and the tasks sent in one transaction: if the broker refuses, nothing is marked and
        the next run tries again. A message lost after that is re-sent once ``redeliver_after_s`` has passed.

        Returns:
            How many patients were published (0 when the broker is unreachable).
        """
        total = 0
        while True:
            try:
                with self._store.outbox() as outbox:
                    now = self._clock()
                    if patient_ids is not None:
                        claimed = outbox.claim_given(patient_ids, now)
                    else:
                        claimed = outbox.claim_to_publish(now, self._redeliver_after_s, self._batch_size)
                    for chunk in chunks(claimed, self._chunk_size):
                        self._queue.send(TASK_PATIENTS_CHANGED, [list(chunk)])
            except Exception as exc:  # noqa: BLE001 - any broker failure: leave the rows for the next run
                log.warning("relay could not publish (%s); the outbox keeps the changes", exc)
                return total
            total += len(claimed)
            if patient_ids is not None or len(claimed) < self._batch_size:
                return total


def chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
