"""In-memory MeasureStore: what the measures' SQL (adapters/postgres/measures.sql) does that Measures relies on: the
candidate patients' facts of the window's kinds (medications of its drugs only) known by the evaluation time, the
patients' organisations, the alerts opened in the period, and the kept reports (one per id, newest evaluation)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime

from service.domain.facts import Fact, FactKind
from service.usecases.ports.measures import AlertRow, FactWindow, MeasureStore, ReportRow

__all__ = ["MemoryMeasureStore"]

_INDEX_KINDS = frozenset({FactKind.VERTEBRAL_AUGMENTATION, FactKind.VERTEBRAL_FRACTURE})
_DENOSUMAB = frozenset({"denosumab-60mg", "denosumab"})
_NO_ATTRS = frozenset({FactKind.BIRTH_DATE, FactKind.DECEASED, FactKind.DXA_T_SCORE, FactKind.DXA_BMD})


def _known(fact: Fact, as_of: datetime) -> bool:
    return fact.recorded_at is None or fact.recorded_at <= as_of


def _between(day: date | None, start: date, end: date) -> bool:
    return day is not None and start <= day <= end


class MemoryMeasureStore:
    """Facts, organisations, dismissal reasons and alerts put in by the test; the reports kept by ``save_reports``."""

    def __init__(self) -> None:
        self.facts: dict[str, list[Fact]] = {}
        self.patient_organizations: dict[str, str] = {}
        self.reasons: dict[str, set[date]] = {}  # as dxa_gap_reasons gives them (the dismissals are the test's)
        self.alerts: list[AlertRow] = []
        self.reports: dict[str, ReportRow] = {}

    def put(self, patient_id: str, facts: Iterable[Fact], organization: str | None = None) -> None:
        """Store a patient's facts (and their Patient's managingOrganization)."""
        self.facts.setdefault(patient_id, []).extend(facts)
        if organization is not None:
            self.patient_organizations[patient_id] = organization

    def _candidate(self, facts: list[Fact], w: FactWindow) -> bool:
        return any(
            _known(f, w.as_of)
            and (
                (f.kind in _INDEX_KINDS and _between(f.effective_date, w.start, w.end))
                or (
                    f.kind is FactKind.MEDICATION
                    and f.attrs.get("drug") in _DENOSUMAB
                    and _between(f.effective_date, w.dose_start, w.dose_end)
                )
            )
            for f in facts
        )

    def facts_by_patient(self, window: FactWindow) -> Iterator[tuple[str, list[Fact]]]:
        """See MeasureStore. The facts come back with only the columns the SQL returns."""
        for patient_id, facts in self.facts.items():
            if not self._candidate(facts, window):
                continue
            yield (
                patient_id,
                [
                    Fact(
                        f.kind,
                        value_num=f.value_num,
                        effective_date=f.effective_date,
                        end_date=f.end_date,
                        status=f.status,
                        attrs={} if f.kind in _NO_ATTRS else dict(f.attrs),
                    )
                    for f in facts
                    if f.kind in window.kinds
                    and _known(f, window.as_of)
                    and (f.kind is not FactKind.MEDICATION or f.attrs.get("drug") in window.drugs)
                ],
            )

    def organizations(self) -> dict[str, str]:
        """See MeasureStore."""
        return dict(self.patient_organizations)

    def dxa_gap_reasons(self, as_of: datetime) -> dict[str, set[date]]:
        """See MeasureStore."""
        return {p: set(days) for p, days in self.reasons.items()}

    def alerts_opened(self, start: datetime, end: datetime, as_of: datetime) -> list[AlertRow]:
        """See MeasureStore."""
        return [a for a in self.alerts if start <= a.opened_at < end and a.opened_at <= as_of]

    def save_reports(self, rows: Sequence[ReportRow]) -> None:
        """See MeasureStore."""
        for row in rows:
            self.reports[row.id] = row

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
        found = [
            r
            for r in self.reports.values()
            if (measure_id is None or r.measure_id == measure_id)
            and (period_from is None or r.period_start >= period_from)
            and (period_to is None or r.period_end <= period_to)
            and (site is None or r.site == site)
            and (sites is None or r.site in sites)
        ]
        # ORDER BY period_start DESC, measure_id, site NULLS FIRST
        found.sort(key=lambda r: (r.measure_id, r.site is not None, r.site or ""))
        found.sort(key=lambda r: r.period_start, reverse=True)
        return [json.dumps(r.resource) for r in found[:limit]]

    def read_report(self, report_id: str) -> tuple[str | None, str] | None:
        """See MeasureStore."""
        row = self.reports.get(report_id)
        return (row.site, json.dumps(row.resource)) if row else None


_STORE: type[MeasureStore] = MemoryMeasureStore
