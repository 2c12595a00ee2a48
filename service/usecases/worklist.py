"""The care coordinators' worklist: open alerts with who the patient is and their risk, filtered, sorted and paged
by keyset; counts for a dashboard; the patient page's view."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from service.domain.medication_timeline import MedicationEvent, events_of
from service.platform.errors import Problem, refuse
from service.security.scoping import PatientScope
from service.usecases.ports.worklist import (
    SearchStore,
    Sort,
    WorklistFilters,
    WorklistRow,
    WorklistStore,
)

__all__ = ["ACTIVE_STATES", "PatientView", "Worklist", "WorklistPage", "decode_cursor", "encode_cursor"]

ACTIVE_STATES: Final = ("open", "acknowledged", "assigned", "snoozed")


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


def encode_cursor(sort: Sort, alert_id: str) -> str:
    """An opaque cursor: the sort and the id of the last row's alert (a random UUID).

    Never the row's sort key: the name order's key is the patient's name and the risk and name orders' keys hold the
    patient id (an MRN at some hospitals), and cursors travel in URLs, which proxies, browsers and servers log. The
    store finds the key again from the alert id (``WorklistStore.worklist_position``).
    """
    return base64.urlsafe_b64encode(json.dumps([sort.value, alert_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: Sort) -> str:
    """The alert id of a cursor made for this sort.

    Raises:
        RefractureError: the cursor is not one of ours, or was made for another sort.
    """
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) != 2 or values[0] != sort.value:
            raise ValueError("another sort")
        return str(uuid.UUID(values[1]))
    except (ValueError, TypeError, AttributeError, binascii.Error, UnicodeDecodeError, json.JSONDecodeError):
        raise _bad_cursor() from None


def _bad_cursor() -> Exception:
    return refuse(Problem.INVALID, "value", "the cursor is not valid for this sort (start again from the first page)")


# How long a search id works: a round of the worklist, not a bookmark.
SEARCH_TTL: Final = timedelta(hours=1)


class Worklist:
    """Reads for the care coordinators."""

    def __init__(self, store: WorklistStore, searches: SearchStore | None = None) -> None:
        self._store = store
        self._searches = searches

    def remember_search(self, owner: str, text: str, now: datetime) -> tuple[str, datetime]:
        """Keep a search's text (a name or an MRN) server-side; its id and when it expires.

        The id is what URLs carry: the text never goes into a URL, where proxies, browser histories and server logs
        would keep it.
        """
        if self._searches is None:
            raise RuntimeError("no search store configured")
        search_id = secrets.token_urlsafe(16)
        expires_at = now + SEARCH_TTL
        self._searches.save_search(search_id, owner, text[:200], expires_at, now)
        return search_id, expires_at

    def recall_search(self, search_id: str, owner: str, now: datetime) -> str | None:
        """The text of the owner's search, or None when it expired, is someone else's or never was."""
        if self._searches is None or not search_id or len(search_id) > 64:
            return None
        return self._searches.find_search(search_id, owner, now)

    def page(self, filters: WorklistFilters, sort: Sort, cursor: str | None, limit: int) -> WorklistPage:
        """One page of open alerts."""
        after = None
        if cursor:
            after = self._store.worklist_position(sort, decode_cursor(cursor, sort))
            if after is None:
                raise _bad_cursor()
        rows = list(self._store.worklist_rows(filters, sort, after, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return WorklistPage(rows, encode_cursor(sort, rows[-1].alert_id) if more and rows else None)

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
            # The id is not echoed (it can be an MRN): error bodies get copied into other systems' logs.
            raise refuse(Problem.NOT_FOUND, "not-found", "nothing is known about a patient of this id")
        return PatientView(
            patient_id,
            found.summary,
            found.risk_assessment,
            found.assessment_result,
            found.alerts,
            events_of(found.facts),
            found.care_plan,
        )
