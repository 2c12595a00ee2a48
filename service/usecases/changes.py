"""The workers' side of the outbox: handle each changed patient once for its latest data, then mark it done."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from service.usecases.ports.clock import Clock
from service.usecases.ports.outbox import OutboxStore

__all__ = ["ChangeProcessor", "PatientWork"]

log = logging.getLogger(__name__)

# What to do for changed patients (assess risk, evaluate alerts); each step commits its own results.
PatientWork = Callable[[Sequence[str]], None]


class ChangeProcessor:
    """Runs the patient work for a doorbell's patients; safe to run twice, and for stale doorbells."""

    def __init__(self, store: OutboxStore, clock: Clock, work: Sequence[PatientWork] = ()) -> None:
        self._store = store
        self._clock = clock
        self._work = list(work)

    def add_work(self, work: PatientWork) -> None:
        """Register one more step (the risk and alert use cases register themselves here)."""
        self._work.append(work)

    def process(self, patient_ids: Sequence[str]) -> int:
        """Handle the patients whose changes are not done yet.

        The sequence numbers are read before the work, so a change that arrives during the work stays pending
        and is handled by the next doorbell.

        Returns:
            How many patients were handled.
        """
        with self._store.outbox() as outbox:
            pending = outbox.pending(sorted(set(patient_ids)))
        if not pending:
            return 0
        ids = sorted(pending)
        for step in self._work:
            step(ids)
        with self._store.outbox() as outbox:
            outbox.mark_done(pending, self._clock())
        log.info("handled changes of %d patients", len(ids))
        return len(ids)
