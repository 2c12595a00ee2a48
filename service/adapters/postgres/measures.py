"""What the FLS quality measures read and the MeasureReports they store (measures.sql; docs/measures.md)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any, Final

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
        """See MeasureStore: one server-side cursor over the facts, ordered by patient."""
        params = {
            "as_of": window.as_of,
            "start": window.start,
            "end": window.end,
            "dose_start": window.dose_start,
            "dose_end": window.dose_end,
            "kinds": sorted(k.value for k in window.kinds),
            "drugs": sorted(window.drugs),
        }
        with pooled_transaction(self._pool) as conn, conn.cursor("measure_facts", row_factory=tuple_row) as cur:
            cur.itersize = 20_000
            cur.execute(query("measure_facts", _FILE), params)
            current: str | None = None
            facts: list[Fact] = []
            for patient_id, kind, value_num, effective_date, end_date, status, attrs in cur:
                if patient_id != current:
                    if current is not None:
                        yield current, facts
                    current, facts = patient_id, []
                facts.append(
                    Fact(
                        _KINDS[kind],
                        value_num,
                        effective_date=effective_date,
                        end_date=end_date,
                        status=status,
                        attrs=attrs or _EMPTY,
                    )
                )
            if current is not None:
                yield current, facts

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
        with pooled_transaction(self._pool) as conn:
            rows = conn.execute(query("measure_alerts", _FILE), {"from": start, "to": end, "as_of": as_of})
            return [
                AlertRow(r["patient_id"], r["code"], r["opened_at"], r["first_action_at"], r["resolved_at"])
                for r in rows
            ]

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
