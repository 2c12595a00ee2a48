"""/metrics over real PostgreSQL and Redis: what ingest, the workers' change processing and the write-back count,
the outbox and queue gauges read at scrape time, who may scrape, and a worker's own metrics port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.devtools.local_services import LocalServices, free_port
from service.domain.risk_model import model_version
from tests.ehr_standin import Fault, RunningStandIn
from tests.integration.test_writeback import T0, build, dose, patient
from tests.support.clock import ManualClock
from tests.support.http import FHIR_JSON
from tests.support.parts import api_app
from tests.support.paths import ROOT
from tests.support.settings import make_settings
from tests.support.tokens import AUTH, TOKENS
from tests.unit.test_metric_helpers import sample

pytestmark = pytest.mark.integration

FHIR = FHIR_JSON


@pytest.fixture
def app(
    services: LocalServices, database_url: str, ehr: RunningStandIn
) -> Iterator[tuple[Parts, TestClient, ManualClock]]:
    clock = ManualClock(T0)
    # A queue of its own: its depth is this test's alone.
    parts = build(
        services, database_url, ehr, clock, celery_queue=f"metrics-{uuid.uuid4().hex[:8]}", metrics_public=True
    )
    with TestClient(app=api_app(parts), raise_server_exceptions=False) as client:
        yield parts, client, clock
    parts.close()


def alerts_by_code(database_url: str, status: str | None = None) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT code, count(*) FROM alert WHERE %(status)s::text IS NULL OR status = %(status)s GROUP BY code",
            {"status": status},
        ).fetchall()
    return {str(code): int(n) for code, n in rows}


def test_metrics_move_with_exact_values(
    app: tuple[Parts, TestClient, ManualClock], ehr: RunningStandIn, database_url: str, services: LocalServices
) -> None:
    parts, client, clock = app
    before = client.get("/metrics").text  # public outside production: no token

    def delta(text: str, name: str, **labels: str) -> float:
        return sample(text, name, **labels) - sample(before, name, **labels)

    # Ingest: a transaction of four new resources, the same again, a changed Patient, and a refused Observation.
    assert client.post("/fhir", content=json.dumps(patient("m1")), headers={**AUTH, **FHIR}).status_code == 200
    assert client.post("/fhir", content=json.dumps(patient("m1")), headers={**AUTH, **FHIR}).status_code == 200
    changed = {"resourceType": "Patient", "id": "m1", "gender": "female", "birthDate": "1944-04-05"}
    assert client.put("/fhir/Patient/m1", content=json.dumps(changed), headers={**AUTH, **FHIR}).status_code == 200
    refused = {"resourceType": "Observation", "id": "bad", "status": "no-such-status"}
    assert client.put("/fhir/Observation/bad", content=json.dumps(refused), headers={**AUTH, **FHIR}).status_code == 400

    # The change waits in the outbox (the doorbell is recorded, not delivered): the gauges say so, with its age.
    clock.now = T0 + timedelta(seconds=90)
    broker = redis.Redis.from_url(services.redis_url)
    queue = parts.core.settings.celery_queue
    try:
        broker.rpush(queue, "a", "b")  # two messages nobody consumes
        waiting = client.get("/metrics").text
    finally:
        broker.delete(queue)
        broker.close()
    assert sample(waiting, "refracture_outbox_pending_changes") == 1
    assert sample(waiting, "refracture_outbox_oldest_change_age_seconds") == 90
    assert sample(waiting, "refracture_queue_depth", queue=queue) == 2
    assert sample(waiting, "refracture_model_info", version=model_version()) == 1
    assert sample(waiting, "refracture_state_up", source="database") == 1

    ingested = "refracture_ingested_resources_total"
    for kind in ("Procedure", "Observation", "MedicationAdministration"):
        assert delta(waiting, ingested, resource_type=kind, outcome="created") == 1, kind
        assert delta(waiting, ingested, resource_type=kind, outcome="unchanged") == 1, kind
    assert delta(waiting, ingested, resource_type="Patient", outcome="created") == 1
    assert delta(waiting, ingested, resource_type="Patient", outcome="unchanged") == 1
    assert delta(waiting, ingested, resource_type="Patient", outcome="updated") == 1
    assert delta(waiting, ingested, resource_type="Observation", outcome="refused") == 1
    requests = "refracture_http_requests_total"
    assert delta(waiting, requests, method="POST", route="/fhir", status="200") == 2
    assert delta(waiting, requests, method="PUT", route="/fhir/{resource_type}/{resource_id}", status="400") == 1
    assert delta(waiting, "refracture_http_request_duration_seconds_count", method="POST", route="/fhir") == 2

    # The workers' change processing: assessed, alerts opened, delivered to the EHR.
    parts.changes.process(["m1"])
    opened = alerts_by_code(database_url)
    assert opened, "the patient's overdue denosumab opens an alert"
    # A second patient whose write-back the EHR refuses (dead), a third whose EHR is down for a moment (retried).
    for pid in ("m2", "m3"):
        assert client.post("/fhir", content=json.dumps(patient(pid)), headers={**AUTH, **FHIR}).status_code == 200
    ehr.app.reject_types = {"RiskAssessment": (422, {"resourceType": "OperationOutcome", "issue": []})}
    parts.changes.process(["m2"])
    ehr.app.reject_types = {}
    ehr.app.faults.append(Fault("status", status=503, method="POST"))
    parts.changes.process(["m3"])
    clock.now = T0 + timedelta(seconds=150)
    processed = client.get("/metrics").text

    writebacks = "refracture_writebacks_total"
    assert delta(processed, writebacks, mode="transaction", outcome="delivered") == 1
    assert delta(processed, writebacks, mode="transaction", outcome="dead") == 1
    assert delta(processed, writebacks, mode="transaction", outcome="retried") == 1
    assert sample(processed, "refracture_writeback_jobs", status="delivered") == 1
    assert sample(processed, "refracture_writeback_jobs", status="dead") == 1
    assert sample(processed, "refracture_writeback_jobs", status="pending") == 1
    assert sample(processed, "refracture_writeback_oldest_pending_age_seconds") == 60  # failed at T0+90s
    assert sample(processed, "refracture_outbox_pending_changes") == 0
    assert sample(processed, "refracture_outbox_oldest_change_age_seconds") == 0
    every_alert = alerts_by_code(database_url)
    for code, n in every_alert.items():
        assert delta(processed, "refracture_alerts_total", code=code, transition="opened") == n, code

    # A new dose resolves m1's alert: counted as resolved, by code.
    new_dose = dose("m1", "d2", T0.date())
    url = "/fhir/MedicationAdministration/m1-d2"
    assert client.put(url, content=json.dumps(new_dose), headers={**AUTH, **FHIR}).status_code == 201
    parts.changes.process(["m1"])
    resolved = alerts_by_code(database_url, "resolved")
    assert resolved, "a new dose resolves the overdue alert"
    final = client.get("/metrics").text
    for code, n in resolved.items():
        assert delta(final, "refracture_alerts_total", code=code, transition="resolved") == n, code
    assert delta(final, writebacks, mode="transaction", outcome="delivered") == 2
    # Nothing that names a patient is a label.
    for pid in ("m1", "m2", "m3"):
        assert f'"{pid}"' not in final


def test_metrics_need_the_metrics_reader_or_an_administrator_when_not_public(
    services: LocalServices, database_url: str
) -> None:
    tokens = {
        **TOKENS,
        "test-metrics": {"sub": "prometheus", "roles": ["metrics-reader"]},
        "test-metrics-scope": {"sub": "prometheus", "client_id": "prometheus", "scope": "system/metrics.read"},
    }
    parts = build(services, database_url, None, ManualClock(T0), auth_dev_tokens=tokens)
    try:
        with TestClient(app=api_app(parts), raise_server_exceptions=False) as client:
            anonymous = client.get("/metrics")
            assert anonymous.status_code == 401
            assert anonymous.json()["resourceType"] == "OperationOutcome"
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            coordinator = client.get("/metrics", headers={"Authorization": "Bearer test-coordinator"})
            assert coordinator.status_code == 403
            admin = client.get("/metrics", headers={"Authorization": "Bearer test-admin"})
            assert admin.status_code == 200
            # Least privilege: Prometheus reads the metrics with a role or scope that opens nothing else.
            for token in ("test-metrics", "test-metrics-scope"):
                reader = {"Authorization": f"Bearer {token}"}
                assert client.get("/metrics", headers=reader).status_code == 200
                assert client.get("/api/worklist", headers=reader).status_code == 403
                assert client.get("/fhir/Observation/x", headers=reader).status_code == 403
                assert client.get("/api/audit", headers=reader).status_code == 403
            assert admin.headers["content-type"].startswith("text/plain")
            assert "refracture_model_info" in admin.text
            assert "/metrics" not in client.app.openapi()["paths"]  # type: ignore[attr-defined]
    finally:
        parts.close()


def test_metrics_are_public_only_when_set_explicitly(services: LocalServices, database_url: str) -> None:
    assert not make_settings(services, database_url).metrics_open  # not even outside production
    assert not make_settings(services, database_url, environment="development").metrics_open
    assert make_settings(services, database_url, metrics_public=True).metrics_open
    production = make_settings(
        services,
        database_url,
        environment="production",
        auth_dev_tokens={},
        auth_issuer="https://idp",
        auth_audience="x",
    )
    assert not production.metrics_open
    assert make_settings(
        services,
        database_url,
        environment="production",
        auth_dev_tokens={},
        auth_issuer="https://i",
        auth_audience="x",
        metrics_public=True,
    ).metrics_open


_FORKING_WORKER = """
import os, sys
from service.adapters.metrics_server import serve_worker_metrics
stop = serve_worker_metrics(int(sys.argv[1]), "127.0.0.1")
from service.adapters import metrics
child = os.fork()
if child == 0:  # a pool child: counts into its own file and exits
    metrics.observe_task("refracture.probe", "SUCCESS", 0.01)
    os._exit(0)
os.waitpid(child, 0)
metrics.observe_task("refracture.probe", "FAILURE", 0.01)
print(os.environ["PROMETHEUS_MULTIPROC_DIR"], flush=True)
sys.stdin.read()
stop()
"""


def test_a_worker_serves_the_counts_of_its_forked_children() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with subprocess.Popen(
        [sys.executable, "-c", _FORKING_WORKER, str(port)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stdin is not None
        folder = Path(process.stdout.readline().strip())
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
        finally:
            process.stdin.close()
            process.wait(timeout=20)
        process.stdout.close()
    assert sample(text, "refracture_tasks_total", task="refracture.probe", outcome="success") == 1  # the child's
    assert sample(text, "refracture_tasks_total", task="refracture.probe", outcome="failure") == 1  # the parent's
    assert sample(text, "refracture_task_duration_seconds_count", task="refracture.probe") == 2
    assert process.returncode == 0
    assert not folder.exists()  # the folder it made is removed when it stops
