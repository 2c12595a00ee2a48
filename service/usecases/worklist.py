"""The care coordinators' worklist: open alerts with who the patient is and their risk, filtered, sorted and paged
by keyset; counts for a dashboard; the patient page's view."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any, Final, NamedTuple, Protocol

from service.domain.alert_types import title_of
from service.domain.facts import Fact
from service.domain.medication_timeline import MedicationEvent, events_of
from service.errors import Problem, refuse
from service.security.scoping import PatientScope

__all__ = [
    "ACTIVE_STATES",
    "PatientRecords",
    "PatientView",
    "Sort",
    "Worklist",
    "WorklistFilters",
    "WorklistPage",
    "WorklistRow",
    "WorklistStore",
    "decode_cursor",
    "encode_cursor",
]

ACTIVE_STATES: Final = ("open", "acknowledged", "assigned", "snoozed")
UNASSIGNED: Final = "-"


class Sort(StrEnum):
    """Worklist orders; each is a keyset over its columns and the alert id."""

    DUE = "due"  # overdue first
    PRIORITY = "priority"  # urgent first, then due
    RISK = "risk"  # highest risk first, then by patient
    NAME = "name"  # then by patient


@dataclass(frozen=True, slots=True)
class WorklistFilters:
    """Filters; None means no filter."""

    code: str | None = None
    priority: str | None = None
    state: str | None = None
    assignee: str | None = None  # "-" for unassigned
    due_before: date | None = None
    risk_band: str | None = None
    text: str | None = None  # in name or MRN
    scope: PatientScope | None = None  # the caller's patients (sites, break-the-glass grants); None: everyone


@dataclass(frozen=True, slots=True)
class WorklistRow:
    """One open alert with its patient."""

    alert_id: str
    code: str
    priority: str
    priority_rank: int
    status: str
    due_date: date
    assignee: str | None
    snoozed_until: date | None
    revision: int
    detail: str
    patient_id: str
    name: str | None
    mrn: str | None
    birth_date: date | None
    sex: str | None
    risk_band: str | None
    risk_probability: float | None
    last_dose_date: date | None
    last_dose_drug: str | None
    index_date: date | None
    # The sort keys as the database computed them (its lower() and collation), so cursors match its order.
    name_key: str = ""
    risk_key: float = 1.0

    @property
    def title(self) -> str:
        """The alert in plain words."""
        return title_of(self.code)


@dataclass(frozen=True, slots=True)
class WorklistPage:
    """A page of rows and the cursor of the next page (None on the last)."""

    rows: list[WorklistRow]
    next_cursor: str | None


@dataclass(slots=True)
class PatientView:
    """Everything the patient page shows."""

    patient_id: str
    summary: dict[str, Any] | None
    risk_assessment: dict[str, Any] | None
    assessment_result: dict[str, Any] | None
    alerts: list[dict[str, Any]] = field(default_factory=list)  # each with its "history"
    medications: list[MedicationEvent] = field(default_factory=list)
    care_plan: dict[str, Any] | None = None


class PatientRecords(NamedTuple):
    """The stored records behind the patient page."""

    summary: dict[str, Any] | None
    risk_assessment: dict[str, Any] | None  # the latest RiskAssessment
    assessment_result: dict[str, Any] | None  # its contributions, inputs and missing inputs
    alerts: list[dict[str, Any]]  # each with its "history"
    facts: list[Fact]
    care_plan: dict[str, Any] | None


class WorklistStore(Protocol):
    """Reads for the worklist."""

    def worklist_rows(
        self, filters: WorklistFilters, sort: Sort, after: Sequence[Any] | None, limit: int | None
    ) -> Iterator[WorklistRow]:
        """Open alerts in the sort's order, after a keyset position, at most ``limit`` (None: all)."""

    def worklist_counts(self, scope: PatientScope | None = None) -> list[tuple[str, str, int]]:
        """(code, priority, open alerts) of the patients in scope."""

    def patient_page(self, patient_id: str) -> PatientRecords:
        """What the patient page is made of."""


def _sort_key(row: WorklistRow, sort: Sort) -> list[Any]:
    if sort is Sort.PRIORITY:
        return [row.priority_rank, row.due_date.isoformat(), row.alert_id]
    if sort is Sort.RISK:
        return [row.risk_key, row.patient_id, row.alert_id]
    if sort is Sort.NAME:
        return [row.name_key, row.patient_id, row.alert_id]
    return [row.due_date.isoformat(), row.alert_id]


def encode_cursor(sort: Sort, key: list[Any]) -> str:
    """An opaque cursor: the sort and the last row's key."""
    return base64.urlsafe_b64encode(json.dumps([sort.value, *key]).encode()).decode().rstrip("=")


_KEY_TYPES: Final = {
    Sort.DUE: (date.fromisoformat, str),
    Sort.PRIORITY: (int, date.fromisoformat, str),
    Sort.RISK: (float, str, str),
    Sort.NAME: (str, str, str),
}


def decode_cursor(cursor: str, sort: Sort) -> list[Any]:
    """The keyset position of a cursor made for this sort.

    Raises:
        RefractureError: the cursor is not one of ours, or was made for another sort.
    """
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or not values or values[0] != sort.value:
            raise ValueError("another sort")
        types = _KEY_TYPES[sort]
        if len(values) != len(types) + 1:
            raise ValueError("wrong length")
        return [kind(value) for kind, value in zip(types, values[1:], strict=True)]
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, json.JSONDecodeError):
        raise refuse(
            Problem.INVALID, "value", "the cursor is not valid for this sort (start again from the first page)"
        ) from None


class Worklist:
    """Reads for the care coordinators."""

    def __init__(self, store: WorklistStore) -> None:
        self._store = store

    def page(self, filters: WorklistFilters, sort: Sort, cursor: str | None, limit: int) -> WorklistPage:
        """One page of open alerts."""
        after = decode_cursor(cursor, sort) if cursor else None
        rows = list(self._store.worklist_rows(filters, sort, after, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return WorklistPage(rows, encode_cursor(sort, _sort_key(rows[-1], sort)) if more and rows else None)

    def export(self, filters: WorklistFilters, sort: Sort) -> Iterator[WorklistRow]:
        """Every row of the filter, for CSV export."""
        return self._store.worklist_rows(filters, sort, None, None)

    def counts(self, scope: PatientScope | None = None) -> list[tuple[str, str, int]]:
        """Open alerts per code and priority (of the patients in scope)."""
        return self._store.worklist_counts(scope)

    def patient(self, patient_id: str) -> PatientView:
        """The patient page's content.

        Raises:
            RefractureError: NOT_FOUND when refracture has nothing about this patient.
        """
        found = self._store.patient_page(patient_id)
        if found.summary is None and found.risk_assessment is None and not found.alerts and not found.facts:
            raise refuse(Problem.NOT_FOUND, "not-found", f"nothing is known about Patient/{patient_id}")
        return PatientView(
            patient_id,
            found.summary,
            found.risk_assessment,
            found.assessment_result,
            found.alerts,
            events_of(found.facts),
            found.care_plan,
        )
