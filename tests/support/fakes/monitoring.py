"""In-memory MonitoringStore: what model monitoring's SQL (adapters/postgres/monitoring.sql) does that ModelMonitor
relies on: each patient's newest assessment only, by the month of its index; patients with an alert of each code,
of any status; the daily rows pruned by age and the newest read back as JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

from service.domain.model_monitoring import MonitoredAssessment, Value
from service.fhir.jsonio import dumps
from service.usecases.ports.monitoring import MonitoringRecord, MonitoringStore

__all__ = ["MemoryMonitoringStore", "StoredAssessment"]


@dataclass(frozen=True, slots=True)
class StoredAssessment:
    """The columns of an assessment row monitoring reads."""

    patient_id: str
    assessed_at: datetime
    index_date: date
    probability: float
    band: str
    inputs: dict[str, Value]
    missing: frozenset[str] = frozenset()
    sequence_no: int = 0


class MemoryMonitoringStore:
    """Assessments and alerts put in by the test; the monitoring rows kept by ``record``."""

    def __init__(self) -> None:
        self.assessments: list[StoredAssessment] = []
        self.alerts: list[tuple[str, str]] = []  # (patient id, code), any status
        self.rows: list[MonitoringRecord] = []

    def _newest(self, since: date) -> dict[str, StoredAssessment]:
        # DISTINCT ON (patient_id) ... ORDER BY assessed_at DESC, sequence_no DESC, then the index filter.
        newest: dict[str, StoredAssessment] = {}
        for a in self.assessments:
            kept = newest.get(a.patient_id)
            if kept is None or (a.assessed_at, a.sequence_no) > (kept.assessed_at, kept.sequence_no):
                newest[a.patient_id] = a
        return {p: a for p, a in newest.items() if a.index_date >= since}

    def monthly_assessments(self, since: date) -> dict[str, list[MonitoredAssessment]]:
        """See MonitoringStore."""
        out: dict[str, list[MonitoredAssessment]] = defaultdict(list)
        for a in self._newest(since).values():
            out[a.index_date.strftime("%Y-%m")].append(
                MonitoredAssessment(dict(a.inputs), a.missing, a.probability, a.band)
            )
        return dict(out)

    def alert_patients(self, since: date) -> dict[str, dict[str, int]]:
        """See MonitoringStore."""
        newest = self._newest(since)
        patients: dict[tuple[str, str], set[str]] = defaultdict(set)
        for patient_id, code in self.alerts:
            if patient_id in newest:
                patients[(newest[patient_id].index_date.strftime("%Y-%m"), code)].add(patient_id)
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for (month, code), who in patients.items():
            out[month][code] = len(who)
        return dict(out)

    def record(self, record: MonitoringRecord, prune_before: datetime) -> None:
        """See MonitoringStore. The summary goes through JSON as the jsonb column does."""
        stored = MonitoringRecord(
            record.computed_at, record.model_version, record.warning, json.loads(dumps(record.summary))
        )
        self.rows = [r for r in [*self.rows, stored] if not r.computed_at < prune_before]

    def latest(self) -> MonitoringRecord | None:
        """See MonitoringStore."""
        # ORDER BY computed_at DESC, id DESC: the later insert wins a tie.
        return max(reversed(self.rows), key=lambda r: r.computed_at, default=None)


_STORE: type[MonitoringStore] = MemoryMonitoringStore
