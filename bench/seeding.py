"""What the benchmarks that seed a private database by COPY share: the alert codes, the COPY statements of the
resource and alert tables, and seeding timed together with the ANALYZE after it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import psycopg

__all__ = ["ALERT_CODES", "ALERT_COPY", "RESOURCE_COPY", "seeded"]

T = TypeVar("T")

ALERT_CODES = ("bmd-assessment-gap", "treatment-gap", "denosumab-overdue", "adherence-check-due")
RESOURCE_COPY = (
    "COPY resource (resource_type, id, version_id, last_updated_at, content_hash, patient_id, body) FROM STDIN"
)
ALERT_COPY = (
    "COPY alert (id, patient_id, code, status, priority, due_date, episode, evidence, detail, opened_at, "
    "updated_at, closed_at) FROM STDIN"
)


def seeded(database_url: str, seed: Callable[[], T]) -> tuple[T, float]:
    """Run ``seed``, then ANALYZE (the planner needs the new tables' statistics): what it gave and the seconds both
    took."""
    started = time.perf_counter()
    out = seed()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return out, time.perf_counter() - started
