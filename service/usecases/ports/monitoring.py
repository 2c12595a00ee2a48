"""What model monitoring reads and keeps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from service.domain.model_monitoring import MonitoredAssessment


@dataclass(frozen=True, slots=True)
class MonitoringRecord:
    """One monitoring run, as stored."""

    computed_at: datetime
    model_version: str
    warning: bool
    summary: dict[str, Any]


class MonitoringStore(Protocol):
    """The stored assessments and alerts monitoring reads, and its own rows."""

    def monthly_assessments(self, since: date) -> Mapping[str, list[MonitoredAssessment]]:
        """Each patient's newest assessment with an index on or after ``since``, by month of index (YYYY-MM)."""

    def alert_patients(self, since: date) -> Mapping[str, Mapping[str, int]]:
        """By month of index: patients with at least one alert of each code."""

    def record(self, record: MonitoringRecord, prune_before: datetime) -> None:
        """Store a run and drop rows older than ``prune_before`` (one transaction)."""

    def latest(self) -> MonitoringRecord | None:
        """The newest run."""
