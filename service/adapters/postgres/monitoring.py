"""Model monitoring in PostgreSQL (migration 0019): the monthly read of stored assessments and alerts, and the
daily rows of figures (usecases/model_monitoring.py)."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from datetime import date, datetime
from typing import Any, LiteralString

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from service.adapters.postgres.errors import pooled_transaction
from service.adapters.postgres.queries import query
from service.domain.model_monitoring import MonitoredAssessment
from service.fhir.jsonio import dumps
from service.usecases.ports.monitoring import MonitoringRecord

__all__ = ["PostgresMonitoringStore"]

Conn = psycopg.Connection[dict[str, Any]]


def _query(name: str) -> LiteralString:
    return query(name, "monitoring.sql")


def _value(v: Any) -> float | bool | str | None:
    return v if isinstance(v, bool | int | float | str) else None


class PostgresMonitoringStore:
    """Implements the MonitoringStore port over a connection pool."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def _transaction(self) -> contextlib.AbstractContextManager[Conn]:
        return pooled_transaction(self._pool)

    def monthly_assessments(self, since: date) -> dict[str, list[MonitoredAssessment]]:
        """See MonitoringStore. The inputs are the stored result's known inputs (``result.inputs``, what the model
        scored) and its ``missing`` list."""
        out: dict[str, list[MonitoredAssessment]] = defaultdict(list)
        with self._transaction() as conn, conn.cursor() as cur:
            cur.execute(_query("monitoring_assessments"), {"since": since})
            for row in cur:
                raw = row["inputs"] if isinstance(row["inputs"], dict) else {}
                inputs = {k: v for k, v in ((str(k), _value(v)) for k, v in raw.items()) if v is not None}
                missing = row["missing"] if isinstance(row["missing"], list) else []
                out[row["month"]].append(
                    MonitoredAssessment(inputs, frozenset(str(m) for m in missing), row["probability"], row["band"])
                )
        return dict(out)

    def alert_patients(self, since: date) -> dict[str, dict[str, int]]:
        """See MonitoringStore."""
        out: dict[str, dict[str, int]] = defaultdict(dict)
        with self._transaction() as conn:
            for row in conn.execute(_query("monitoring_alert_patients"), {"since": since}):
                out[row["month"]][row["code"]] = row["patients"]
        return dict(out)

    def record(self, record: MonitoringRecord, prune_before: datetime) -> None:
        """See MonitoringStore."""
        with self._transaction() as conn:
            conn.execute(
                _query("insert_monitoring"),
                {
                    "computed_at": record.computed_at,
                    "model_version": record.model_version,
                    "warning": record.warning,
                    "summary": Jsonb(record.summary, dumps=lambda v: dumps(v).decode()),
                },
            )
            conn.execute(_query("prune_monitoring"), {"before": prune_before})

    def latest(self) -> MonitoringRecord | None:
        """See MonitoringStore."""
        with self._transaction() as conn:
            row = conn.execute(_query("latest_monitoring")).fetchone()
        if row is None:
            return None
        return MonitoringRecord(row["computed_at"], row["model_version"], row["warning"], row["summary"])
