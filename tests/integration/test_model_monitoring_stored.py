"""Model monitoring over real PostgreSQL: stored assessments in, the daily row, the JSON, the page's banner and the
Prometheus gauges out; the warning fires on a shifted cohort and not on an unshifted one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Json, Jsonb

from service.composition.parts import Parts
from service.domain.reference_cohort import reference_cohort
from service.domain.risk_model import estimate, model_version
from service.platform.config import Settings
from tests.support.databases import query_one
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.tokens import AUTH, COORDINATOR

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)


@pytest.fixture
def monitored(settings: Settings) -> Iterator[Parts]:
    built = build_parts(settings, queue=RecordingQueue(), clock=lambda: NOW)
    yield built
    built.close()


def _store(database_url: str, month: date, members: tuple[dict[str, Any], ...], hide_hu_every: int, tag: str) -> None:
    """One stored assessment per member, indexed in ``month``; every third patient has a treatment-gap alert."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for i, member in enumerate(members):
            inputs = dict(member)
            if hide_hu_every and i % hide_hu_every == 0:
                del inputs["vertebral-hu"]
            e = estimate(inputs)
            patient = f"mon-{tag}-{i}"
            result = {
                "contributions": {c.code: round(c.log_odds, 4) for c in e.contributions if c.known},
                "inputs": {c.code: c.value for c in e.contributions if c.known},
                "missing": list(e.missing),
            }
            conn.execute(
                "INSERT INTO assessment (id, patient_id, sequence_no, model_version, inputs_hash, assessed_at, "
                "index_date, probability, probability_low, probability_high, band, result, resource) "
                "VALUES (%s, %s, 0, %s, 'h', %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    uuid.uuid4(),
                    patient,
                    model_version(),
                    NOW - timedelta(days=1),
                    month + timedelta(days=i % 27),
                    e.probability,
                    e.low,
                    e.high,
                    e.band,
                    Jsonb(result),
                    Json({"resourceType": "RiskAssessment"}),
                ),
            )
            if i % 3 == 0:
                conn.execute(
                    "INSERT INTO alert (id, patient_id, code, status, priority, due_date, episode, evidence, detail, "
                    "opened_at, updated_at) "
                    "VALUES (%s, %s, 'treatment-gap', 'open', 'high', %s, 'e', '{}', 'd', %s, %s)",
                    (uuid.uuid4(), patient, month, NOW, NOW),
                )


def _shifted(member: dict[str, Any]) -> dict[str, Any]:
    out = dict(member)
    out["age"] = min(95.0, float(member["age"]) + 9.0)
    out["dxa-t-score"] = max(-5.0, float(member["dxa-t-score"]) - 0.8)
    out["prior-vertebral-fracture"] = True if int(float(member["age"])) % 2 == 0 else member["prior-vertebral-fracture"]
    return out


def test_no_warning_when_the_months_look_like_the_reference(monitored: Parts, database_url: str) -> None:
    _store(database_url, date(2026, 1, 1), reference_cohort(150, 21), 10, "a")
    _store(database_url, date(2026, 2, 1), reference_cohort(150, 22), 10, "b")
    record = monitored.monitor.run()
    assert record.warning is False
    assert [m["month"] for m in record.summary["months"]] == ["2026-01", "2026-02"]
    february = record.summary["months"][1]
    assert february["patients"] == 150
    assert february["alerts"] == {"treatment-gap": pytest.approx(50 / 150)}
    hu = next(d for d in february["inputs"] if d["code"] == "vertebral-hu")
    assert hu["missing_rate"] == pytest.approx(15 / 150)
    with TestClient(api_app(monitored), headers=COORDINATOR) as client:
        page = client.get("/worklist/model")
        assert page.status_code == 200
        assert "Monitoring in production" in page.text
        assert "data-monitoring-warning" not in page.text
        body = client.get("/api/model/monitoring").json()
        assert body["warning"] is False
        assert body["thresholds"]["psi_major"] == 0.25


def test_the_warning_fires_on_a_shifted_cohort(monitored: Parts, database_url: str) -> None:
    with TestClient(api_app(monitored), headers=COORDINATOR) as client:
        empty = client.get("/api/model/monitoring").json()  # before the first run
        assert empty["computed_at"] is None
        assert empty["warning"] is False
        _store(database_url, date(2026, 1, 1), reference_cohort(150, 21), 10, "a")
        _store(database_url, date(2026, 2, 1), tuple(_shifted(m) for m in reference_cohort(150, 22)), 2, "b")
        record = monitored.monitor.run()
        assert record.warning is True
        fired = {(w["metric"], w["subject"]) for w in record.summary["warnings"]}
        assert {("psi", "age"), ("missing-rate", "vertebral-hu"), ("psi", "predicted-risk")} <= fired
        assert record.summary["calibration"]["pooled"] is None  # no outcomes on record

        body = client.get("/api/model/monitoring").json()
        assert body["warning"] is True
        audited = query_one(
            database_url,
            "SELECT count(*) FROM audit_event WHERE what = 'GET /api/model/monitoring' AND action = 'read'"
            " AND resource_type = 'ModelMonitoring'",
        )
        assert audited >= 1
        assert body["model_version"] == model_version()
        page = client.get("/worklist/model")
        assert "data-monitoring-warning" in page.text
        assert "refracture recalibrate --dry-run" in page.text
        assert "age has shifted" in page.text

        metrics = client.get("/metrics", headers=AUTH).text
        assert "refracture_model_monitoring_warning 1.0" in metrics
        assert 'refracture_model_drift_psi{input="age"}' in metrics
        assert 'refracture_model_input_missing_rate{input="vertebral-hu"} 0.5' in metrics
        assert 'refracture_model_alert_share{code="treatment-gap"}' in metrics
        assert "refracture_model_monitoring_up 1.0" in metrics
