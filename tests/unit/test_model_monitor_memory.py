"""ModelMonitor over the in-memory MonitoringStore: drift warnings on a shifted cohort and none on the reference,
only each patient's newest assessment counted, alert shares, and the daily rows pruned and read back (the SQL
itself: tests/integration/test_model_monitoring_stored.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from service.domain.outcomes import DevelopmentCase
from service.domain.reference_cohort import reference_cohort
from service.domain.risk_model import estimate, model_version
from service.usecases.model_monitoring import RETENTION_DAYS, ModelMonitor
from tests.support.clock import ManualClock
from tests.support.fakes import MemoryMonitoringStore, StoredAssessment

NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)


def _no_cases(_: date) -> Sequence[DevelopmentCase]:
    return ()


def monitor(store: MemoryMonitoringStore, clock: ManualClock[datetime] | None = None) -> ModelMonitor:
    return ModelMonitor(store, clock or ManualClock(NOW), lambda moment: moment.date(), _no_cases, lambda: None)


def put(
    store: MemoryMonitoringStore, month: date, members: Sequence[dict[str, Any]], hide_hu_every: int, tag: str
) -> None:
    """One assessment per member, indexed in ``month``; every third patient has a treatment-gap alert."""
    for i, member in enumerate(members):
        inputs = dict(member)
        if hide_hu_every and i % hide_hu_every == 0:
            del inputs["vertebral-hu"]
        e = estimate(inputs)
        patient = f"mon-{tag}-{i}"
        store.assessments.append(
            StoredAssessment(
                patient,
                NOW - timedelta(days=1),
                month + timedelta(days=i % 27),
                e.probability,
                e.band,
                {c.code: c.value for c in e.contributions if c.known},  # type: ignore[misc]
                frozenset(e.missing),
            )
        )
        if i % 3 == 0:
            store.alerts.append((patient, "treatment-gap"))


def shifted(member: dict[str, Any]) -> dict[str, Any]:
    out = dict(member)
    out["age"] = min(95.0, float(member["age"]) + 9.0)
    out["dxa-t-score"] = max(-5.0, float(member["dxa-t-score"]) - 0.8)
    out["prior-vertebral-fracture"] = True if int(float(member["age"])) % 2 == 0 else member["prior-vertebral-fracture"]
    return out


def test_no_warning_when_the_months_look_like_the_reference() -> None:
    store = MemoryMonitoringStore()
    put(store, date(2026, 1, 1), reference_cohort(150, 21), 10, "a")
    put(store, date(2026, 2, 1), reference_cohort(150, 22), 10, "b")
    record = monitor(store).run()
    assert record.warning is False
    assert [m["month"] for m in record.summary["months"]] == ["2026-01", "2026-02"]
    february = record.summary["months"][1]
    assert february["patients"] == 150
    assert february["alerts"] == {"treatment-gap": pytest.approx(50 / 150)}
    hu = next(d for d in february["inputs"] if d["code"] == "vertebral-hu")
    assert hu["missing_rate"] == pytest.approx(15 / 150)
    assert record.model_version == model_version()


def test_the_warning_fires_on_a_shifted_cohort() -> None:
    store = MemoryMonitoringStore()
    assert monitor(store).latest() is None  # before the first run
    put(store, date(2026, 1, 1), reference_cohort(150, 21), 10, "a")
    put(store, date(2026, 2, 1), tuple(shifted(m) for m in reference_cohort(150, 22)), 2, "b")
    record = monitor(store).run()
    assert record.warning is True
    fired = {(w["metric"], w["subject"]) for w in record.summary["warnings"]}
    assert {("psi", "age"), ("missing-rate", "vertebral-hu"), ("psi", "predicted-risk")} <= fired
    assert record.summary["calibration"]["pooled"] is None  # no outcomes on record
    latest = monitor(store).latest()
    assert latest is not None
    assert latest.warning is True
    assert latest.summary == record.summary


def test_only_each_patients_newest_assessment_counts_and_old_indexes_are_left_out() -> None:
    store = MemoryMonitoringStore()
    member = dict(reference_cohort(1, 21)[0])
    put(store, date(2026, 1, 1), [member], 0, "a")  # mon-a-0, indexed in January, with an alert
    old = store.assessments[0]
    store.assessments.append(
        StoredAssessment(old.patient_id, old.assessed_at + timedelta(hours=1), date(2026, 2, 3), 0.5, "high", {})
    )
    store.assessments.append(StoredAssessment("ancient", NOW, date(2023, 1, 1), 0.1, "low", {}))
    record = monitor(store).compute()
    months = record.summary["months"]
    assert [(m["month"], m["patients"]) for m in months] == [("2026-02", 1)]
    assert months[0]["alerts"] == {"treatment-gap": 1.0}


def test_each_run_is_kept_and_rows_older_than_the_retention_are_dropped() -> None:
    store = MemoryMonitoringStore()
    clock = ManualClock(NOW)
    first = monitor(store, clock).run()
    clock.now = NOW + timedelta(days=RETENTION_DAYS - 1)
    monitor(store, clock).run()
    assert len(store.rows) == 2
    clock.now = NOW + timedelta(days=RETENTION_DAYS + 1)
    last = monitor(store, clock).run()
    assert [r.computed_at for r in store.rows] == [NOW + timedelta(days=RETENTION_DAYS - 1), last.computed_at]
    assert first.computed_at not in [r.computed_at for r in store.rows]
    latest = monitor(store).latest()
    assert latest is not None
    assert latest.computed_at == last.computed_at
