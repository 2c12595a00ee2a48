"""Monitor the risk model in production (issue 19 item 4): monthly drift of its inputs and predictions against the
model card's reference cohort, its calibration as 2-year outcomes accrue, and the warnings; stored once a day and
read by /metrics, GET /api/model/monitoring and the model page (docs/model-monitoring.md)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from service.domain.calibration import Calibration, expit
from service.domain.model_monitoring import (
    CALIBRATION_WINDOW_MONTHS,
    CalibrationSummary,
    Outcome,
    calibration_summary,
    month_summary,
    reference_values,
    warnings,
)
from service.domain.outcomes import DevelopmentCase
from service.domain.risk_model import model_version
from service.domain.risk_parameters import MODEL_NAME
from service.usecases.ports.clock import Clock
from service.usecases.ports.monitoring import MonitoringRecord, MonitoringStore

__all__ = ["MONTHS_SHOWN", "RETENTION_DAYS", "ModelMonitor"]

log = logging.getLogger(__name__)

MONTHS_SHOWN = 24  # months of index operations summarised for drift
RETENTION_DAYS = 400  # daily rows kept: a year and a bit of history of the warnings


def _month_start(day: date, back: int) -> date:
    months = day.year * 12 + day.month - 1 - back
    return date(months // 12, months % 12 + 1, 1)


class ModelMonitor:
    """Computes and stores the monitoring figures."""

    def __init__(
        self,
        store: MonitoringStore,
        clock: Clock,
        local_day: Callable[[datetime], date],
        cases: Callable[[date], Sequence[DevelopmentCase]],
        active_calibration: Callable[[], Calibration | None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._local_day = local_day
        self._cases = cases
        self._active = active_calibration

    def compute(self) -> MonitoringRecord:
        """The figures as of now (nothing stored)."""
        now = self._clock()
        today = self._local_day(now)
        since = _month_start(today, MONTHS_SHOWN - 1)
        reference = reference_values()
        by_month = self._store.monthly_assessments(since)
        alerts = self._store.alert_patients(since)
        months = [month_summary(m, by_month[m], reference, alerts.get(m)) for m in sorted(by_month)]
        active = self._active()
        calibration_by_month, pooled = self._calibration(today, active)
        fired = warnings(months, pooled)
        version = active.version if active else model_version()
        summary: dict[str, Any] = {
            "model": f"{MODEL_NAME}/{version}",
            "months": [m.as_dict() for m in months],
            "calibration": {
                "by_month": [c.as_dict() for c in calibration_by_month],
                "pooled": pooled.as_dict() if pooled else None,
            },
            "warnings": [w.as_dict() for w in fired],
        }
        return MonitoringRecord(now, version, bool(fired), summary)

    def _calibration(
        self, today: date, active: Calibration | None
    ) -> tuple[list[CalibrationSummary], CalibrationSummary | None]:
        # Only patients whose 2-year window has closed by today (domain/outcomes.py), predicted by the model now in
        # use (the active calibration applied to the literature model's log-odds, as recalibration compares).
        grouped: dict[str, list[Outcome]] = defaultdict(list)
        for case in self._cases(today):
            lp = active.apply(case.log_odds) if active else case.log_odds
            month = case.index_day.strftime("%Y-%m")
            grouped[month].append(Outcome(month, expit(lp), case.event))
        by_month = [calibration_summary(m, grouped[m]) for m in sorted(grouped)]
        if not grouped:
            return by_month, None
        recent = sorted(grouped)[-CALIBRATION_WINDOW_MONTHS:]
        pooled = calibration_summary(f"{recent[0]}..{recent[-1]}", [o for m in recent for o in grouped[m]])
        return by_month, pooled

    def run(self) -> MonitoringRecord:
        """Compute and store (the daily beat task)."""
        record = self.compute()
        self._store.record(record, record.computed_at - timedelta(days=RETENTION_DAYS))
        if record.warning:
            # Figures only: no patient is named.
            log.warning(
                "model monitoring: %d warning(s): %s",
                len(record.summary["warnings"]),
                ", ".join(f"{w['metric']} {w['subject']}" for w in record.summary["warnings"]),
            )
        return record

    def latest(self) -> MonitoringRecord | None:
        """The newest stored run."""
        return self._store.latest()
