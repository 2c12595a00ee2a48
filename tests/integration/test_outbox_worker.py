"""The hand-off to the workers: outbox rows, the relay, a real Celery worker, and Redis being down."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.devtools.local_services import LocalServices, free_port
from service.platform.config import Settings
from tests.support.databases import query_one
from tests.support.http import FHIR_JSON
from tests.support.parts import api_app, build_parts
from tests.support.processes import WorkerProcess
from tests.support.queue import RecordingQueue
from tests.support.settings import make_settings
from tests.support.tokens import AUTH
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.worker]

FHIR = FHIR_JSON


def bundle_for(pid: str, observations: int = 3) -> bytes:
    entries: list[dict[str, Any]] = [
        {
            "resource": {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1950-01-01"},
            "request": {"method": "PUT", "url": f"Patient/{pid}"},
        }
    ]
    for n in range(observations):
        entries.append(
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": f"{pid}-o{n}",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "38267-1"}]},
                    "subject": {"reference": f"Patient/{pid}"},
                    "effectiveDateTime": f"2024-01-{n % 28 + 1:02d}",
                    "valueQuantity": {"value": -2.0 - n / 100, "unit": "{T-score}"},
                },
                "request": {"method": "PUT", "url": f"Observation/{pid}-o{n}"},
            }
        )
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode()


def done(database_url: str, pid: str) -> bool:
    return bool(
        query_one(database_url, "SELECT done_seq >= changed_seq FROM patient_change WHERE patient_id = %s", pid)
    )


def test_a_posted_bundle_is_picked_up_by_the_worker_once(
    settings: Settings, database_url: str, worker: WorkerProcess
) -> None:
    parts = build_parts(settings)  # the real Celery producer
    with TestClient(headers=AUTH, app=api_app(parts)) as client:
        response = client.post("/fhir", content=bundle_for("w1", observations=50), headers=FHIR)
        assert response.status_code == 200
    # Fifty resources of one patient: one outbox row, one doorbell.
    assert query_one(database_url, "SELECT count(*) FROM patient_change") == 1
    assert wait_for(lambda: done(database_url, "w1"))
    assert query_one(database_url, "SELECT publish_count FROM patient_change WHERE patient_id = 'w1'") == 1


def test_nothing_is_lost_when_redis_is_down_as_data_arrives(
    services: LocalServices, settings: Settings, database_url: str, worker: WorkerProcess
) -> None:
    dead_broker = make_settings(services, database_url, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    parts = build_parts(dead_broker)
    with TestClient(headers=AUTH, app=api_app(parts)) as client:
        response = client.post("/fhir", content=bundle_for("w2"), headers=FHIR)
    assert response.status_code == 200  # the data is safe in PostgreSQL; the doorbell failed quietly
    assert query_one(database_url, "SELECT published_at IS NULL FROM patient_change WHERE patient_id = 'w2'")
    assert not done(database_url, "w2")

    # Redis is back: the periodic relay (beat) publishes what the doorbell could not.
    relay = build_parts(settings)
    try:
        assert relay.relay.ring() == 1
    finally:
        relay.close()
    assert wait_for(lambda: done(database_url, "w2"))


def test_a_lost_doorbell_is_rung_again(settings: Settings, database_url: str, worker: WorkerProcess) -> None:
    lossy = RecordingQueue()  # accepts the message and loses it, like a Redis restart before delivery
    parts = build_parts(settings, queue=lossy)
    with TestClient(headers=AUTH, app=api_app(parts)) as client:
        client.post("/fhir", content=bundle_for("w3"), headers=FHIR)
    assert lossy.sent
    assert query_one(database_url, "SELECT published_at IS NOT NULL FROM patient_change WHERE patient_id = 'w3'")
    real = build_parts(settings)
    try:
        assert real.relay.ring() == 0  # rung moments ago: not yet due again
        assert wait_for(lambda: real.relay.ring() == 1, timeout_s=10)  # redeliver_after_s is 1 s in tests
    finally:
        real.close()
    assert wait_for(lambda: done(database_url, "w3"))


def test_processing_is_safe_to_repeat_and_keeps_changes_that_arrive_meanwhile(
    settings: Settings, database_url: str
) -> None:
    parts = build_parts(settings, queue=RecordingQueue())
    with TestClient(headers=AUTH, app=api_app(parts)) as client:
        client.post("/fhir", content=bundle_for("w4"), headers=FHIR)

        def a_change_arrives_during_the_work(patient_ids: Any) -> None:
            client.post("/fhir", content=bundle_for("w4", observations=4), headers=FHIR)

        parts.changes.add_work(a_change_arrives_during_the_work)
        assert parts.changes.process(["w4"]) == 1
    # The change that arrived during the work is still pending: the next doorbell handles it.
    assert not done(database_url, "w4")
    processor = build_parts(settings, queue=RecordingQueue())
    try:
        assert processor.changes.process(["w4"]) == 1
        assert processor.changes.process(["w4"]) == 0  # nothing left: a duplicate doorbell is a no-op
        assert processor.changes.process(["never-seen"]) == 0
    finally:
        processor.close()
    assert done(database_url, "w4")
