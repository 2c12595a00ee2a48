"""The worklist's reads on a pool of their own (usecases.worklist.WorklistStore): the read replica when one is set.

The pool (pool.make_read_pool) is read-only and carries the read statement time-out, so these reads neither wait for
connections ingest holds nor hold one for long themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from service.adapters.postgres import worklist
from service.adapters.postgres.assessments import PostgresAssessmentSession
from service.adapters.postgres.errors import pooled_transaction
from service.platform.errors import ConcurrentWrite, Problem, refuse
from service.security.scoping import PatientScope
from service.usecases.ports.worklist import PatientRecords, Sort, WorklistFilters, WorklistRow

__all__ = ["PostgresWorklistStore"]

Conn = psycopg.Connection[dict[str, Any]]


class PostgresWorklistStore:
    """See usecases.worklist.WorklistStore."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Conn]:
        try:
            with pooled_transaction(self._pool) as conn:
                yield conn
        except ConcurrentWrite as exc:
            # A read has nothing to retry as a unit of work: on a hot standby this is a query cancelled by a
            # conflict with recovery (SQLSTATE 40001), which the next try usually passes.
            raise refuse(Problem.UNAVAILABLE, "transient", "the read was interrupted; try again") from exc

    def worklist_rows(
        self, filters: WorklistFilters, sort: Sort, after: Sequence[Any] | None, limit: int | None
    ) -> Iterator[WorklistRow]:
        """See WorklistStore."""
        with self._transaction() as conn:
            yield from worklist.worklist_rows(conn, filters, sort, after, limit)

    def worklist_position(self, sort: Sort, alert_id: str) -> list[Any] | None:
        """See WorklistStore."""
        with self._transaction() as conn:
            return worklist.worklist_position(conn, sort, alert_id)

    def worklist_counts(self, scope: PatientScope | None = None) -> list[tuple[str, str, int]]:
        """See WorklistStore."""
        with self._transaction() as conn:
            return worklist.worklist_counts(conn, scope)

    def patient_page(self, patient_id: str) -> PatientRecords:
        """See WorklistStore."""
        with self._transaction() as conn:
            facts = PostgresAssessmentSession(conn).facts_of([patient_id])
            return worklist.patient_page(conn, patient_id, facts)
