"""The monitoring use case over in-memory fakes (calibration by month of index and pooled, the stored row) and the
Prometheus collector that reads the row at scrape time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest

from service.adapters.monitoring_metrics import MonitoringCollector
from service.domain.calibration import Calibration, logit
from service.domain.model_monitoring import MonitoredAssessment
from service.domain.outcomes import DevelopmentCase
from service.usecases.model_monitoring import ModelMonitor
from service.usecases.ports.monitoring import MonitoringRecord

NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)


class FakeStore:
    def __init__(self) -> None:
        self.rows: list[MonitoringRecord] = []
        self.pruned: list[datetime] = []

    def monthly_assessments(self, since: date) -> Mapping[str, list[MonitoredAssessment]]:
        assert since == date(2024, 4, 1)  # 24 months back from March 2026, first of the month
        return {}

    def alert_patients(self, since: date) -> Mapping[str, Mapping[str, int]]:
        return {}

    def record(self, record: MonitoringRecord, prune_before: datetime) -> None:
        self.rows.append(record)
        self.pruned.append(prune_before)

    def latest(self) -> MonitoringRecord | None:
        return self.rows[-1] if self.rows else None


def _cases(risk: float, rate: float) -> Sequence[DevelopmentCase]:
    """Closed 2-year windows over 14 index months, 200 patients each, predicted ``risk``, observed ``rate``."""
    out = []
    for m in range(14):
        day = date(2023, 1, 1) + timedelta(days=31 * m)
        out += [
            DevelopmentCase(f"p{m}-{i}", day, logit(risk if i % 2 else risk * 0.8), i < 200 * rate, None, None)
            for i in range(200)
        ]
    return out


def _monitor(store: FakeStore, risk: float, rate: float, active: Calibration | None = None) -> ModelMonitor:
    return ModelMonitor(store, lambda: NOW, lambda moment: moment.date(), lambda _: _cases(risk, rate), lambda: active)


def test_calibration_by_month_and_pooled_and_the_row_stored() -> None:
    store = FakeStore()
    record = _monitor(store, 0.12, 0.11).run()
    calibration = record.summary["calibration"]
    assert len(calibration["by_month"]) == 14
    pooled = calibration["pooled"]
    assert pooled["n"] == 12 * 200  # the last 12 index months only
    assert pooled["enough"] is True
    assert 0.8 <= pooled["oe"] <= 1.25
    assert record.warning is False
    assert store.rows == [record]
    assert store.pruned == [NOW - timedelta(days=400)]


def test_an_underpredicting_model_warns_and_an_active_calibration_is_applied() -> None:
    record = _monitor(FakeStore(), 0.06, 0.15).run()
    assert [w["metric"] for w in record.summary["warnings"]] == ["oe"]
    assert record.warning is True
    # The same outcomes predicted by a calibration that doubles the odds: O/E back in range.
    fixed = Calibration("v.cal.x", "v", "intercept", 0.9, 1.0)
    assert _monitor(FakeStore(), 0.06, 0.15, fixed).compute().warning is False


def _scrape(collector: MonitoringCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_the_collector_reads_the_newest_row_and_survives_a_database_down() -> None:
    store = FakeStore()
    _monitor(store, 0.06, 0.15).run()
    text = _scrape(MonitoringCollector(store.latest, lambda: NOW + timedelta(hours=1)))
    assert "refracture_model_monitoring_warning 1.0" in text
    assert 'refracture_model_monitoring_warnings{metric="oe"} 1.0' in text
    assert "refracture_model_monitoring_age_seconds 3600.0" in text
    assert "refracture_model_calibration_oe " in text
    assert "refracture_model_drift_psi" not in text  # no month of assessments stored

    def down() -> MonitoringRecord | None:
        raise OSError("connection refused")

    text = _scrape(MonitoringCollector(down, lambda: NOW))
    assert "refracture_model_monitoring_up 0.0" in text
    assert "refracture_model_monitoring_warning " not in text
    assert "refracture_model_monitoring_up 1.0" in _scrape(MonitoringCollector(lambda: None, lambda: NOW))
