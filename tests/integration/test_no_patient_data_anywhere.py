"""No patient data through a side door: one patient with unmistakable identifiers goes through every path in, and
every channel out that is not the answer to an authorised request is searched for them.

Paths in: FHIR PUT, POST and a transaction Bundle; the worker (assessment, alerts, write-back); the worklist (the
JSON API with a text query and with a kept search, the page's search form, the CSV export, the patient page);
refused requests of every kind; `refracture import` with a refused line. Channels out: the API's, the worker's and
the import's logs (at DEBUG), the import's printed report, /metrics, the traces both processes export over OTLP, and
the bodies of every refusal sent to someone not allowed to see the patient or sent the data to us.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from service.devtools.local_services import LocalServices
from tests.ehr_standin import RunningStandIn
from tests.integration.test_alerts import administration
from tests.integration.test_no_patient_data_in_logs import CELERY_SHUTDOWN_NOTICE, the_patient
from tests.support.databases import query_one
from tests.support.http import FHIR_JSON
from tests.support.otlp import OtlpSink
from tests.support.paths import ARTIFACTS, ROOT
from tests.support.processes import ApiProcess, WorkerProcess
from tests.support.settings import make_settings, worker_env
from tests.support.tokens import AUTH, TOKENS
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.worker]

FHIR = {**AUTH, **FHIR_JSON}


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    running = OtlpSink()
    yield running
    running.close()


@pytest.fixture
def env(services: LocalServices, database_url: str, ehr: RunningStandIn, sink: OtlpSink) -> dict[str, str]:
    settings = make_settings(services, database_url, ehr_base_url=ehr.base_url)
    return {
        **worker_env(settings),
        "REFRACTURE_EHR_BASE_URL": ehr.base_url,
        "REFRACTURE_AUTH_DEV_TOKENS": json.dumps(TOKENS),
        "REFRACTURE_RATE_LIMIT_PER_MINUTE": "0",
        "REFRACTURE_RATE_LIMIT_ANONYMOUS_PER_MINUTE": "0",
        "REFRACTURE_RELAY_REDELIVER_AFTER_S": "1",
        "REFRACTURE_OTEL_ENDPOINT": sink.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "REFRACTURE_LOG_FORMAT": "json",
        "REFRACTURE_LOG_LEVEL": "DEBUG",
    }


def test_a_patient_leaves_no_trace_in_any_side_channel(
    env: dict[str, str],
    database_url: str,
    ehr: RunningStandIn,
    sink: OtlpSink,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    suffix = secrets.token_hex(4)
    family = f"Quillbrandt{suffix}"
    mrn = f"MRN-{secrets.randbelow(10**8):08d}"
    birth_date = "1929-11-23"
    pid = f"qb-{suffix}"
    secrets_out = [family.lower(), mrn.lower(), birth_date]
    # Refusals: sent to someone who may not see the patient, or to a sender of invalid data. A validation message may
    # quote back a value the sender put in the body (a code outside its value set, say), never anything else.
    refusals: list[httpx.Response] = []
    quoting: list[tuple[httpx.Response, set[str]]] = []

    logs = ARTIFACTS / "logs"
    worker = WorkerProcess(env, logs / f"worker-{request.node.name}.log")
    api = ApiProcess(env, logs / f"api-{request.node.name}.log")
    try:
        worker.wait_ready()
        api.wait_ready()
        with httpx.Client(base_url=api.base_url, headers=AUTH, timeout=30.0) as client:
            # In: a transaction Bundle, then the Patient again by PUT, another dose by POST.
            bundle = the_patient(pid, family, mrn, birth_date)
            assert client.post("/fhir", content=json.dumps(bundle), headers=FHIR).status_code == 200
            patient = bundle["entry"][0]["resource"]
            assert client.put(f"/fhir/Patient/{pid}", content=json.dumps(patient), headers=FHIR).status_code == 200
            dose = administration(pid, "dmab-2", datetime.now(UTC).date() - timedelta(days=430), "denosumab 60 MG")
            dose.pop("id")
            posted = client.post("/fhir/MedicationAdministration", content=json.dumps(dose), headers=FHIR)
            assert posted.status_code == 201, posted.text
            # The worker: assessed, alerted, written back.
            done = "SELECT done_seq >= changed_seq FROM patient_change WHERE patient_id = %s"
            assert wait_for(lambda: query_one(database_url, done, pid), timeout_s=60)
            delivered = "SELECT count(*) FROM writeback WHERE patient_id = %s AND status = 'delivered'"
            assert wait_for(lambda: query_one(database_url, delivered, pid) >= 1, timeout_s=60)

            # The worklist: the data is in the answers to those allowed to see it.
            assert family in client.get("/api/worklist", params={"q": mrn}).text
            search = client.post("/api/worklist/searches", json={"q": family}).json()["search"]
            assert family in client.get("/api/worklist", params={"search": search}).text
            assert family in client.get("/api/worklist.csv", params={"search": search}).text
            page = client.post("/worklist/search", data={"q": family}, follow_redirects=False)
            assert page.status_code == 303
            assert family not in page.headers["location"]
            assert family in client.get(page.headers["location"]).text
            assert family in client.get(f"/worklist/patients/{pid}").text
            assert family in client.get(f"/api/patients/{pid}").text

            # Refused: no token, the wrong role, unknown ids, and data that is not valid.
            anonymous = httpx.get(f"{api.base_url}/api/worklist", params={"q": family})
            refusals += [anonymous, httpx.get(f"{api.base_url}/fhir/Patient/{pid}")]
            integration = {"Authorization": "Bearer test-integration"}
            refusals += [
                client.get("/api/worklist", params={"q": family}, headers=integration),
                client.get(f"/api/patients/{pid}", headers=integration),
                client.get(
                    "/api/worklist", params={"search": search}, headers={"Authorization": "Bearer test-coordinator"}
                ),
                client.get(f"/api/patients/{mrn}"),
                client.get(f"/fhir/Patient/{mrn}"),
                client.get("/api/worklist", params={"due_before": f"{family}-{birth_date}"}),
            ]
            invalid = {"resourceType": "Patient", "id": f"{pid}-x", "gender": family, "birthDate": birth_date + family}
            bad = client.put(f"/fhir/Patient/{pid}-x", content=json.dumps(invalid), headers=FHIR)
            quoting.append((bad, {family.lower()}))
            moved = {
                **dose,
                "id": "moved",
                "subject": {"reference": f"Patient/{mrn}"},
                "performer": [{"actor": {"reference": f"Patient/{pid}"}}],
            }
            two = client.put("/fhir/MedicationAdministration/moved", content=json.dumps(moved), headers=FHIR)
            quoting.append((two, {mrn.lower()}))
            statuses = [r.status_code for r in refusals + [q for q, _ in quoting]]
            assert all(s in (400, 401, 403, 404, 422) for s in statuses), statuses

            metrics = client.get("/metrics").text
            assert "refracture_" in metrics

        # `refracture import`: the patient again, and a refused line that names them.
        ndjson = tmp_path / "population.ndjson"
        other = {**patient, "id": f"{pid}-b"}
        refused = {**invalid, "id": f"{pid}-c"}
        ndjson.write_text("\n".join(json.dumps(r) for r in (other, refused)) + "\n")
        imported = subprocess.run(
            [sys.executable, "-m", "service", "import", str(ndjson)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert imported.returncode == 1, imported.stdout + imported.stderr  # imported, with a refused line
        assert "refused lines 2" in imported.stdout
        assert wait_for(lambda: len(sink.bodies) > 0, timeout_s=10)
    finally:
        api.stop()
        worker.stop()

    channels: dict[str, str] = {
        "API log": api.log_path.read_text(encoding="utf-8"),
        "worker log": worker.log_path.read_text(encoding="utf-8"),
        "import output": imported.stdout,
        "import log": imported.stderr,
        "/metrics": metrics,
        "traces": b"".join(sink.bodies).decode("utf-8", "replace"),
    }
    channels |= {f"refusal {n} ({r.status_code})": r.text for n, r in enumerate(refusals)}
    for channel, text in channels.items():
        for secret in secrets_out:
            assert secret not in text.lower(), f"{secret} in the {channel}"
    for response, sent in quoting:
        assert response.status_code in (400, 422)
        for secret in set(secrets_out) - sent:
            assert secret not in response.text.lower(), f"{secret} in a validation refusal"
    # Ids are not patient data, but metric labels must not be per patient either.
    assert pid not in metrics
    # The channels were not empty for want of trying.
    assert len(channels["traces"]) > 1000
    assert sum(1 for line in channels["API log"].splitlines() if line.startswith("{")) >= 20
    assert all(
        line.startswith(("{", CELERY_SHUTDOWN_NOTICE)) for line in channels["worker log"].splitlines() if line.strip()
    )
