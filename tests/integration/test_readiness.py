"""Readiness follows the source of truth: no database, no traffic; no broker, still ready (degraded)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from service.adapters.postgres.heartbeats import HeartbeatWriter
from service.composition.api import build_api
from service.devtools.local_services import LocalServices, free_port
from service.entrypoints.api.app import create_app
from service.entrypoints.api.health import Readiness
from tests.support.http import FHIR_JSON
from tests.support.parts import api_app, build_parts
from tests.support.paths import ARTIFACTS
from tests.support.processes import WorkerProcess
from tests.support.queue import RecordingQueue
from tests.support.settings import make_settings, worker_env
from tests.support.tokens import AUTH
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PATIENT = {"resourceType": "Patient", "id": "r1", "gender": "female", "birthDate": "1950-01-01"}


def beat(database_url: str, hostname: str, at: datetime, *, stop: bool = False) -> None:
    """Write a worker's heartbeat as a worker does."""
    writer = HeartbeatWriter(database_url, hostname, at)
    try:
        writer.beat(at)
        if stop:
            writer.stopped(at)
    finally:
        writer.close()


def test_ready_when_database_broker_and_a_worker_answer(services: LocalServices, database_url: str) -> None:
    beat(database_url, "celery@w1", datetime.now(UTC))
    app = create_app(lambda: build_api(build_parts(make_settings(services, database_url), queue=RecordingQueue())))
    with TestClient(app) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ready"
    assert answer.json()["checks"] == {"database": "ok", "broker": "ok", "worker": "ok"}


def test_a_broker_outage_degrades_but_keeps_the_api_in_service(services: LocalServices, database_url: str) -> None:
    # Nothing listens on this port: the doorbell is down, but accepted data waits in PostgreSQL for the relay.
    settings = make_settings(services, database_url, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    app = create_app(lambda: build_api(build_parts(settings, queue=RecordingQueue())))
    with TestClient(app, headers=AUTH) as client:
        answer = client.get("/readyz")
        stored = client.put("/fhir/Patient/r1", content=json.dumps(PATIENT), headers=FHIR_JSON)
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
    app = create_app(lambda: build_api(build_parts(settings, queue=RecordingQueue())))
    with TestClient(app) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "not ready"
    assert answer.json()["checks"]["database"].startswith("unavailable")


def test_no_worker_seen_degrades_but_keeps_the_api_in_service(services: LocalServices, database_url: str) -> None:
    # The changes wait in the outbox until a worker comes: an operator sees "no worker" instead of a backlog.
    settings = make_settings(services, database_url, worker_stale_after_s=60)
    app = create_app(lambda: build_api(build_parts(settings, queue=RecordingQueue())))
    with TestClient(app) as client:
        client.get("/readyz")
        readiness: Readiness = app.state.readiness
        answers = []
        for hostname, seen, stop in [
            (None, None, False),  # never a worker
            ("celery@old", datetime.now(UTC) - timedelta(seconds=90), False),  # one not seen for 90 s
            ("celery@new", datetime.now(UTC), False),  # one seen now
            ("celery@new", datetime.now(UTC), True),  # …that stopped cleanly
        ]:
            if hostname and seen:
                beat(database_url, hostname, seen, stop=stop)
            readiness.expire()
            answers.append(client.get("/readyz"))
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200]
    assert [answer.json()["status"] for answer in answers] == ["degraded", "degraded", "ready", "degraded"]
    assert [answer.json()["checks"]["worker"] for answer in answers] == [
        "no worker seen in the last 60 s",
        "no worker seen in the last 60 s",
        "ok",
        "no worker seen in the last 60 s",
    ]
    assert answers[0].json()["workers"] == {"seen": 0, "last_seen": None, "stale_after_s": 60.0}
    assert answers[2].json()["workers"]["seen"] == 1


@pytest.mark.worker
def test_a_real_worker_is_seen_while_it_runs_and_not_after_it_stopped(
    services: LocalServices, database_url: str, request: pytest.FixtureRequest
) -> None:
    settings = make_settings(services, database_url)
    app = create_app(lambda: build_api(build_parts(settings, queue=RecordingQueue())))
    worker = WorkerProcess(worker_env(settings), ARTIFACTS / "logs" / f"worker-{request.node.name}.log")
    with TestClient(app) as client:
        try:
            worker.wait_ready()
            client.get("/readyz")
            readiness: Readiness = app.state.readiness

            def worker_is(expected: str) -> bool:
                readiness.expire()
                return bool(client.get("/readyz").json()["checks"]["worker"] == expected)

            assert wait_for(lambda: worker_is("ok"), timeout_s=20)
        finally:
            worker.stop()
        assert worker_is("no worker seen in the last 120 s")


def test_a_flood_of_readiness_calls_costs_one_check_and_one_redis_connection(
    services: LocalServices, database_url: str
) -> None:
    app = create_app(lambda: build_api(build_parts(make_settings(services, database_url), queue=RecordingQueue())))
    with TestClient(app) as client:
        answers = [client.get("/readyz") for _ in range(20)]
        readiness: Readiness = app.state.readiness
        assert readiness.checks_run == 1
        readiness.expire()
        client.get("/readyz")
        assert readiness.checks_run == 2
        assert readiness._redis.connection_pool._created_connections == 1  # kept across checks
    assert {answer.json()["checks"]["broker"] for answer in answers} == {"ok"}


def test_the_anonymous_answer_quotes_no_ehr_error(services: LocalServices, database_url: str) -> None:
    settings = make_settings(services, database_url)
    parts = build_parts(settings, queue=RecordingQueue())
    secret_detail = "EHR said: 500 Internal Server Error at https://ehr.internal/fhir for Patient Zyxquorthian"
    parts.writebacks.save_ehr_state("https://ehr.internal/fhir", "pull", secret_detail, datetime.now(UTC))
    with TestClient(api_app(parts)) as client:
        answer = client.get("/readyz")
    assert answer.json()["ehr_write_mode"]["mode"] == "pull"
    assert "Zyxquorthian" not in answer.text
    assert "ehr.internal" not in answer.text
