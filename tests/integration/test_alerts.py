"""Alerts end to end: time alone makes them fire, evidence resolves them, people act on them, the CarePlan follows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from service.domain.alert_lifecycle import ActionRequest, AlertAction
from service.fhir.validation import validate_resource
from service.platform.config import Settings
from service.platform.errors import Problem, RefractureError
from tests.support import records
from tests.support.clock import ManualClock
from tests.support.databases import query_one
from tests.support.http import FHIR_JSON
from tests.support.parts import api_app, build_parts
from tests.support.processes import WorkerProcess
from tests.support.queue import RecordingQueue
from tests.support.records import administration, denosumab_patient, egfr_result
from tests.support.settings import command_env, make_settings
from tests.support.tokens import AUTH
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FHIR = FHIR_JSON
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def patient_bundle(pid: str, dose_day: date, operation_day: date | None = None) -> dict[str, Any]:
    return records.bundle(denosumab_patient(pid, dose_day, operation_day))


def alerts(client: TestClient, database_url: str, pid: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT code, status FROM alert WHERE patient_id = %s ORDER BY opened_at", (pid,)
        ).fetchall()
    return {str(code): str(status) for code, status in rows}


def care_plan(client: TestClient, pid: str) -> dict[str, Any] | None:
    bundle = client.get("/fhir/CarePlan", params={"subject": f"Patient/{pid}"}).json()
    return bundle["entry"][0]["resource"] if bundle["total"] else None


def activity_for(plan: dict[str, Any], code: str) -> dict[str, Any]:
    return next(
        a
        for a in plan["activity"]
        if any(c["code"] == code for r in a["detail"].get("reasonCode", []) for c in r["coding"])
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def timed(services: LocalServices, database_url: str, clock: ManualClock) -> Iterator[tuple[Parts, TestClient]]:
    parts = build_parts(
        make_settings(services, database_url, timezone="Europe/Berlin"), queue=RecordingQueue(), clock=clock
    )
    with TestClient(headers=AUTH, app=api_app(parts), raise_server_exceptions=False) as client:
        yield parts, client


def ingest(parts: Parts, client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/fhir", content=json.dumps(body), headers=FHIR)
    assert response.status_code == 200, response.text
    patients = [
        e["resource"]["subject"]["reference"].split("/")[1] for e in body["entry"] if "subject" in e["resource"]
    ] or [body["entry"][0]["resource"]["id"]]
    parts.changes.process(sorted(set(patients)))


def test_time_alone_turns_a_due_dose_overdue(
    timed: tuple[Parts, TestClient], database_url: str, clock: ManualClock
) -> None:
    parts, client = timed
    ingest(parts, client, patient_bundle("t1", (T0 - timedelta(days=170)).date()))
    assert alerts(client, database_url, "t1") == {"denosumab-dose-due": "open"}
    first_plan = care_plan(client, "t1")
    assert first_plan is not None
    assert validate_resource(first_plan) == []
    assert activity_for(first_plan, "denosumab-dose-due")["detail"]["status"] == "not-started"

    assert parts.sweeper.sweep().patients == 0  # nothing is due yet: the index says when
    clock.now = T0 + timedelta(days=60)  # no new data, eight months after the dose
    swept = parts.sweeper.sweep()
    assert swept.patients == 1
    assert alerts(client, database_url, "t1") == {"denosumab-dose-due": "resolved", "denosumab-overdue": "open"}
    assert (
        query_one(database_url, "SELECT note FROM alert_event WHERE action = 'resolved'")
        == "superseded by denosumab-overdue"
    )
    plan = care_plan(client, "t1")
    assert plan is not None
    assert plan["meta"]["versionId"] == "2"
    assert activity_for(plan, "denosumab-overdue")["detail"]["status"] == "not-started"
    # The superseded activity is stopped in the next version with why (not "completed": no dose was given), not
    # dropped.
    superseded = activity_for(plan, "denosumab-dose-due")["detail"]
    assert superseded["status"] == "stopped"
    assert superseded["statusReason"] == {"text": "superseded by 'Denosumab dose overdue'"}
    events = query_one(database_url, "SELECT count(*) FROM alert_event")
    assert parts.sweeper.sweep().patients == 0  # safe to run twice
    assert parts.evaluator.evaluate_patients(["t1"]).opened == 0  # re-evaluation changes nothing
    assert query_one(database_url, "SELECT count(*) FROM alert_event") == events
    assert care_plan(client, "t1")["meta"]["versionId"] == "2"  # type: ignore[index]

    # A missed day is caught up: the next threshold (16 weeks late) passed while no sweep ran.
    clock.now = T0 + timedelta(days=160)
    assert parts.sweeper.sweep().patients == 1
    assert alerts(client, database_url, "t1")["denosumab-stopped-without-follow-on"] == "open"


def test_a_follow_on_infusion_resolves_and_the_plan_says_so(timed: tuple[Parts, TestClient], database_url: str) -> None:
    parts, client = timed
    ingest(parts, client, patient_bundle("t2", (T0 - timedelta(days=240)).date()))
    assert alerts(client, database_url, "t2") == {"denosumab-overdue": "open"}
    zoledronic = administration("t2", "zol-1", T0.date(), "zoledronic acid 5 MG/100 ML Injection")
    client.put(f"/fhir/MedicationAdministration/{zoledronic['id']}", content=json.dumps(zoledronic), headers=FHIR)
    parts.changes.process(["t2"])
    assert alerts(client, database_url, "t2") == {"denosumab-overdue": "resolved"}
    plan = care_plan(client, "t2")
    assert plan is not None
    assert activity_for(plan, "denosumab-overdue")["detail"]["status"] == "completed"
    assert validate_resource(plan) == []


def test_people_act_on_alerts_with_who_and_when(
    timed: tuple[Parts, TestClient], database_url: str, clock: ManualClock
) -> None:
    parts, client = timed
    ingest(parts, client, patient_bundle("t3", (T0 - timedelta(days=240)).date()))
    alert_id = str(query_one(database_url, "SELECT id FROM alert WHERE patient_id = 't3'"))
    act = parts.actions.act
    acknowledged = act(alert_id, ActionRequest(AlertAction.ACKNOWLEDGE), "coordinator.a", expected_revision=1)
    assert acknowledged.alert.status == "acknowledged"
    with pytest.raises(RefractureError) as stale:
        act(alert_id, ActionRequest(AlertAction.ASSIGN, assignee="nurse.b"), "coordinator.c", expected_revision=1)
    assert stale.value.problem is Problem.CONFLICT  # someone acted first
    act(alert_id, ActionRequest(AlertAction.SNOOZE, until=(T0 + timedelta(days=7)).date()), "coordinator.a")
    with pytest.raises(RefractureError) as no_reason:
        act(alert_id, ActionRequest(AlertAction.DISMISS, reason=" "), "coordinator.a")
    assert no_reason.value.problem is Problem.CONFLICT
    plan = care_plan(client, "t3")
    assert plan is not None
    assert activity_for(plan, "denosumab-overdue")["detail"]["status"] == "on-hold"
    clock.now = T0 + timedelta(days=8)
    parts.sweeper.sweep()  # the snooze ends by itself
    assert alerts(client, database_url, "t3") == {"denosumab-overdue": "open"}
    result = act(alert_id, ActionRequest(AlertAction.DISMISS, reason="patient moved to another clinic"), "dr.d")
    assert result.alert.status == "dismissed"
    assert [(e.actor, e.action) for e in result.history] == [
        ("refracture", "opened"),
        ("coordinator.a", "acknowledge"),
        ("coordinator.a", "snooze"),
        ("refracture", "unsnoozed"),
        ("dr.d", "dismiss"),
    ]
    # Dismissed stays dismissed for the same dose, whatever the sweeps say...
    clock.now = T0 + timedelta(days=30)
    parts.evaluator.evaluate_patients(["t3"])
    assert alerts(client, database_url, "t3") == {"denosumab-overdue": "dismissed"}
    assert activity_for(care_plan(client, "t3"), "denosumab-overdue")["detail"]["status"] == "cancelled"  # type: ignore[arg-type]
    # ...and can be reopened by a person.
    reopened = act(alert_id, ActionRequest(AlertAction.REOPEN, note="back with us"), "dr.d")
    assert reopened.alert.status == "open"


def test_one_active_alert_per_patient_and_code(timed: tuple[Parts, TestClient], database_url: str) -> None:
    parts, client = timed
    ingest(parts, client, patient_bundle("t4", (T0 - timedelta(days=240)).date()))
    import psycopg

    with pytest.raises(psycopg.errors.UniqueViolation), psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO alert (id, patient_id, code, status, priority, due_date, episode, evidence, "
            "detail, opened_at, updated_at) SELECT gen_random_uuid(), patient_id, code, 'open', priority, "
            "due_date, 'other', evidence, detail, now(), now() FROM alert WHERE patient_id = 't4'"
        )


def test_the_sweep_uses_the_configured_time_zone(services: LocalServices, database_url: str) -> None:
    # 23:30 UTC on 3 Jan is already 4 Jan in Kiritimati (UTC+14): the day count follows the zone.
    late = ManualClock(datetime(2026, 1, 3, 23, 30, tzinfo=UTC))
    dose_day = date(2026, 1, 4) - timedelta(days=214)
    for zone, expected in (("UTC", "denosumab-dose-due"), ("Pacific/Kiritimati", "denosumab-overdue")):
        settings = make_settings(services, database_url, timezone=zone)
        parts = build_parts(settings, queue=RecordingQueue(), clock=late)
        with TestClient(headers=AUTH, app=api_app(parts)) as client:
            pid = f"tz-{zone.split('/')[-1].lower()}"
            ingest(parts, client, patient_bundle(pid, dose_day))
            assert set(alerts(client, database_url, pid)) == {expected}


def test_care_plan_search_and_read(timed: tuple[Parts, TestClient]) -> None:
    parts, client = timed
    assert client.get("/fhir/CarePlan", params={"subject": "Patient/nobody"}).json()["total"] == 0
    ingest(parts, client, patient_bundle("t5", (T0 - timedelta(days=240)).date()))
    plan = care_plan(client, "t5")
    assert plan is not None
    assert client.get(f"/fhir/CarePlan/{plan['id']}").json() == plan
    assert plan["identifier"][0]["system"] == "https://refracture.dev/fhir/sid/care-plan"
    assert plan["supportingInfo"][0]["reference"].startswith("RiskAssessment/")
    assert client.get("/fhir/CarePlan", params={"subject": "Patient/t5", "status": "active"}).status_code == 400


@pytest.mark.worker
def test_with_a_real_worker_and_the_sweep_command(
    settings: Settings,
    database_url: str,
    worker: WorkerProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    today = datetime.now(UTC).date()
    parts = build_parts(settings)  # the real doorbell
    with TestClient(headers=AUTH, app=api_app(parts)) as client:
        body = patient_bundle("w1", today - timedelta(days=243))  # last dose eight months ago
        assert client.post("/fhir", content=json.dumps(body), headers=FHIR).status_code == 200
        assert wait_for(lambda: alerts(client, database_url, "w1") == {"denosumab-overdue": "open"})
        from service.entrypoints.cli import main

        with command_env(monkeypatch, DATABASE_URL=settings.database_url.get_secret_value()):
            assert main(["sweep"]) == 0
        assert "swept" in capsys.readouterr().out
        plan = care_plan(client, "w1")
        assert plan is not None
        assert activity_for(plan, "denosumab-overdue")["detail"]["kind"] == "MedicationRequest"
        zoledronic = administration("w1", "zol", today, "zoledronic acid 5 MG/100 ML Injection")
        client.put(f"/fhir/MedicationAdministration/{zoledronic['id']}", content=json.dumps(zoledronic), headers=FHIR)
        assert wait_for(lambda: alerts(client, database_url, "w1") == {"denosumab-overdue": "resolved"})
        assert wait_for(
            lambda: (
                activity_for(care_plan(client, "w1"), "denosumab-overdue")[  # type: ignore[arg-type]
                    "detail"
                ]["status"]
                == "completed"
            )
        )


def test_sweep_all_brings_every_known_patient_up_to_date(timed: tuple[Parts, TestClient], database_url: str) -> None:
    parts, client = timed
    body = patient_bundle("t6", (T0 - timedelta(days=240)).date())
    assert client.post("/fhir", content=json.dumps(body), headers=FHIR).status_code == 200
    assert parts.sweeper.sweep().patients == 0  # never evaluated, so not in the index yet
    outcome = parts.sweeper.sweep(everyone=True)
    assert outcome.patients == 1
    assert alerts(client, database_url, "t6") == {"denosumab-overdue": "open"}


def gap_patient(pid: str, egfr: float | None, statement_since: date | None = None) -> list[dict[str, Any]]:
    """A PKP 20 weeks ago with a DXA; optionally an eGFR, and alendronate taken since a day (a statement)."""
    operation_day = (T0 - timedelta(weeks=20)).date()
    subject = {"reference": f"Patient/{pid}"}
    resources: list[dict[str, Any]] = patient_bundle(pid, operation_day)["entry"][:3]
    out = [e["resource"] for e in resources]
    if egfr is not None:
        out.append(egfr_result(pid, egfr, (T0 - timedelta(days=30)).date()))
    if statement_since is not None:
        out.append(
            {
                "resourceType": "MedicationStatement",
                "id": f"{pid}-aln",
                "status": "active",
                "subject": subject,
                "medicationCodeableConcept": {"text": "alendronate 70 mg tablet"},
                "effectivePeriod": {"start": statement_since.isoformat()},
            }
        )
    return out


def test_the_kidneys_decide_whether_a_bisphosphonate_is_recommended(
    timed: tuple[Parts, TestClient], database_url: str
) -> None:
    parts, client = timed
    ingest(parts, client, records.bundle(gap_patient("k1", 25.0)))
    ingest(parts, client, records.bundle(gap_patient("k2", 62.0)))
    assert alerts(client, database_url, "k1") == {"treatment-gap": "open"}
    low, ok = care_plan(client, "k1"), care_plan(client, "k2")
    assert low is not None
    assert ok is not None
    assert validate_resource(low) == []
    low_gap = activity_for(low, "treatment-gap")["detail"]
    assert "Specialist review (renal function)" in low_gap["description"]
    assert "eGFR 25" in low_gap["description"]
    assert "zoledronic" not in json.dumps(low).lower()
    assert "Start anti-osteoporosis treatment" in activity_for(ok, "treatment-gap")["detail"]["description"]
    assert "25-OH vitamin D" in activity_for(ok, "treatment-gap")["detail"]["description"]


def test_alendronate_since_before_the_fracture_closes_the_gap_and_myeloma_opens_none(
    timed: tuple[Parts, TestClient], database_url: str
) -> None:
    parts, client = timed
    since = (T0 - timedelta(days=900)).date()
    ingest(parts, client, records.bundle(gap_patient("g1", 62.0, statement_since=since)))
    assert alerts(client, database_url, "g1") == {}
    # the same patient with myeloma in the record on zoledronic acid 4 mg: no osteoporosis alert at all
    resources = gap_patient("g2", 62.0)
    resources += [
        {
            "resourceType": "Condition",
            "id": "g2-myeloma",
            "subject": {"reference": "Patient/g2"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C90.00"}]},
            "onsetDateTime": "2024-06-01",
        },
        administration("g2", "zol4", (T0 - timedelta(days=20)).date(), "zoledronic acid 4 mg/5 mL concentrate"),
    ]
    ingest(parts, client, records.bundle(resources))
    assert alerts(client, database_url, "g2") == {}
    ingest(parts, client, records.bundle(gap_patient("g3", 62.0)))
    assert alerts(client, database_url, "g3") == {"treatment-gap": "open"}


def test_the_sweep_runs_batches_side_by_side_and_misses_no_one(
    services: LocalServices, database_url: str, clock: ManualClock
) -> None:
    # Batches of one patient, two in flight (issue 15): every due patient is swept once, each in its own transaction.
    parts = build_parts(
        make_settings(services, database_url, sweep_batch_size=1, sweep_workers=2), queue=RecordingQueue(), clock=clock
    )
    # The app closes the parts when the client stops.
    with TestClient(headers=AUTH, app=api_app(parts), raise_server_exceptions=False) as client:
        pids = [f"sb{n}" for n in range(5)]
        for pid in pids:
            ingest(parts, client, patient_bundle(pid, (T0 - timedelta(days=170)).date()))
        clock.now = T0 + timedelta(days=60)
        swept = parts.sweeper.sweep()
        assert (swept.patients, swept.opened, swept.resolved, swept.care_plans) == (5, 5, 5, 5)
        for pid in pids:
            assert alerts(client, database_url, pid) == {
                "denosumab-dose-due": "resolved",
                "denosumab-overdue": "open",
            }
        assert parts.sweeper.sweep().patients == 0
