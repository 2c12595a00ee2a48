"""The FLS quality measures from stored data: read once per period, count by month and by site, keep the
MeasureReports (docs/measures.md).

One pass: the facts of the patients who may count in the period (a possible index event in it, or a denosumab dose
whose next one fell due in it) stream through the pure domain (domain/fls_measures.py) one patient at a time; the
alerts opened in the period come in one query. The cases are then bucketed by (period, site) and summarised per
measure, every site alone and all together.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Final

from service.domain.alert_rules import AlertConfig
from service.domain.drugs import Drug
from service.domain.exposure import ONCOLOGY_ANTIRESORPTIVES, treatment_drugs
from service.domain.fls_measures import (
    AlertRecord,
    DenosumabDose,
    IndexCase,
    MeasureId,
    Period,
    Summary,
    combine,
    patient_cases,
    populations,
    summarise,
)
from service.fhir.measures import build_measure_report, report_id
from service.usecases.ports.clock import Clock
from service.usecases.ports.measures import FactWindow, MeasureStore, ReportRow

__all__ = ["UNASSIGNED", "MeasureData", "Measures", "site_of"]

# Patients whose Patient names no managingOrganization: a site of their own, seen only by unlimited callers.
UNASSIGNED: Final = "unassigned"


def site_of(organization: str | None, sites: Mapping[str, Sequence[str]]) -> str:
    """The site a patient's managingOrganization belongs to (REFRACTURE_SITES; an unmapped ``Organization/x`` is
    site ``x``, as the scoping reads it; no organisation: ``unassigned``)."""
    if not organization:
        return UNASSIGNED
    for site, references in sites.items():
        if organization in references:
            return site
    return organization.removeprefix("Organization/")


@dataclass(slots=True)
class MeasureData:
    """Everything the measures count for a period, read once."""

    period: Period
    as_of: date
    cases: list[IndexCase] = field(default_factory=list)
    doses: list[DenosumabDose] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)
    patients: int = 0  # candidate patients read


class Measures:
    """Computes, keeps and finds the FLS quality measures' MeasureReports."""

    def __init__(
        self,
        store: MeasureStore,
        clock: Clock,
        zone: tzinfo,
        config: AlertConfig | None = None,
        sites: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._zone = zone
        self._config = config or AlertConfig()
        self._sites: Mapping[str, Sequence[str]] = sites or {}

    @property
    def store(self) -> MeasureStore:
        """The store (the API searches kept reports through it)."""
        return self._store

    def site_reference(self, site: str) -> str | None:
        """The Organization reference a site's reports name as reporter."""
        if site == UNASSIGNED:
            return None
        references = self._sites.get(site)
        return references[0] if references else f"Organization/{site}"

    def sites_of(self, organizations: Iterable[str]) -> frozenset[str]:
        """The sites these Organization references belong to (a limited caller's sites)."""
        return frozenset(site_of(reference, self._sites) for reference in organizations)

    def _local_day(self, moment: datetime) -> date:
        return moment.astimezone(self._zone).date()

    def collect(self, period: Period, as_of: datetime | None = None) -> MeasureData:
        """Read what the measures count for the period, as known at ``as_of`` (default: now)."""
        as_of = as_of or self._clock()
        day = self._local_day(as_of)
        config = self._config
        rules = config.rules()
        interval = timedelta(days=config.denosumab_interval_days)
        drugs = treatment_drugs(rules) | ONCOLOGY_ANTIRESORPTIVES | {Drug.CALCITONIN}
        window = FactWindow(
            as_of,
            period.start,
            period.end,
            period.start - interval,
            period.end - interval,
            drugs=frozenset(d.value for d in drugs),
        )
        start = datetime.combine(period.start, time(0), self._zone)
        end = datetime.combine(period.end + timedelta(days=1), time(0), self._zone)
        # The alerts' query runs on a second connection while this thread derives the cases: the database's work
        # overlaps this process's (bench/measures.py).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="measure-alerts") as aside:
            alerts = aside.submit(self._store.alerts_opened, start, end, as_of)
            organizations = self._store.organizations()
            reasons = self._store.dxa_gap_reasons(as_of)
            data = MeasureData(period, day)
            no_reasons: set[date] = set()
            sites = {organization: site_of(organization, self._sites) for organization in set(organizations.values())}
            for patient_id, facts in self._store.facts_by_patient(window):
                site = sites.get(organizations.get(patient_id, ""), UNASSIGNED)
                data.patients += 1
                cases, doses = patient_cases(
                    patient_id, site, facts, period, day, config, reasons.get(patient_id, no_reasons)
                )
                data.cases += cases
                data.doses += doses
            alert_rows = alerts.result()
        for row in alert_rows:
            site = sites.get(organizations.get(row.patient_id, ""), UNASSIGNED)
            data.alerts.append(
                AlertRecord(
                    row.patient_id,
                    site,
                    row.code,
                    self._local_day(row.opened_at),
                    row.opened_at,
                    row.first_action_at,
                    row.resolved_at,
                )
            )
        return data

    def reports(
        self,
        data: MeasureData,
        periods: Sequence[Period],
        evaluated_at: datetime,
        measures: Iterable[MeasureId] = tuple(MeasureId),
    ) -> list[ReportRow]:
        """The MeasureReports of these measures for each period (within the data's; sorted, disjoint) and site, and
        all sites together."""
        wanted = list(measures)
        Bucket = tuple[list[IndexCase], list[DenosumabDose], list[AlertRecord]]
        buckets: dict[tuple[int, str], Bucket] = defaultdict(lambda: ([], [], []))
        starts = [p.start for p in periods]

        def place(day: date, site: str) -> Bucket | None:
            # Periods are sorted and disjoint (a year's months): the last one starting on or before the day.
            n = bisect.bisect_right(starts, day) - 1
            return buckets[(n, site)] if n >= 0 and periods[n].holds(day) else None

        for case in data.cases:
            if (bucket := place(case.index_day, case.site)) is not None:
                bucket[0].append(case)
        for dose in data.doses:
            if (bucket := place(dose.due_day, dose.site)) is not None:
                bucket[1].append(dose)
        for alert in data.alerts:
            if (bucket := place(alert.opened_day, alert.site)) is not None:
                bucket[2].append(alert)
        out: list[ReportRow] = []
        for n, period in enumerate(periods):
            sites = sorted(site for (m, site) in buckets if m == n)
            for measure in wanted:
                summaries = {site: summarise(measure, *buckets[(n, site)], data.as_of, self._config) for site in sites}
                # Every site together: the sum of the sites' (each case has one site), so every case is counted once.
                summaries_all = combine(measure, summaries.values())
                for site, summary in [(None, summaries_all), *summaries.items()]:
                    resource = build_measure_report(
                        summary, period, site, self.site_reference(site) if site else None, evaluated_at
                    )
                    out.append(
                        ReportRow(
                            report_id(measure, period, site),
                            measure.value,
                            site,
                            period.start,
                            period.end,
                            evaluated_at,
                            resource,
                        )
                    )
        return out

    def evaluate(self, period: Period, periods: Sequence[Period] | None = None) -> list[ReportRow]:
        """Compute every measure for the period (or for each of ``periods`` within it, e.g. its months) by site,
        keep the reports and return them."""
        evaluated_at = self._clock()
        data = self.collect(period, evaluated_at)
        rows = self.reports(data, periods or [period], evaluated_at)
        self._store.save_reports(rows)
        return rows

    def drill_down(self, measure: MeasureId, period: Period, site: str | None, population: str) -> list[str]:
        """The patients in one population of a measure for the period and site (None: every site): the ids behind
        a report's count. Read fresh, as of now."""
        data = self.collect(period)
        if site is not None:
            data.cases = [c for c in data.cases if c.site == site]
            data.doses = [d for d in data.doses if d.site == site]
            data.alerts = [a for a in data.alerts if a.site == site]
        found = populations(measure, data.cases, data.doses, data.alerts, data.as_of, self._config)
        return found.get(population, [])

    def evaluate_measure(self, measure: MeasureId, period: Period, site: str | None) -> dict[str, Any]:
        """$evaluate-measure: every measure for the period is computed and kept (one pass costs the same); the answer
        is this measure's report for the site (None: every site together), with zero counts when it had no case."""
        rows = self.evaluate(period)
        wanted = report_id(measure, period, site)
        found = next((r for r in rows if r.id == wanted), None)
        if found is not None:
            return found.resource
        reference = self.site_reference(site) if site is not None else None
        empty = build_measure_report(Summary(measure, 0), period, site, reference, rows[0].evaluated_at)
        self._store.save_reports(
            [ReportRow(wanted, measure.value, site, period.start, period.end, rows[0].evaluated_at, empty)]
        )
        return empty
