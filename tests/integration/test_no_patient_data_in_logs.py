"""No patient data in any log line: a patient with an unmistakable name goes through the whole pipeline.

A real API process and a real Celery worker, both logging at DEBUG; the patient is ingested, assessed, alerted,
written back to the EHR stand-in, searched for by name, read, and sent again in forms that are refused. Afterwards
neither log holds the name, the MRN or the birth date, and every line is one JSON object.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from service.devtools.local_services import LocalServices
from tests.ehr_standin import RunningStandIn
from tests.integration.test_alerts import patient_bundle
from tests.support.databases import query_one
from tests.support.http import FHIR_JSON
from tests.support.paths import ARTIFACTS
from tests.support.processes import ApiProcess, WorkerProcess
from tests.support.settings import make_settings, worker_env
from tests.support.tokens import AUTH, TOKENS
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.worker]

FHIR = {**AUTH, **FHIR_JSON}
# Celery prints this one line straight to stdout from its signal handler, past logging.
CELERY_SHUTDOWN_NOTICE = "worker: Warm shutdown"


@pytest.fixture
def processes(
    services: LocalServices, database_url: str, ehr: RunningStandIn, request: pytest.FixtureRequest
) -> Iterator[tuple[ApiProcess, WorkerProcess]]:
    settings = make_settings(services, database_url, ehr_base_url=ehr.base_url)
    env = {
        **worker_env(settings),
        "REFRACTURE_EHR_BASE_URL": ehr.base_url,
        "REFRACTURE_AUTH_DEV_TOKENS": json.dumps(TOKENS),
        "REFRACTURE_RATE_LIMIT_PER_MINUTE": "0",
        "REFRACTURE_RELAY_REDELIVER_AFTER_S": "1",
        "REFRACTURE_LOG_FORMAT": "json",
        "REFRACTURE_LOG_LEVEL": "DEBUG",
    }
    logs = ARTIFACTS / "logs"
    worker = WorkerProcess(env, logs / f"worker-{request.node.name}.log")
    api = ApiProcess(env, logs / f"api-{request.node.name}.log")
    try:
        worker.wait_ready()
        api.wait_ready()
        yield api, worker
    finally:
        api.stop()
        worker.stop()


def the_patient(pid: str, family: str, mrn: str, birth_date: str) -> dict[str, Any]:
    """test_alerts' patient (an operation, a T-score, a denosumab dose eight months ago), named and identified."""
    bundle = patient_bundle(pid, datetime.now(UTC).date() - timedelta(days=243))
    patient = bundle["entry"][0]["resource"]
    patient["name"] = [{"family": family, "given": ["Ottoline"]}]
    patient["birthDate"] = birth_date
    patient["identifier"] = [
        {
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
            "system": "urn:oid:2.16.840.1.113883.19.5",
            "value": mrn,
        }
    ]
    return bundle


def test_a_patient_goes_through_the_whole_pipeline_and_into_no_log_line(
    processes: tuple[ApiProcess, WorkerProcess], database_url: str, ehr: RunningStandIn
) -> None:
    api, worker = processes
    suffix = secrets.token_hex(4)
    family = f"Zyxquorthian{suffix}"
    mrn = f"MRN-{secrets.randbelow(10**8):08d}"
    birth_date = "1931-07-19"
    pid = f"zq-{suffix}"
    secrets_in_logs = [family.lower(), mrn.lower(), birth_date]

    with httpx.Client(base_url=api.base_url, headers=AUTH, timeout=30.0) as client:
        # Ingested; then assessed, alerted and written back by the worker.
        posted = client.post("/fhir", content=json.dumps(the_patient(pid, family, mrn, birth_date)), headers=FHIR)
        assert posted.status_code == 200, posted.text
        done = "SELECT done_seq >= changed_seq FROM patient_change WHERE patient_id = %s"
        assert wait_for(lambda: query_one(database_url, done, pid), timeout_s=60)
        assert wait_for(
            lambda: query_one(database_url, "SELECT status FROM writeback WHERE patient_id = %s", pid) == "delivered",
            timeout_s=60,
        )
        assert query_one(database_url, "SELECT count(*) FROM alert WHERE patient_id = %s", pid) >= 1
        assert len(ehr.app.resources("CarePlan")) == 1

        # Read and searched for by name and MRN: the data is there, in the answers.
        found = client.get("/api/worklist", params={"q": family})
        assert found.status_code == 200
        assert family in found.text
        assert client.get("/api/worklist", params={"q": mrn}).status_code == 200
        assert family in client.get(f"/api/patients/{pid}").text
        assert family in client.get(f"/fhir/Patient/{pid}").text
        client.get("/fhir/Patient", params={"name": family, "identifier": mrn, "birthdate": birth_date})
        client.get("/worklist", params={"q": family})

        # Refused, each on a different error path: the refusals may quote the values back, the logs may not.
        invalid = {"resourceType": "Patient", "id": f"{pid}-x", "gender": family, "birthDate": f"{birth_date}{family}"}
        assert client.put(f"/fhir/Patient/{pid}-x", content=json.dumps(invalid), headers=FHIR).status_code == 400
        bundle = the_patient(f"{pid}-y", family, mrn, f"{family}-{birth_date}")
        assert client.post("/fhir", content=json.dumps(bundle), headers=FHIR).status_code == 400
        malformed = f'{{"resourceType": "Patient", "name": [{{"family": "{family}"'
        assert client.post("/fhir", content=malformed, headers=FHIR).status_code == 400
        assert client.get("/api/worklist", params={"due_before": f"{family}-{birth_date}"}).status_code == 400
        assert client.get(f"/api/patients/{mrn}").status_code == 404
        assert client.get(f"/fhir/Patient/{mrn}").status_code == 404

    api.stop()
    worker.stop()
    api_lines = api.log_path.read_text(encoding="utf-8").splitlines()
    worker_lines = worker.log_path.read_text(encoding="utf-8").splitlines()

    for name, lines in (("API", api_lines), ("worker", worker_lines)):
        leaks = [line for line in lines if any(secret in line.lower() for secret in secrets_in_logs)]
        assert not leaks, f"patient data in the {name} log:\n" + "\n".join(leaks[:10])
        not_json = [line for line in lines if line.strip() and not line.startswith(CELERY_SHUTDOWN_NOTICE)]
        for line in not_json:
            parsed = json.loads(line)
            assert {"time", "level", "logger", "message"} <= parsed.keys(), line

    # The logs are not empty for want of trying: at DEBUG they say a lot, and the API's lines name routes only.
    access = [json.loads(line) for line in api_lines if '"refracture.access"' in line]
    assert len(access) >= 12
    assert all(line["route"].count("{") == line["route"].count("}") for line in access)
    assert not [line for line in access if pid in json.dumps(line)]  # ids in paths are not logged either
    assert all(line.get("request_id") for line in access)
    assert {"/fhir", "/api/worklist", "/api/patients/{patient_id}"} <= {line["route"] for line in access}
    assert any("refracture.patients_changed" in line for line in worker_lines)
    assert any('"service.usecases.writeback"' in line for line in worker_lines)
