"""The daily sweep: every patient whose next threshold has passed is assessed and has its alerts evaluated.

It reads the index of next-check dates, not every patient, so it costs what is due. Safe to run twice (the
evaluated patients' next dates move past today) and safe after a missed day (everything due up to today is taken).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime

from service.usecases.patient_pipeline import PatientPipeline, PipelineOutcome
from service.usecases.ports.alerts import AlertStore
from service.usecases.ports.clock import Clock

__all__ = ["SweepOutcome", "Sweeper"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SweepOutcome:
    """What a sweep did."""

    patients: int = 0
    opened: int = 0
    resolved: int = 0
    care_plans: int = 0


class Sweeper:
    """Runs the time-driven part of the rules."""

    def __init__(
        self,
        store: AlertStore,
        pipeline: PatientPipeline,
        clock: Clock,
        today: Callable[[datetime], date],
        batch_size: int = 500,
        workers: int = 2,
    ) -> None:
        """Args: ``workers`` batches in flight at once, each in its own transaction and connection: one batch's
        Python work overlaps another's time in PostgreSQL (the GIL is released while a query runs)."""
        self._store = store
        self._pipeline = pipeline
        self._clock = clock
        self._today = today
        self._batch_size = batch_size
        self._workers = max(1, workers)

    def sweep(self, everyone: bool = False) -> SweepOutcome:
        """Assess and evaluate every patient due today, in batches (one transaction each).

        The batches are disjoint (keyset order), so running them side by side locks nothing twice; a failed batch
        stops the sweep after the batches in flight, and the next sweep takes up what is still due.

        Args:
            everyone: every patient refracture knows, not only the due ones (after an upgrade that added rules,
                or to rebuild every care plan).
        """
        today = self._today(self._clock())
        outcome = SweepOutcome()
        after = ""
        in_flight: deque[tuple[int, Future[PipelineOutcome]]] = deque()
        with ThreadPoolExecutor(self._workers, thread_name_prefix="sweep") as pool:
            try:
                while True:
                    if everyone:
                        batch = self._store.all_patients(after, self._batch_size)
                    else:
                        batch = self._store.due_for_sweep(today, after, self._batch_size)
                    if not batch:
                        break
                    # Time changes risk inputs too (a denosumab dose turning late), so the risk is refreshed first:
                    # the pipeline assesses, then evaluates, from one read of the batch's facts in one transaction.
                    in_flight.append((len(batch), pool.submit(self._pipeline.run, batch)))
                    after = batch[-1]
                    while len(in_flight) >= self._workers:
                        _add(outcome, *in_flight.popleft())
                while in_flight:
                    _add(outcome, *in_flight.popleft())
            finally:
                for _, future in in_flight:
                    future.cancel()
        log.info(
            "sweep for %s: %d patients, %d alerts opened, %d resolved",
            today,
            outcome.patients,
            outcome.opened,
            outcome.resolved,
        )
        return outcome


def _add(outcome: SweepOutcome, patients: int, future: Future[PipelineOutcome]) -> None:
    result = future.result().alerts
    outcome.patients += patients
    outcome.opened += result.opened
    outcome.resolved += result.resolved
    outcome.care_plans += result.care_plans
