"""Write-back to the EHR against a stand-in at the HTTP boundary: what is sent, in every write mode, through faults.

Every request refracture sends is checked (method, URL, conditional headers, Bundle shape, valid FHIR R4), and in
every fault each assessment reaches the EHR exactly once, none is lost, and the CarePlan ends in the latest state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import psycopg
import pytest
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from service.fhir.validation import validate_resource
from tests.ehr_standin import Fault, RunningStandIn, capability
from tests.support import records
from tests.support.clock import ManualClock
from tests.support.databases import query_one
from tests.support.http import FHIR_JSON
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.records import administration as dose
from tests.support.records import ct_augmentation
from tests.support.settings import command_env, make_settings
from tests.support.tokens import AUTH

pytestmark = pytest.mark.integration

FHIR = FHIR_JSON
T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
RA_SYSTEM = "https://refracture.dev/fhir/sid/risk-assessment"
PLAN_SYSTEM = "https://refracture.dev/fhir/sid/care-plan"
TASK_SYSTEM = "https://refracture.dev/fhir/sid/task"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def build(
    services: LocalServices, database_url: str, ehr: RunningStandIn | None, clock: ManualClock, **settings: Any
) -> Parts:
    values: dict[str, Any] = {
        "ehr_base_url": ehr.base_url if ehr else None,
        "ehr_read_timeout_s": 1.0,
        "writeback_retry_for_s": 86400.0,
        "writeback_circuit_failures": 50,
        **settings,
    }
    parts = build_parts(make_settings(services, database_url, **values), queue=RecordingQueue(), clock=clock)
    # Deterministic backoff for the tests: always the full (capped) delay.
    parts.deliverer._random = lambda: 1.0
    return parts


@pytest.fixture
def app(
    services: LocalServices, database_url: str, ehr: RunningStandIn, clock: ManualClock
) -> Iterator[tuple[Parts, TestClient]]:
    ehr.app.reset()
    parts = build(services, database_url, ehr, clock)
    with TestClient(headers=AUTH, app=api_app(parts), raise_server_exceptions=False) as client:
        yield parts, client


def patient(pid: str, days_since_dose: int = 240) -> dict[str, Any]:
    operation_day = (T0 - timedelta(days=days_since_dose + 30)).date()
    # The pre-operative CT, the day before: one dated the operation's day without times is ambiguous.
    ct_day = operation_day - timedelta(days=1)
    return records.bundle(
        [
            *ct_augmentation(pid, operation_day, 58, ct_day),
            dose(pid, "d1", (T0 - timedelta(days=days_since_dose)).date()),
        ]
    )


def post(parts: Parts, client: TestClient, body: dict[str, Any], pid: str) -> None:
    assert client.post("/fhir", content=json.dumps(body), headers=FHIR).status_code == 200
    parts.changes.process([pid])  # assess, evaluate, and try the write-back right away


def put(parts: Parts, client: TestClient, resource: dict[str, Any], pid: str) -> None:
    url = f"/fhir/{resource['resourceType']}/{resource['id']}"
    assert client.put(url, content=json.dumps(resource), headers=FHIR).status_code in (200, 201)
    parts.changes.process([pid])


def exactly_once(ehr: RunningStandIn, database_url: str, pid: str) -> None:
    """Each delivered assessment is at the EHR once; the CarePlan there is our latest version."""
    risk = [r for r in ehr.app.resources("RiskAssessment") if r["subject"]["reference"] == f"Patient/{pid}"]
    values = [i["value"] for r in risk for i in r["identifier"] if i["system"] == RA_SYSTEM]
    assert len(values) == len(set(values)), "an assessment reached the EHR twice"
    import psycopg

    with psycopg.connect(database_url) as conn:
        ours = {
            str(r[0])
            for r in conn.execute(
                "SELECT id FROM assessment WHERE patient_id = %s AND delivered_at IS NOT NULL", (pid,)
            ).fetchall()
        }
        latest = conn.execute(
            "SELECT id FROM assessment WHERE patient_id = %s ORDER BY sequence_no DESC LIMIT 1", (pid,)
        ).fetchone()
        plan = conn.execute(
            "SELECT resource, version, delivered_version FROM care_plan WHERE patient_id = %s", (pid,)
        ).fetchone()
    assert set(values) == ours
    assert latest is not None
    assert str(latest[0]) in values, "the newest assessment never reached the EHR"
    plans = [p for p in ehr.app.resources("CarePlan") if p["subject"]["reference"] == f"Patient/{pid}"]
    assert len(plans) == 1, "the CarePlan was duplicated"
    assert plan is not None
    assert plan[2] == plan[1], "the latest CarePlan version was not delivered"
    assert [a["detail"]["status"] for a in plans[0]["activity"]] == [a["detail"]["status"] for a in plan[0]["activity"]]
    for resource in [*risk, *plans]:
        assert validate_resource(resource) == []
    tasks_exactly_once(ehr, database_url, pid)


def tasks_exactly_once(ehr: RunningStandIn, database_url: str, pid: str) -> None:
    """Each alert's Task is at the EHR once, in the status of our latest version, pointing at the EHR's CarePlan."""
    at_ehr = [t for t in ehr.app.resources("Task") if t["for"]["reference"] == f"Patient/{pid}"]
    values = [i["value"] for t in at_ehr for i in t["identifier"] if i["system"] == TASK_SYSTEM]
    assert len(values) == len(set(values)), "a Task reached the EHR twice"
    with psycopg.connect(database_url) as conn:
        ours = conn.execute(
            "SELECT id::text, resource, version, delivered_version FROM alert_task WHERE patient_id = %s", (pid,)
        ).fetchall()
    assert {r[0] for r in ours} == set(values)
    (plan,) = [p for p in ehr.app.resources("CarePlan") if p["subject"]["reference"] == f"Patient/{pid}"]
    by_value = {i["value"]: t for t in at_ehr for i in t["identifier"] if i["system"] == TASK_SYSTEM}
    for task_id, resource, version, delivered in ours:
        assert delivered == version, "the latest Task version was not delivered"
        theirs = by_value[task_id]
        assert theirs["status"] == resource["status"]
        assert theirs["focus"] == {"reference": f"CarePlan/{plan['id']}"}
        assert validate_resource(theirs) == []


# --- the contract: what refracture sends ------------------------------------------------------------------------
def test_a_transaction_with_conditional_updates(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str
) -> None:
    parts, client = app
    post(parts, client, patient("c1"), "c1")
    writes = ehr.app.writes()
    assert [(w.method, w.path) for w in writes] == [("POST", "/")]
    bundle = writes[0].body
    assert writes[0].headers["content-type"].startswith("application/fhir+json")
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "transaction"
    assert validate_resource(bundle) == []
    ra_entry, plan_entry, *task_entries, provenance_entry = bundle["entry"]
    assessment_id = str(query_one(database_url, "SELECT id FROM assessment WHERE patient_id = 'c1'"))
    assert ra_entry["request"]["method"] == "PUT"
    assert unquote(ra_entry["request"]["url"]) == f"RiskAssessment?identifier={RA_SYSTEM}|{assessment_id}"
    assert ra_entry["fullUrl"] == f"urn:uuid:{assessment_id}"
    assert "id" not in ra_entry["resource"]  # the EHR keeps its own ids; the identifier is the key
    assert ra_entry["resource"]["subject"] == {"reference": "Patient/c1"}  # the EHR's ids, as received
    assert unquote(plan_entry["request"]["url"]).startswith(f"CarePlan?identifier={PLAN_SYSTEM}|")
    assert "ifMatch" not in plan_entry["request"]  # first delivery: no version to match yet
    assert plan_entry["resource"]["supportingInfo"] == [{"reference": ra_entry["fullUrl"]}]
    # The overdue dose's alert has its Task: a conditional update on its identifier, pointing at the CarePlan.
    task_id = str(
        query_one(
            database_url,
            "SELECT t.id FROM alert_task t JOIN alert a ON a.id = t.alert_id "
            "WHERE t.patient_id = 'c1' AND a.code = 'denosumab-overdue'",
        )
    )
    assert len(task_entries) == 2  # denosumab overdue, and the bone density gap
    (task_entry,) = [e for e in task_entries if task_id in unquote(e["request"]["url"])]
    assert unquote(task_entry["request"]["url"]) == f"Task?identifier={TASK_SYSTEM}|{task_id}"
    assert "id" not in task_entry["resource"]
    assert task_entry["resource"]["focus"] == {"reference": plan_entry["fullUrl"]}
    assert task_entry["resource"]["basedOn"][0] == {"reference": plan_entry["fullUrl"]}
    assert task_entry["resource"]["status"] == "requested"
    assert provenance_entry["request"]["method"] == "PUT"
    assert provenance_entry["resource"]["agent"][0]["who"]["display"].startswith("refracture")
    assert {t["reference"] for t in provenance_entry["resource"]["target"]} == {
        ra_entry["fullUrl"],
        plan_entry["fullUrl"],
        *(e["fullUrl"] for e in task_entries),
    }
    assert {"Procedure/c1-op", "Observation/c1-hu"} <= {
        e["what"]["reference"] for e in provenance_entry["resource"]["entity"]
    }
    for entry in bundle["entry"]:
        assert validate_resource(entry["resource"]) == []
    # The EHR's ids and versions are recorded.
    ehr_ra = ehr.app.resources("RiskAssessment")[0]
    assert query_one(database_url, "SELECT ehr_id FROM assessment WHERE patient_id = 'c1'") == ehr_ra["id"]
    assert query_one(database_url, "SELECT ehr_version FROM care_plan WHERE patient_id = 'c1'") == "1"
    assert ehr.app.resources("CarePlan")[0]["supportingInfo"] == [{"reference": f"RiskAssessment/{ehr_ra['id']}"}]

    # A new dose: a new assessment and a new CarePlan version, the plan matched on the version the EHR gave.
    put(parts, client, dose("c1", "d2", T0.date()), "c1")
    second = ehr.app.writes()[-1].body
    plan_request = next(e["request"] for e in second["entry"] if e["resource"]["resourceType"] == "CarePlan")
    assert plan_request["ifMatch"] == 'W/"1"'
    # The dose resolved the alert: its Task is completed in place (matched on the EHR's version), never deleted.
    (task_entry,) = [e for e in second["entry"] if e["resource"]["resourceType"] == "Task"]  # only the one changed
    assert task_entry["request"]["ifMatch"] == 'W/"1"'
    assert task_entry["resource"]["status"] == "completed"
    assert sorted(t["status"] for t in ehr.app.resources("Task")) == ["completed", "requested"]
    assert query_one(database_url, "SELECT status FROM writeback WHERE patient_id = 'c1'") == "delivered"
    exactly_once(ehr, database_url, "c1")


def test_separate_conditional_requests_when_the_ehr_has_no_transactions(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str
) -> None:
    parts, client = app
    ehr.app.capability = capability(transaction=False)
    post(parts, client, patient("c2"), "c2")
    writes = ehr.app.writes()
    assert [w.method for w in writes] == ["PUT", "PUT", "PUT", "PUT", "PUT"]
    assert writes[0].path == "/RiskAssessment"
    assert unquote(writes[0].query).startswith(f"identifier={RA_SYSTEM}|")
    assert writes[1].path == "/CarePlan"
    assert "if-match" not in writes[1].headers
    assert writes[2].path == writes[3].path == "/Task"  # the two alerts' Tasks
    assert unquote(writes[2].query).startswith(f"identifier={TASK_SYSTEM}|")
    assert writes[4].path.startswith("/Provenance/")
    ehr_ra = ehr.app.resources("RiskAssessment")[0]
    ehr_plan = ehr.app.resources("CarePlan")[0]
    assert writes[1].body["supportingInfo"] == [{"reference": f"RiskAssessment/{ehr_ra['id']}"}]
    assert writes[2].body["focus"] == {"reference": f"CarePlan/{ehr_plan['id']}"}
    put(parts, client, dose("c2", "d2", T0.date()), "c2")
    later = {w.path: w for w in ehr.app.writes()[len(writes) :]}
    assert later["/CarePlan"].headers["if-match"] == 'W/"1"'
    assert later["/Task"].headers["if-match"] == 'W/"1"'
    exactly_once(ehr, database_url, "c2")
    assert parts.writebacks.read_ehr_state()["mode"] == "conditional"  # type: ignore[index]


def test_client_assigned_ids_where_only_update_create_is_allowed(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str
) -> None:
    parts, client = app
    ehr.app.capability = capability(transaction=False, conditional=False)
    post(parts, client, patient("c3"), "c3")
    writes = ehr.app.writes()
    assessment_id = str(query_one(database_url, "SELECT id FROM assessment WHERE patient_id = 'c3'"))
    assert (writes[0].method, writes[0].path) == ("PUT", f"/RiskAssessment/{assessment_id}")
    assert writes[0].body["id"] == assessment_id
    exactly_once(ehr, database_url, "c3")


def test_a_transaction_refused_falls_back_to_separate_requests(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str
) -> None:
    parts, client = app
    ehr.app.refuse_transactions = True
    post(parts, client, patient("c4"), "c4")
    assert [w.method for w in ehr.app.writes()] == ["POST", "PUT", "PUT", "PUT", "PUT", "PUT"]
    exactly_once(ehr, database_url, "c4")


def test_pull_mode_sends_nothing_and_keeps_the_results_served(
    services: LocalServices, database_url: str, ehr: RunningStandIn, clock: ManualClock
) -> None:
    ehr.app.reset()
    parts = build(services, database_url, None, clock)
    with TestClient(headers=AUTH, app=api_app(parts)) as client:
        post(parts, client, patient("c5"), "c5")
        assert ehr.app.requests == []
        assert client.get("/fhir/RiskAssessment", params={"subject": "Patient/c5"}).json()["total"] == 1
        assert client.get("/fhir/CarePlan", params={"subject": "Patient/c5"}).json()["total"] == 1
        assert client.get("/readyz").json()["ehr_write_mode"]["mode"] == "pull"
    # The jobs wait: an EHR configured later gets everything.
    assert query_one(database_url, "SELECT status FROM writeback WHERE patient_id = 'c5'") == "pending"
    later = build(services, database_url, ehr, clock)
    try:
        assert later.deliverer.deliver_due().delivered == 1
    finally:
        later.close()  # its pooled connection to the EHR would otherwise be found open by a later test's GC
    exactly_once(ehr, database_url, "c5")


def test_an_ehr_that_takes_no_care_plans_means_pull_mode(app: tuple[Parts, TestClient], ehr: RunningStandIn) -> None:
    parts, client = app
    ehr.app.capability = capability(care_plan_writes=False)
    post(parts, client, patient("c6"), "c6")
    assert ehr.app.writes() == []
    assert "no CarePlan" in parts.writebacks.read_ehr_state()["detail"]  # type: ignore[index]


# --- faults ------------------------------------------------------------------------------------------------------
def deliver_until_done(
    parts: Parts, clock: ManualClock, step: timedelta = timedelta(minutes=6), rounds: int = 40
) -> None:
    for _ in range(rounds):
        clock.now += step
        parts.deliverer.deliver_due()
        counts = parts.writebacks.writeback_counts()["jobs"]
        if set(counts) <= {"delivered"}:
            return
    raise AssertionError(f"not delivered: {parts.writebacks.writeback_counts()}")


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", status=500, times=3),
        Fault("status", status=503, headers={"Retry-After": "120"}, times=2),
        Fault("status", status=429, headers={"Retry-After": "30"}, times=2),
        Fault("slow", seconds=1.5, times=2),  # longer than the client's 1 s read timeout
        Fault("drop-before", times=2),
        Fault("drop-after-commit", times=2),  # the EHR committed, the answer was lost: the retry must not duplicate
    ],
    ids=["500", "503-retry-after", "429", "timeout", "dropped", "dropped-after-commit"],
)
def test_temporary_failures_are_retried_and_nothing_is_duplicated(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str, clock: ManualClock, fault: Fault
) -> None:
    parts, client = app
    ehr.app.faults = [fault]
    post(parts, client, patient("f1"), "f1")
    assert query_one(database_url, "SELECT status FROM writeback WHERE patient_id = 'f1'") == "pending"
    assert query_one(database_url, "SELECT attempts FROM writeback WHERE patient_id = 'f1'") == 1
    if "Retry-After" in fault.headers:
        wait = query_one(database_url, "SELECT next_attempt_at FROM writeback WHERE patient_id = 'f1'") - clock.now
        assert wait >= timedelta(seconds=int(fault.headers["Retry-After"]))
    deliver_until_done(parts, clock)
    exactly_once(ehr, database_url, "f1")
    # A second state after the faults: it arrives too, and the first is not sent again.
    put(parts, client, dose("f1", "d2", clock.now.date()), "f1")
    exactly_once(ehr, database_url, "f1")
    assert len(ehr.app.resources("RiskAssessment")) == 2


def test_the_ehr_down_for_a_long_time_and_then_back(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str, clock: ManualClock
) -> None:
    parts, client = app
    down = Fault("down")
    ehr.app.faults = [down]
    for n in range(3):
        post(parts, client, patient(f"d{n}"), f"d{n}")
    # Hours of outage: every job keeps being retried with growing, capped waits; nothing is lost.
    for _ in range(20):
        clock.now += timedelta(minutes=10)
        parts.deliverer.deliver_due()
    assert parts.writebacks.writeback_counts()["jobs"] == {"pending": 3}
    assert max(query_one(database_url, "SELECT max(attempts) FROM writeback"), 0) >= 5
    ehr.app.faults = []
    deliver_until_done(parts, clock)
    for n in range(3):
        exactly_once(ehr, database_url, f"d{n}")


def test_the_circuit_breaker_stops_hammering(
    services: LocalServices, database_url: str, ehr: RunningStandIn, clock: ManualClock
) -> None:
    ehr.app.reset()
    parts = build(
        services,
        database_url,
        ehr,
        clock,
        writeback_circuit_failures=2,
        writeback_circuit_cooldown_s=600,
        writeback_backoff_max_s=1,
    )
    with TestClient(headers=AUTH, app=api_app(parts)) as client:
        ehr.app.faults = [Fault("down")]
        for n in range(4):
            post(parts, client, patient(f"b{n}"), f"b{n}")
        hits = len(ehr.app.requests)
        clock.now += timedelta(seconds=30)
        parts.deliverer.deliver_due()
        assert len(ehr.app.requests) == hits  # open: no request at all
        ehr.app.faults = []
        clock.now += timedelta(minutes=11)
        deliver_until_done(parts, clock, step=timedelta(seconds=5))
    for n in range(4):
        exactly_once(ehr, database_url, f"b{n}")


def test_a_422_goes_to_the_dead_letter_and_can_be_replayed(
    app: tuple[Parts, TestClient],
    ehr: RunningStandIn,
    database_url: str,
    clock: ManualClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parts, client = app
    answer = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "business-rule", "details": {"text": "profile X required"}}],
    }
    ehr.app.reject_types = {"RiskAssessment": (422, answer)}
    post(parts, client, patient("x1"), "x1")
    assert query_one(database_url, "SELECT status FROM writeback WHERE patient_id = 'x1'") == "dead"
    assert query_one(database_url, "SELECT last_status FROM writeback WHERE patient_id = 'x1'") == 422
    assert query_one(database_url, "SELECT last_answer FROM writeback WHERE patient_id = 'x1'") == answer
    clock.now += timedelta(hours=2)
    parts.deliverer.deliver_due()
    assert query_one(database_url, "SELECT status FROM writeback WHERE patient_id = 'x1'") == "dead"  # not retried

    from service.entrypoints.cli import main

    with command_env(monkeypatch, DATABASE_URL=database_url, EHR_BASE_URL=ehr.base_url):
        assert main(["writeback", "status"]) == 0
        assert "dead: Patient/x1" in capsys.readouterr().out
        ehr.app.reject_types = {}  # the EHR team fixed their side
        assert main(["writeback", "replay", "--patient", "x1"]) == 0
    clock.now = datetime.now(UTC) + timedelta(minutes=1)  # the command replays "now", on the real clock
    parts.deliverer.deliver_due()
    exactly_once(ehr, database_url, "x1")
    # Each attempt is in the audit trail: refused, then delivered; the EHR's words are not.
    with psycopg.connect(database_url) as conn:
        trail = conn.execute(
            "SELECT actor, outcome, detail FROM audit_event WHERE action = 'write-back' AND patient_id = 'x1' "
            "ORDER BY id"
        ).fetchall()
    assert [(actor, outcome) for actor, outcome, _ in trail] == [("refracture", 422), ("refracture", 200)]
    assert all("profile X" not in detail for _, _, detail in trail)


def test_a_care_plan_changed_at_the_ehr_is_merged_not_overwritten(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str
) -> None:
    parts, client = app
    post(parts, client, patient("v1"), "v1")

    def clinician_edit(plan: dict[str, Any]) -> None:
        plan["note"] = [{"text": "Discussed with the patient's daughter."}]
        plan["activity"].append({"id": "ehr-added", "detail": {"status": "scheduled", "description": "Physio"}})

    ehr.app.edit("CarePlan", clinician_edit)  # version 2 at the EHR; we still think it is 1
    put(parts, client, dose("v1", "d2", T0.date()), "v1")
    # The If-Match of version 1 failed (412), the plan was read back and re-applied onto version 2.
    assert any(r.method == "GET" and r.path == "/CarePlan" for r in ehr.app.requests)
    (plan,) = ehr.app.resources("CarePlan")
    assert plan["note"] == [{"text": "Discussed with the patient's daughter."}]
    assert "ehr-added" in {a["id"] for a in plan["activity"]}
    assert plan["meta"]["versionId"] == "3"
    overdue = [
        a
        for a in plan["activity"]
        if any(c["code"] == "denosumab-overdue" for r in a.get("detail", {}).get("reasonCode", []) for c in r["coding"])
    ]
    assert [a["detail"]["status"] for a in overdue] == ["completed"]  # the new dose resolved the alert
    assert query_one(database_url, "SELECT status FROM writeback WHERE patient_id = 'v1'") == "delivered"


def test_a_job_failing_past_the_retry_window_is_dead_letter_and_replayable(
    services: LocalServices, database_url: str, ehr: RunningStandIn, clock: ManualClock
) -> None:
    ehr.app.reset()
    parts = build(services, database_url, ehr, clock, writeback_retry_for_s=1800)
    with TestClient(headers=AUTH, app=api_app(parts)) as client:
        ehr.app.faults = [Fault("status", status=503, times=1000)]
        post(parts, client, patient("g1"), "g1")
        for _ in range(12):
            clock.now += timedelta(minutes=6)
            parts.deliverer.deliver_due()
        assert query_one(database_url, "SELECT status FROM writeback WHERE patient_id = 'g1'") == "dead"
        assert "gave up" in query_one(database_url, "SELECT last_error FROM writeback WHERE patient_id = 'g1'")
        ehr.app.faults = []
        assert parts.writebacks.replay_writebacks(None, clock.now) == ["g1"]
        parts.deliverer.deliver_due()
    exactly_once(ehr, database_url, "g1")


@pytest.mark.worker
def test_a_real_worker_delivers_through_the_celery_pipeline(
    services: LocalServices, database_url: str, ehr: RunningStandIn, request: pytest.FixtureRequest
) -> None:
    from tests.support.parts import build_parts as real_build_parts
    from tests.support.paths import ARTIFACTS
    from tests.support.processes import WorkerProcess
    from tests.support.settings import worker_env
    from tests.support.waiting import wait_for

    ehr.app.reset()
    settings = make_settings(services, database_url, ehr_base_url=ehr.base_url)
    worker = WorkerProcess(
        {**worker_env(settings), "REFRACTURE_EHR_BASE_URL": ehr.base_url},
        ARTIFACTS / "logs" / f"worker-{request.node.name}.log",
    )
    try:
        worker.wait_ready()
        parts = real_build_parts(settings)  # the real doorbell
        with TestClient(headers=AUTH, app=api_app(parts)) as client:
            today = datetime.now(UTC)
            body = patient("e1", days_since_dose=240)
            body["entry"][-1]["resource"]["effectiveDateTime"] = (today - timedelta(days=240)).date().isoformat()
            assert client.post("/fhir", content=json.dumps(body), headers=FHIR).status_code == 200
            assert wait_for(lambda: len(ehr.app.resources("CarePlan")) == 1)
            assert wait_for(
                lambda: query_one(database_url, "SELECT status FROM writeback WHERE patient_id = 'e1'") == "delivered"
            )
            assert client.get("/readyz").json()["ehr_write_mode"]["mode"] == "transaction"
    finally:
        worker.stop()
    exactly_once(ehr, database_url, "e1")
