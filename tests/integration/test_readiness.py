"""Readiness follows the source of truth: no database, no traffic; no broker, still ready (degraded)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from service.adapters.local_services import LocalServices, free_port
from service.api.app import create_app
from service.bootstrap import bootstrap
from tests.conftest import AUTH, RecordingQueue, make_settings

pytestmark = pytest.mark.integration

PATIENT = {"resourceType": "Patient", "id": "r1", "gender": "female", "birthDate": "1950-01-01"}


def test_ready_when_database_and_broker_answer(services: LocalServices, database_url: str) -> None:
    app = create_app(lambda: bootstrap(make_settings(services, database_url), queue=RecordingQueue()))
    with TestClient(app) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ready"
    assert answer.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_a_broker_outage_degrades_but_keeps_the_api_in_service(services: LocalServices, database_url: str) -> None:
    # Nothing listens on this port: the doorbell is down, but accepted data waits in PostgreSQL for the relay.
    settings = make_settings(services, database_url, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    app = create_app(lambda: bootstrap(settings, queue=RecordingQueue()))
    with TestClient(app, headers=AUTH) as client:
        answer = client.get("/readyz")
        stored = client.put(
            "/fhir/Patient/r1", content=json.dumps(PATIENT), headers={"Content-Type": "application/fhir+json"}
        )
    assert answer.status_code == 200
    assert answer.json()["status"] == "degraded"
    assert answer.json()["checks"]["broker"].startswith("unavailable")
    assert stored.status_code == 201


def test_no_database_means_not_ready(services: LocalServices, database_url: str) -> None:
    settings = make_settings(
        services,
        f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere",
        database_pool_timeout_s=1.0,
    )
    app = create_app(lambda: bootstrap(settings, queue=RecordingQueue()))
    with TestClient(app) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "not ready"
    assert answer.json()["checks"]["database"].startswith("unavailable")
