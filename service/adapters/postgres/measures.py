"""What the FLS quality measures read and the MeasureReports they store (measures.sql; docs/measures.md)."""

from __future__ import annotations

import contextlib
import queue
import threading
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
from service.usecases.ports.measures import AlertRow, FactWindow, ReportRow

__all__ = ["PostgresMeasureStore"]

_FILE: Final = "measures.sql"
_KINDS: Final = {kind.value: kind for kind in FactKind}
_EMPTY: Final[dict[str, Any]] = {}
_BATCH: Final = 2_000  # patients a fetch brings
_AHEAD: Final = 8  # batches fetched ahead of the reader at most


class PostgresMeasureStore:
    """See service.usecases.ports.measures.MeasureStore."""

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
        for batch in self._fetched_ahead(params):
            for patient_id, text in batch:
                yield (
                    patient_id,
                    [
                        # Positional (kind, value_num, value_text, unit, effective_date, effective_at, end_date,
                        # status, attrs): half a million of these, and keywords cost more.
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

    def _fetched_ahead(self, params: dict[str, Any]) -> Iterator[list[tuple[str, str]]]:
        """The rows of measure_facts in batches, fetched by a thread of their own from a server-side cursor: the
        database computes the next batches while the caller derives the cases of this one (bench/measures.py), and
        holds no more than a few batches here."""
        batches: queue.Queue[list[tuple[str, str]] | BaseException | None] = queue.Queue(maxsize=_AHEAD)
        stop = threading.Event()

        def fetch() -> None:
            try:
                with pooled_transaction(self._pool) as conn:
                    # The sort by patient of a year of 100,000 patients (~60 MB): in memory, not temporary files.
                    conn.execute("SET LOCAL work_mem = '128MB'")
                    with conn.cursor("measure_facts", row_factory=tuple_row) as cur:
                        cur.execute(query("measure_facts", _FILE), params)
                        while not stop.is_set() and (rows := cur.fetchmany(_BATCH)):
                            batches.put(rows)
                batches.put(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread, which raises it
                batches.put(exc)

        fetcher = threading.Thread(target=fetch, name="measure-facts", daemon=True)
        fetcher.start()
        try:
            while (item := batches.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # A reader that stops early: the fetcher ends at its next batch (draining frees a blocked put).
            stop.set()
            while fetcher.is_alive():
                with contextlib.suppress(queue.Empty):
                    batches.get(timeout=0.05)
            fetcher.join()

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
