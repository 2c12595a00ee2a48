"""Rescore with several processes, each taking one partition of the patients (the command line's --workers)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from service.composition.cli import command_parts
from service.platform.config import Settings
from service.platform.logs import configure_logging
from service.usecases.assess import AssessOutcome

__all__ = ["rescore_in_parallel"]


def _one_part(
    settings: Settings, patient_ids: Sequence[str] | None, batch_size: int, part: int, parts: int
) -> tuple[int, int, int]:
    with command_parts(settings) as built:
        if patient_ids is not None:
            outcome = built.assessor.rescore(list(patient_ids[part::parts]), batch_size)
        else:
            outcome = built.assessor.rescore(None, batch_size, part, parts)
    return outcome.assessed, outcome.unchanged, outcome.not_applicable


def rescore_in_parallel(
    settings: Settings, patient_ids: Sequence[str] | None, batch_size: int, workers: int
) -> AssessOutcome:
    """Rescore with ``workers`` processes (1 runs in this process).

    Returns:
        The totals of all processes.
    """
    if workers <= 1:
        return _sum([_one_part(settings, patient_ids, batch_size, 0, 1)])
    # spawn: a fresh interpreter per process, so no pool, socket or lock is inherited half-open.
    context = multiprocessing.get_context("spawn")
    # A spawned process starts without our logging: it would print warnings as plain (possibly revealing) text.
    with ProcessPoolExecutor(workers, mp_context=context, initializer=configure_logging) as pool:
        futures = [pool.submit(_one_part, settings, patient_ids, batch_size, part, workers) for part in range(workers)]
        return _sum([future.result() for future in futures])


def _sum(parts: list[tuple[int, int, int]]) -> AssessOutcome:
    return AssessOutcome(sum(p[0] for p in parts), sum(p[1] for p in parts), sum(p[2] for p in parts))
