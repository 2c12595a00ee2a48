"""The model calibration registry in PostgreSQL (migration 0010): registered calibrations and evaluation runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any, LiteralString

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from service.adapters.postgres.assessments import PostgresAssessmentSession, patients_to_rescore
from service.adapters.postgres.errors import pooled_transaction
from service.adapters.postgres.queries import query
from service.domain.calibration import Calibration
from service.fhir.jsonio import dumps
from service.usecases.ports.calibration import CalibrationRecord, EvaluationRecord

__all__ = ["PostgresCalibrationStore"]

Conn = psycopg.Connection[dict[str, Any]]


def _query(name: str) -> LiteralString:
    return query(name, "calibration.sql")


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=lambda v: dumps(v).decode())


def _calibration(row: dict[str, Any]) -> Calibration:
    return Calibration(
        row["version"], row["base_version"], row["method"], row["intercept"], row["slope"], row["n"], row["events"]
    )


class PostgresCalibrationStore:
    """Implements the CalibrationStore port over a connection pool."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def _transaction(self) -> contextlib.AbstractContextManager[Conn]:
        return pooled_transaction(self._pool)

    def active_calibration(self, base_version: str) -> Calibration | None:
        """See CalibrationStore."""
        with self._transaction() as conn:
            row = conn.execute(_query("active_calibration"), {"base_version": base_version}).fetchone()
        return _calibration(row) if row else None

    def record_run(self, evaluation: EvaluationRecord, calibration: CalibrationRecord | None) -> None:
        """See CalibrationStore."""
        with self._transaction() as conn:
            if calibration is not None:
                cal = calibration.calibration
                conn.execute(
                    _query("insert_calibration"),
                    {
                        "version": cal.version,
                        "base_version": cal.base_version,
                        "parent_version": calibration.parent_version,
                        "method": cal.method,
                        "intercept": cal.intercept,
                        "slope": cal.slope,
                        "fitted_at": calibration.fitted_at,
                        "n": cal.n,
                        "events": cal.events,
                        "metrics": _jsonb(calibration.metrics),
                    },
                )
            conn.execute(
                _query("insert_evaluation"),
                {
                    "evaluated_at": evaluation.evaluated_at,
                    "current_version": evaluation.current_version,
                    "candidate_version": evaluation.candidate_version,
                    "registered": evaluation.registered,
                    "reason": evaluation.reason,
                    "metrics": _jsonb(evaluation.metrics),
                },
            )

    def patients_with_augmentation(self, after: str, limit: int) -> list[str]:
        """See CalibrationStore."""
        with self._transaction() as conn:
            return patients_to_rescore(conn, after, limit)

    def patients_operated_by(self, day: date, after: str, limit: int) -> list[str]:
        """See CalibrationStore."""
        with self._transaction() as conn:
            rows = conn.execute(_query("patients_operated_by"), {"day": day, "after": after, "limit": limit})
            return [r["patient_id"] for r in rows]

    @contextlib.contextmanager
    def fact_reader(self) -> Iterator[PostgresAssessmentSession]:
        """See CalibrationStore (the assessment session's reads, without its locks)."""
        with self._transaction() as conn:
            yield PostgresAssessmentSession(conn)

    def calibrations(self, limit: int = 50) -> list[CalibrationRecord]:
        """Registered calibrations, newest first (retired ones too)."""
        with self._transaction() as conn:
            rows = conn.execute(_query("list_calibrations"), {"limit": limit}).fetchall()
        return [
            CalibrationRecord(_calibration(r), r["parent_version"], r["fitted_at"], r["metrics"], r["retired_at"])
            for r in rows
        ]

    def latest_evaluation(self) -> EvaluationRecord | None:
        """The newest recalibration run, registered or not."""
        with self._transaction() as conn:
            row = conn.execute(_query("latest_evaluation")).fetchone()
        if row is None:
            return None
        return EvaluationRecord(
            row["evaluated_at"],
            row["current_version"],
            row["candidate_version"],
            row["registered"],
            row["reason"],
            row["metrics"],
        )

    def retire_all(self, now: datetime) -> list[str]:
        """Take every calibration out of use: the literature model applies again (then rescore)."""
        with self._transaction() as conn:
            return [r["version"] for r in conn.execute(_query("retire_calibrations"), {"now": now}).fetchall()]
