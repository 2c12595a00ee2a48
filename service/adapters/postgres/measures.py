"""What the FLS quality measures read and the MeasureReports they store (measures.sql; docs/measures.md)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any, Final

import orjson
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from service.adapters.postgres.errors import pooled_transaction
from service.adapters.postgres.queries import query
from service.domain.facts import Fact, FactKind
from service.usecases.measures import AlertRow, FactWindow, ReportRow

__all__ = ["PostgresMeasureStore"]

_FILE: Final = "measures.sql"
_KINDS: Final = {kind.value: kind for kind in FactKind}
_EMPTY: Final[dict[str, Any]] = {}


class PostgresMeasureStore:
    """See service.usecases.measures.MeasureStore."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def facts_by_patient(self, window: FactWindow) -> Iterator[tuple[str, list[Fact]]]:
        """See MeasureStore: one row per patient, their facts as a JSON array."""
        params = {
            "as_of": window.as_of,
            "start": window.start,
            "end": window.end,
            "dose_start": window.dose_start,
            "dose_end": window.dose_end,
            "kinds": sorted(k.value for k in window.kinds),
            "drugs": sorted(window.drugs),
        }
        day = date.fromisoformat
        # A client-side cursor read in batches: libpq keeps the result compactly and fetchmany converts in bulk; a
        # server-side cursor took two to three times as long for a year of 100,000 patients (bench/measures.py).
        with pooled_transaction(self._pool) as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(query("measure_facts", _FILE), params)
            while rows := cur.fetchmany(5_000):
                for patient_id, text in rows:
                    yield (
                        patient_id,
                        [
                            # Positional (kind, value_num, value_text, unit, effective_date, effective_at,
                            # end_date, status, attrs): half a million of these, and keywords cost more.
                            Fact(
                                _KINDS[kind],
                                value_num,
                                None,
                                None,
                                day(effective) if effective else None,
                                None,
                                day(end) if end else None,
                                status,
                                attrs or _EMPTY,
                            )
                            for kind, value_num, effective, end, status, attrs in orjson.loads(text)
                        ],
                    )

    def organizations(self) -> dict[str, str]:
        """See MeasureStore."""
        with pooled_transaction(self._pool) as conn:
            rows = conn.execute(query("patient_organizations", _FILE)).fetchall()
        return {r["id"]: r["organization"] for r in rows if r["organization"]}

    def dxa_gap_reasons(self, as_of: datetime) -> dict[str, set[date]]:
        """See MeasureStore: the index days (episode ``index:YYYY-MM-DD``) of DXA-gap alerts dismissed with a reason."""
        out: dict[str, set[date]] = {}
        with pooled_transaction(self._pool) as conn:
            for row in conn.execute(query("dxa_gap_reasons", _FILE), {"as_of": as_of}):
                try:
                    day = date.fromisoformat(str(row["episode"]).removeprefix("index:"))
                except ValueError:
                    continue
                out.setdefault(row["patient_id"], set()).add(day)
        return out

    def alerts_opened(self, start: datetime, end: datetime, as_of: datetime) -> list[AlertRow]:
        """See MeasureStore."""
        with pooled_transaction(self._pool) as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(query("measure_alerts", _FILE), {"from": start, "to": end, "as_of": as_of})
            return [AlertRow(*row) for row in cur.fetchall()]

    def save_reports(self, rows: Sequence[ReportRow]) -> None:
        """See MeasureStore: one transaction, the latest evaluation replaces the last."""
        with pooled_transaction(self._pool) as conn, conn.cursor() as cur:
            cur.executemany(
                query("upsert_measure_report", _FILE),
                [
                    {
                        "id": r.id,
                        "measure_id": r.measure_id,
                        "site": r.site,
                        "period_start": r.period_start,
                        "period_end": r.period_end,
                        "evaluated_at": r.evaluated_at,
                        "resource": Jsonb(r.resource),
                    }
                    for r in rows
                ],
            )

    def search_reports(
        self,
        measure_id: str | None,
        period_from: date | None,
        period_to: date | None,
        site: str | None,
        sites: Sequence[str] | None,
        limit: int,
    ) -> list[str]:
        """See MeasureStore."""
        params = {
            "measure_id": measure_id,
            "period_from": period_from,
            "period_to": period_to,
            "site": site,
            "sites": list(sites) if sites is not None else None,
            "limit": limit,
        }
        with pooled_transaction(self._pool) as conn:
            return [r["body"] for r in conn.execute(query("search_measure_reports", _FILE), params)]

    def read_report(self, report_id: str) -> tuple[str | None, str] | None:
        """See MeasureStore."""
        with pooled_transaction(self._pool) as conn:
            row: Any = conn.execute(query("read_measure_report", _FILE), {"id": report_id}).fetchone()
        return None if row is None else (row["site"], row["body"])
