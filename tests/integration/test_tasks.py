"""Issue 18: a FHIR Task per open alert at the EHR stand-in, kept in step both ways, and served in pull mode."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from service.domain.alert_lifecycle import ActionRequest, AlertAction
from service.fhir.validation import validate_resource
from service.usecases.subscriptions import WorkDone
from tests.ehr_standin import RunningStandIn, capability
from tests.integration.test_writeback import (
    T0,
    TASK_SYSTEM,
    build,
    dose,
    exactly_once,
    patient,
    post,
    put,
)
from tests.support.clock import ManualClock
from tests.support.databases import query_one
from tests.support.http import FHIR_JSON
from tests.support.parts import api_app
from tests.support.tokens import AUTH, TOKENS

pytestmark = pytest.mark.integration

ROUTES = {
    "routes": [
        {"alert": "*", "site": "*", "owner": {"reference": "Organization/hospital", "display": "Bone health service"}},
        {"alert": "denosumab-overdue", "site": "north", "owner": {"reference": "CareTeam/fls-north"}},
    ]
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def app(
    services: LocalServices, database_url: str, ehr: RunningStandIn, clock: ManualClock, tmp_path: Path
) -> Iterator[tuple[Parts, TestClient]]:
    ehr.app.reset()
    routes = tmp_path / "task-routes.json"
    routes.write_text(json.dumps(ROUTES))
    parts = build(
        services,
        database_url,
        ehr,
        clock,
        task_routing_file=routes,
        sites={"north": ["Organization/org-north"]},
        subscription_public_url="http://refracture.test",  # event feeds on: the catch-up poll reads Tasks too
        auth_dev_tokens={
            **TOKENS,
            "test-integration-observations": {"sub": "iface", "client_id": "iface", "scope": "system/Observation.cu"},
        },
    )
    with TestClient(headers=AUTH, app=api_app(parts), raise_server_exceptions=False) as client:
        yield parts, client
    parts.close()


def north_patient(pid: str) -> dict[str, Any]:
    body = patient(pid)
    body["entry"][0]["resource"]["managingOrganization"] = {"reference": "Organization/org-north"}
    return body


def overdue_task(ehr: RunningStandIn, pid: str) -> dict[str, Any]:
    (found,) = [
        t
        for t in ehr.app.resources("Task")
        if t["for"]["reference"] == f"Patient/{pid}" and t["reasonCode"]["coding"][0]["code"] == "denosumab-overdue"
    ]
    return found


def alert_row(database_url: str, pid: str) -> tuple[str, str, str | None]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT id::text, status, dismiss_reason FROM alert WHERE patient_id = %s AND code = 'denosumab-overdue' "
            "ORDER BY opened_at DESC LIMIT 1",
            (pid,),
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def history(database_url: str, alert_id: str) -> list[tuple[str, str, str | None]]:
    with psycopg.connect(database_url) as conn:
        return [
            (r[0], r[1], r[2])
            for r in conn.execute(
                "SELECT actor, action, to_status FROM alert_event WHERE alert_id = %s ORDER BY id", (alert_id,)
            )
        ]


def poll(parts: Parts) -> WorkDone:
    done = WorkDone()
    parts.feed_worker.poll(done, force=True)
    return done


def complete_at_ehr(ehr: RunningStandIn, task: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    """A nurse at the EHR completes the Task from the work queue and signs a note."""
    changed = {
        **task,
        "status": status,
        "lastModified": "2026-06-01T10:30:00+00:00",
        "note": [{"text": "Dose given in clinic.", "authorReference": {"reference": "Practitioner/nurse-ana"}}],
    }
    return ehr.app.put(changed)


def test_an_overdue_dose_gets_a_task_that_the_ehr_completes_and_the_alert_follows(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str, clock: ManualClock
) -> None:
    parts, client = app
    post(parts, client, north_patient("t1"), "t1")
    task = overdue_task(ehr, "t1")
    (plan,) = ehr.app.resources("CarePlan")
    assert validate_resource(task) == []
    assert (task["status"], task["intent"], task["priority"]) == ("requested", "order", "urgent")
    assert task["owner"] == {"reference": "CareTeam/fls-north"}  # alert type and site
    assert task["for"] == {"reference": "Patient/t1"}
    assert task["focus"] == {"reference": f"CarePlan/{plan['id']}"}
    assert task["restriction"]["period"]["end"] == "2026-04-05"
    assert task["identifier"][0]["system"] == TASK_SYSTEM
    assert "t1" not in task["identifier"][0]["value"]
    other = [t for t in ehr.app.resources("Task") if t["id"] != task["id"]]
    assert [t["owner"]["reference"] for t in other] == ["Organization/hospital"]  # the default route
    alert_id, status, _ = alert_row(database_url, "t1")
    assert status == "open"

    # Our own write read back by the poll is no action.
    poll(parts)
    assert [a for a, _, _ in history(database_url, alert_id)] == ["refracture"]

    complete_at_ehr(ehr, task)
    writes = len(ehr.app.writes())
    poll(parts)
    alert_id, status, reason = alert_row(database_url, "t1")
    assert (status, reason) == ("dismissed", "completed at the EHR")
    assert history(database_url, alert_id)[-1] == ("ehr:Practitioner/nurse-ana", "ehr-task-completed", "dismissed")
    assert query_one(database_url, f"SELECT ehr_final_status FROM alert_task WHERE alert_id = '{alert_id}'") == (
        "completed"
    )
    # Read again (a notification and the poll, or the next poll): acted on once.
    poll(parts)
    assert parts.task_sync(overdue_task(ehr, "t1")) == "seen"
    assert [a for a, _, _ in history(database_url, alert_id)].count("ehr:Practitioner/nurse-ana") == 1
    # The CarePlan follows; the Task at the EHR stays as the nurse left it (never rewritten, never reopened).
    parts.deliverer.deliver_due()
    after = overdue_task(ehr, "t1")
    assert after["status"] == "completed"
    assert after["note"][0]["text"] == "Dose given in clinic."
    assert not [w for w in ehr.app.writes()[writes:] if w.path == "/Task"]
    activity = next(a for a in ehr.app.resources("CarePlan")[0]["activity"] if a["id"] == f"alert-{alert_id}")
    assert activity["detail"]["status"] == "cancelled"
    # Re-evaluating (the sweep, a new resource) does not raise the same alert again for the episode.
    parts.evaluator.evaluate_patients(["t1"])
    assert alert_row(database_url, "t1")[1] == "dismissed"
    exactly_once(ehr, database_url, "t1")


def test_acting_in_refracture_moves_the_task_and_a_dose_completes_it(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str
) -> None:
    parts, client = app
    post(parts, client, patient("t2"), "t2")
    alert_id, _, _ = alert_row(database_url, "t2")
    parts.actions.act(alert_id, ActionRequest(AlertAction.ACKNOWLEDGE), "coordinator-1")
    parts.deliverer.deliver_due()
    assert overdue_task(ehr, "t2")["status"] == "in-progress"
    poll(parts)  # our in-progress read back: no action
    assert [a for a, _, _ in history(database_url, alert_id)] == ["refracture", "coordinator-1"]
    put(parts, client, dose("t2", "d2", T0.date()), "t2")
    task = overdue_task(ehr, "t2")
    assert task["status"] == "completed"
    assert task["meta"]["versionId"] == "3"  # requested → in-progress → completed: a version each, never deleted
    exactly_once(ehr, database_url, "t2")


def test_dismissing_in_refracture_cancels_the_task(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str
) -> None:
    parts, client = app
    post(parts, client, patient("t3"), "t3")
    alert_id, _, _ = alert_row(database_url, "t3")
    parts.actions.act(alert_id, ActionRequest(AlertAction.DISMISS, reason="patient moved abroad"), "coordinator-1")
    parts.deliverer.deliver_due()
    task = overdue_task(ehr, "t3")
    assert task["status"] == "cancelled"
    assert validate_resource(task) == []
    exactly_once(ehr, database_url, "t3")


def test_an_ehr_in_progress_acknowledges_and_a_cancel_at_the_ehr_dismisses(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str
) -> None:
    parts, client = app
    post(parts, client, patient("t4"), "t4")
    task = overdue_task(ehr, "t4")
    ehr.app.put({**task, "status": "in-progress", "owner": {"reference": "Practitioner/dr-b"}})
    poll(parts)
    alert_id, status, _ = alert_row(database_url, "t4")
    assert status == "acknowledged"
    assert history(database_url, alert_id)[-1] == ("ehr:Practitioner/dr-b", "acknowledge", "acknowledged")
    complete_at_ehr(ehr, overdue_task(ehr, "t4"), "cancelled")
    poll(parts)
    assert alert_row(database_url, "t4")[1:] == ("dismissed", "cancelled at the EHR")


def test_a_task_completed_at_the_ehr_while_ours_changed_is_not_overwritten(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str
) -> None:
    parts, client = app
    ehr.app.capability = capability(transaction=False)
    post(parts, client, patient("t5"), "t5")
    complete_at_ehr(ehr, overdue_task(ehr, "t5"))  # no feed told us yet
    alert_id, _, _ = alert_row(database_url, "t5")
    parts.actions.act(alert_id, ActionRequest(AlertAction.ACKNOWLEDGE), "coordinator-1")
    parts.deliverer.deliver_due()  # If-Match fails (412): the Task is read back; the EHR's completion stands
    assert any(r.method == "GET" and r.path == "/Task" for r in ehr.app.requests)
    assert overdue_task(ehr, "t5")["status"] == "completed"
    assert alert_row(database_url, "t5")[1:] == ("dismissed", "completed at the EHR")
    parts.deliverer.deliver_due()  # the CarePlan that followed the alert
    assert query_one(database_url, "SELECT status FROM writeback WHERE patient_id = 't5'") == "delivered"
    assert overdue_task(ehr, "t5")["note"][0]["authorReference"] == {"reference": "Practitioner/nurse-ana"}
    exactly_once(ehr, database_url, "t5")


def test_an_ehr_that_takes_no_tasks_still_gets_the_rest(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str
) -> None:
    parts, client = app
    statement = capability()
    statement["rest"][0]["resource"] = [r for r in statement["rest"][0]["resource"] if r["type"] != "Task"]
    ehr.app.capability = statement
    post(parts, client, patient("t6"), "t6")
    assert ehr.app.resources("Task") == []
    assert len(ehr.app.resources("CarePlan")) == 1
    assert "Tasks are served" in parts.writebacks.read_ehr_state()["detail"]  # type: ignore[index]
    assert client.get("/fhir/Task", params={"subject": "Patient/t6"}).json()["total"] == 2


def test_pull_mode_serves_the_tasks_with_the_same_authorisation(
    services: LocalServices, database_url: str, clock: ManualClock
) -> None:
    tokens = {
        **TOKENS,
        "launch-p1": {"sub": "app", "roles": ["care-coordinator"], "scope": "patient/*.read", "patient": "p1"},
    }
    parts = build(services, database_url, None, clock, auth_dev_tokens=tokens)
    try:
        with TestClient(headers=AUTH, app=api_app(parts)) as client:
            post(parts, client, patient("p1"), "p1")
            post(parts, client, patient("p2"), "p2")
            found = client.get("/fhir/Task", params={"subject": "Patient/p1"}).json()
            assert found["total"] == 2
            task = next(
                e["resource"]
                for e in found["entry"]
                if e["resource"]["reasonCode"]["coding"][0]["code"] == "denosumab-overdue"
            )
            assert validate_resource(task) == []
            assert task["focus"]["reference"].startswith("CarePlan/")
            read = client.get(f"/fhir/Task/{task['id']}")
            assert read.status_code == 200
            assert read.json()["identifier"] == task["identifier"]
            by_identifier = client.get("/fhir/Task", params={"identifier": f"{TASK_SYSTEM}|{task['id']}"}).json()
            assert [e["resource"]["id"] for e in by_identifier["entry"]] == [task["id"]]
            requested = {"patient": "p1", "status": "requested,in-progress"}
            assert client.get("/fhir/Task", params=requested).json()["total"] == 2
            assert client.get("/fhir/Task", params={"patient": "p1", "status": "completed"}).json()["total"] == 0
            assert client.get("/fhir/Task", params={"patient": "p1", "status": "nonsense"}).status_code == 400
            assert client.get("/fhir/Task").status_code == 400  # no population-wide list
            assert client.get("/fhir/Task/not-a-task").status_code == 404
            # A patient-context token sees its patient's Tasks only.
            launch = {"Authorization": "Bearer launch-p1"}
            assert client.get("/fhir/Task", params={"subject": "Patient/p1"}, headers=launch).status_code == 200
            assert client.get("/fhir/Task", params={"subject": "Patient/p2"}, headers=launch).status_code == 403
            other = client.get("/fhir/Task", params={"subject": "Patient/p2"}).json()["entry"][0]["resource"]
            assert client.get(f"/fhir/Task/{other['id']}", headers=launch).status_code == 403
            assert (
                client.get(
                    "/fhir/Task", params={"identifier": f"{TASK_SYSTEM}|{other['id']}"}, headers=launch
                ).status_code
                == 403
            )
            assert client.get("/fhir/metadata").json()["rest"][0]["resource"][-1]["type"] == "Task"
    finally:
        parts.close()


def test_a_rest_hook_carrying_a_completed_task_moves_the_alert(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str
) -> None:
    parts, client = app
    post(parts, client, patient("t7"), "t7")
    task = complete_at_ehr(ehr, overdue_task(ehr, "t7"))
    hook = f"/fhir/$subscription-hook/ehr/Task/{task['id']}"
    headers = dict(FHIR_JSON)
    # A client whose scopes do not cover Task cannot close alerts this way.
    narrow = {**headers, "Authorization": "Bearer test-integration-observations"}
    assert client.put(hook, content=json.dumps(task), headers=narrow).status_code == 403
    assert alert_row(database_url, "t7")[1] == "open"
    answer = client.put(hook, content=json.dumps(task), headers=headers)
    assert answer.status_code == 200, answer.text
    assert alert_row(database_url, "t7")[1:] == ("dismissed", "completed at the EHR")
    # The same notification again (the EHR retries): nothing more happens.
    assert client.put(hook, content=json.dumps(task), headers=headers).status_code == 200
    alert_id = alert_row(database_url, "t7")[0]
    assert [a for a, _, _ in history(database_url, alert_id)].count("ehr:Practitioner/nurse-ana") == 1


def test_task_writes_can_be_turned_off(
    services: LocalServices, database_url: str, ehr: RunningStandIn, clock: ManualClock
) -> None:
    ehr.app.reset()
    parts = build(services, database_url, ehr, clock, ehr_write_tasks=False)
    try:
        with TestClient(headers=AUTH, app=api_app(parts)) as client:
            post(parts, client, patient("t8"), "t8")
            assert ehr.app.resources("Task") == []
            assert len(ehr.app.resources("CarePlan")) == 1
            assert "REFRACTURE_EHR_WRITE_TASKS=false" in parts.writebacks.read_ehr_state()["detail"]  # type: ignore[index]
            assert client.get("/fhir/Task", params={"subject": "Patient/t8"}).json()["total"] == 2
    finally:
        parts.close()


def test_a_note_added_at_the_ehr_survives_our_next_write(
    app: tuple[Parts, TestClient], ehr: RunningStandIn, database_url: str
) -> None:
    parts, client = app
    post(parts, client, patient("t9"), "t9")
    note = [{"text": "Patient prefers a morning slot.", "authorString": "Clerk D"}]
    ehr.app.put({**overdue_task(ehr, "t9"), "note": note})
    poll(parts)  # a note is no action
    alert_id, status, _ = alert_row(database_url, "t9")
    assert status == "open"
    parts.actions.act(alert_id, ActionRequest(AlertAction.ACKNOWLEDGE), "coordinator-1")
    parts.deliverer.deliver_due()
    task = overdue_task(ehr, "t9")
    assert (task["status"], task["note"]) == ("in-progress", note)
    exactly_once(ehr, database_url, "t9")
