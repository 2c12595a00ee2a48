"""Prometheus gauges of model monitoring, read at scrape time from the newest stored monitoring row (like the outbox
gauges: durable state is the truth; docs/model-monitoring.md lists the names and thresholds)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from service.adapters.metrics import PREFIX
from service.domain.model_monitoring import MIN_MONTH_PATIENTS
from service.usecases.ports.monitoring import MonitoringRecord

__all__ = ["MonitoringCollector"]

log = logging.getLogger(__name__)


def _judged_month(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The month the drift gauges describe: the latest with enough patients to judge, else the latest."""
    months = [m for m in summary.get("months") or [] if isinstance(m, dict)]
    judged = [m for m in months if int(m.get("patients", 0)) >= MIN_MONTH_PATIENTS]
    pool = judged or months
    return max(pool, key=lambda m: str(m.get("month"))) if pool else None


class MonitoringCollector:
    """refracture_model_* gauges from the newest monitoring run; none when no run is stored yet."""

    def __init__(self, latest: Callable[[], MonitoringRecord | None], clock: Callable[[], datetime]) -> None:
        self._latest = latest
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """Read the newest row now."""
        up = GaugeMetricFamily(f"{PREFIX}_model_monitoring_up", "Whether the monitoring row could be read")
        try:
            record = self._latest()
        except Exception as exc:  # noqa: BLE001 - a scrape reports the source as down; it never fails
            log.warning("metrics: model monitoring could not be read (%s)", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        if record is None:
            return
        yield from _gauges(record, self._clock())


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)


def _gauges(record: MonitoringRecord, now: datetime) -> Iterator[Metric]:
    summary = record.summary
    warning = _gauge("model_monitoring_warning", "1 when a drift or calibration threshold was passed, else 0")
    warning.add_metric([], 1.0 if record.warning else 0.0)
    yield warning
    age = _gauge("model_monitoring_age_seconds", "Seconds since the newest monitoring run")
    age.add_metric([], max(0.0, (now - record.computed_at).total_seconds()))
    yield age
    fired = _gauge("model_monitoring_warnings", "Warnings of the newest run by metric", ["metric"])
    counts: dict[str, int] = {"psi": 0, "missing-rate": 0, "oe": 0}
    for w in summary.get("warnings") or []:
        counts[str(w.get("metric"))] = counts.get(str(w.get("metric")), 0) + 1
    for metric, n in sorted(counts.items()):
        fired.add_metric([metric], n)
    yield fired
    month = _judged_month(summary)
    if month is not None:
        psi = _gauge("model_drift_psi", "PSI against the reference cohort in the latest judged month", ["input"])
        missing = _gauge("model_input_missing_rate", "Share of patients without the input in that month", ["input"])
        for d in month.get("inputs") or []:
            if d.get("psi") is not None:
                psi.add_metric([str(d["code"])], float(d["psi"]))
            missing.add_metric([str(d["code"])], float(d.get("missing_rate", 0.0)))
        if month.get("risk_psi") is not None:
            psi.add_metric(["predicted-risk"], float(month["risk_psi"]))
        yield psi
        yield missing
        patients = _gauge("model_monitoring_patients", "Patients in the latest judged month")
        patients.add_metric([], float(month.get("patients", 0)))
        yield patients
        bands = _gauge("model_band_share", "Share of patients per risk band in that month", ["band"])
        for band, share in sorted((month.get("bands") or {}).items()):
            bands.add_metric([band], float(share))
        yield bands
        alerts = _gauge("model_alert_share", "Share of that month's patients with each alert code", ["code"])
        for code, share in sorted((month.get("alerts") or {}).items()):
            alerts.add_metric([code], float(share))
        yield alerts
    pooled = (summary.get("calibration") or {}).get("pooled")
    if isinstance(pooled, dict):
        events = _gauge("model_calibration_events", "Events in the pooled calibration window (closed 2-year windows)")
        events.add_metric([], float(pooled.get("events", 0)))
        yield events
        for key, name, doc in (
            ("oe", "model_calibration_oe", "Observed/expected in the pooled calibration window"),
            ("slope", "model_calibration_slope", "Calibration slope in the pooled calibration window"),
            ("c_statistic", "model_c_statistic", "C-statistic in the pooled calibration window"),
        ):
            if pooled.get(key) is not None:
                gauge = _gauge(name, doc)
                gauge.add_metric([], float(pooled[key]))
                yield gauge
