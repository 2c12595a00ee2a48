"""Reads for the care coordinators' worklist and the patient page, and the worklist's kept searches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Final, NamedTuple, Protocol

from service.domain.alert_types import title_of
from service.domain.facts import Fact
from service.security.scoping import PatientScope

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

    def worklist_position(self, sort: Sort, alert_id: str) -> list[Any] | None:
        """The keyset position of an alert's row in the sort's order (None: no such alert)."""

    def worklist_counts(self, scope: PatientScope | None = None) -> list[tuple[str, str, int]]:
        """(code, priority, open alerts) of the patients in scope."""

    def patient_page(self, patient_id: str) -> PatientRecords:
        """What the patient page is made of."""


class SearchStore(Protocol):
    """The worklist page's searches, kept server-side under a random id (migration 0015)."""

    def save_search(self, search_id: str, owner: str, text: str, expires_at: datetime, now: datetime) -> None:
        """Keep a search until ``expires_at`` (and drop the expired ones)."""

    def find_search(self, search_id: str, owner: str, now: datetime) -> str | None:
        """The text of an owner's unexpired search, or None."""
