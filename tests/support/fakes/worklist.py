"""In-memory WorklistStore and SearchStore: what the worklist's SQL (adapters/postgres/worklist.py) and the kept
searches' SQL (adapters/postgres/refusals.sql) do that the Worklist use case relies on."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from service.security.scoping import PatientScope
from service.usecases.ports.worklist import (
    UNASSIGNED,
    PatientRecords,
    SearchStore,
    Sort,
    WorklistFilters,
    WorklistRow,
    WorklistStore,
)

__all__ = ["MemorySearchStore", "MemoryWorklistStore"]

_ACTIVE = frozenset({"open", "acknowledged", "assigned", "snoozed"})


def _keys(sort: Sort, row: WorklistRow) -> list[Any]:
    # The adapter's keyset columns (_KEYS), in the same order.
    if sort is Sort.DUE:
        return [row.due_date, row.alert_id]
    if sort is Sort.PRIORITY:
        return [row.priority_rank, row.due_date, row.alert_id]
    if sort is Sort.RISK:
        return [row.risk_key, row.patient_id, row.alert_id]
    return [row.name_key, row.patient_id, row.alert_id]


class MemoryWorklistStore:
    """Alerts joined with their patients' summaries, as rows; the patient pages as given."""

    def __init__(self) -> None:
        self._rows: dict[str, WorklistRow] = {}
        self._organizations: dict[str, str] = {}  # patient id -> managingOrganization reference
        self._unsummarised: set[str] = set()  # patients without a summary (the risk and name orders skip them)
        self._pages: dict[str, PatientRecords] = {}

    def add(self, row: WorklistRow, organization: str | None = None, summary: bool = True) -> WorklistRow:
        """Keep an alert's row, its sort keys computed as the SQL computes them."""
        row = dataclasses.replace(
            row,
            name_key=(row.name or "").lower(),
            risk_key=-(row.risk_probability if row.risk_probability is not None else -1),
        )
        self._rows[row.alert_id] = row
        if organization is not None:
            self._organizations[row.patient_id] = organization
        if not summary:
            self._unsummarised.add(row.patient_id)
        return row

    def set_page(self, patient_id: str, records: PatientRecords) -> None:
        """What patient_page returns for this patient."""
        self._pages[patient_id] = records

    def _in_scope(self, row: WorklistRow, scope: PatientScope | None) -> bool:
        return scope is None or scope.admits(row.patient_id, self._organizations.get(row.patient_id))

    def _matches(self, row: WorklistRow, f: WorklistFilters) -> bool:
        if row.status not in _ACTIVE:
            return False
        if f.code and row.code != f.code:
            return False
        if f.priority and row.priority != f.priority:
            return False
        if f.state and row.status != f.state:
            return False
        if f.assignee == UNASSIGNED and row.assignee is not None:
            return False
        if f.assignee and f.assignee not in (UNASSIGNED, row.assignee):
            return False
        if f.due_before and row.due_date > f.due_before:
            return False
        if f.risk_band and row.risk_band != f.risk_band:
            return False
        if f.text:
            # The summary's search column: the name and MRN, lower case; the text matched literally.
            search = f"{row.name or ''} {row.mrn or ''}".lower()
            if f.text.lower() not in search:
                return False
        return self._in_scope(row, f.scope)

    def worklist_rows(
        self, filters: WorklistFilters, sort: Sort, after: Sequence[Any] | None, limit: int | None
    ) -> Iterator[WorklistRow]:
        """See WorklistStore."""
        rows = [r for r in self._rows.values() if self._matches(r, filters)]
        if sort in (Sort.RISK, Sort.NAME):
            rows = [r for r in rows if r.patient_id not in self._unsummarised]
        rows.sort(key=lambda r: _keys(sort, r))
        if after is not None:
            rows = [r for r in rows if _keys(sort, r) > list(after)]
        return iter(rows if limit is None else rows[:limit])

    def worklist_position(self, sort: Sort, alert_id: str) -> list[Any] | None:
        """See WorklistStore."""
        row = self._rows.get(alert_id)
        return _keys(sort, row) if row is not None else None

    def worklist_counts(self, scope: PatientScope | None = None) -> list[tuple[str, str, int]]:
        """See WorklistStore."""
        counts: dict[tuple[str, str], int] = {}
        for row in self._rows.values():
            if row.status in _ACTIVE and self._in_scope(row, scope):
                counts[(row.code, row.priority)] = counts.get((row.code, row.priority), 0) + 1
        return [(code, priority, n) for (code, priority), n in sorted(counts.items())]

    def patient_page(self, patient_id: str) -> PatientRecords:
        """See WorklistStore."""
        return self._pages.get(patient_id, PatientRecords(None, None, None, [], [], None))


class MemorySearchStore:
    """The kept searches: each under its id, for its owner, until it expires."""

    def __init__(self) -> None:
        self.searches: dict[str, tuple[str, str, datetime]] = {}  # id -> (owner, text, expires at)

    def save_search(self, search_id: str, owner: str, text: str, expires_at: datetime, now: datetime) -> None:
        """See SearchStore."""
        self.searches = {k: v for k, v in self.searches.items() if not v[2] < now}
        if search_id in self.searches:
            raise KeyError(search_id)  # the primary key
        self.searches[search_id] = (owner, text, expires_at)

    def find_search(self, search_id: str, owner: str, now: datetime) -> str | None:
        """See SearchStore."""
        kept = self.searches.get(search_id)
        if kept is None or kept[0] != owner or not kept[2] > now:
            return None
        return kept[1]


_STORE: type[WorklistStore] = MemoryWorklistStore
_SEARCHES: type[SearchStore] = MemorySearchStore
