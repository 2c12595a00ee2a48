"""The AlertEvaluator on in-memory ports (tests/support/fakes/): the denosumab and treatment-gap rules open and
resolve alerts, a re-evaluation of an unchanged record changes nothing, a dismissed alert stays dismissed for its
episode, and the CarePlan and the alerts' Tasks follow. tests/integration/test_alerts.py runs the same scenarios
end to end on PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from unittest.mock import patch

import pytest

from service.domain.alert_lifecycle import ActionRequest, AlertAction
from service.domain.alert_rules import AlertConfig
from service.fhir.validation import validate_resource
from service.platform.errors import ConcurrentWrite, RefractureError
from service.usecases.alert_actions import AlertActions
from service.usecases.alerts import AlertEvaluator
from service.usecases.ports.alerts import AlertStore, StoredAlert
from tests.support.clinic import T0, Clinic, local_day
from tests.support.fakes import MemoryStore
from tests.support.records import ZOLEDRONIC, administration, denosumab_patient, gap_patient, statement

OVERDUE = (T0 - timedelta(days=240)).date()  # the last denosumab dose: eight months ago


def activity_for(plan: dict[str, Any] | None, code: str) -> dict[str, Any]:
    assert plan is not None
    return next(
        a
        for a in plan["activity"]
        if any(c["code"] == code for r in a["detail"].get("reasonCode", []) for c in r["coding"])
    )


def evaluated(clinic: Clinic, resources: list[dict[str, Any]]) -> list[str]:
    """Ingest, assess (the care plan points at the newest RiskAssessment), then evaluate the alerts."""
    changed = clinic.ingest(resources)
    clinic.assessor.assess_patients(changed)
    clinic.evaluator.evaluate_patients(changed)
    return changed


def test_an_overdue_dose_opens_an_alert_with_its_care_plan_and_task() -> None:
    clinic = Clinic()
    evaluated(clinic, denosumab_patient("t1", OVERDUE))
    assert clinic.store.alerts("t1") == {"denosumab-overdue": "open"}
    plan = clinic.store.care_plan("t1")
    assert plan is not None
    assert validate_resource(plan) == []
    assert plan["meta"]["versionId"] == "1"
    assert activity_for(plan, "denosumab-overdue")["detail"]["status"] == "not-started"
    latest = clinic.store.latest("t1")
    assert latest is not None
    assert plan["supportingInfo"] == [{"reference": f"RiskAssessment/{latest.row.id}"}]
    (alert,) = clinic.store.alert_rows("t1")
    task = clinic.store.tables.tasks[alert.id]
    assert (task.version, task.resource["status"], task.delivered_version) == (1, "requested", None)
    assert [(e.actor, e.action) for e in clinic.store.tables.alert_events] == [("refracture", "opened")]
    assert clinic.store.tables.care_summaries["t1"].last_dose_date == OVERDUE
    job = clinic.store.job("t1")
    assert job is not None
    assert job.status == "pending"
    # Counted once the transaction committed.
    assert clinic.metrics.alerts == {("opened", "denosumab-overdue"): 1}


def test_re_evaluating_an_unchanged_record_changes_nothing() -> None:
    clinic = Clinic()
    evaluated(clinic, denosumab_patient("t2", OVERDUE))
    before = (
        list(clinic.store.tables.alert_events),
        clinic.store.tables.care_plans["t2"].version,
        clinic.store.tables.writebacks["t2"].wanted_seq,
        dict(clinic.store.tables.tasks),
    )
    clinic.clock.now += timedelta(minutes=5)
    outcome = clinic.evaluator.evaluate_patients(["t2"])
    assert (outcome.opened, outcome.resolved, outcome.updated, outcome.care_plans) == (0, 0, 0, 0)
    after = (
        list(clinic.store.tables.alert_events),
        clinic.store.tables.care_plans["t2"].version,
        clinic.store.tables.writebacks["t2"].wanted_seq,
        dict(clinic.store.tables.tasks),
    )
    assert after == before


def test_time_alone_turns_a_due_dose_overdue_and_supersedes_the_first_alert() -> None:
    clinic = Clinic()
    evaluated(clinic, denosumab_patient("t3", (T0 - timedelta(days=170)).date()))
    assert clinic.store.alerts("t3") == {"denosumab-dose-due": "open"}
    clinic.clock.now = T0 + timedelta(days=60)  # no new data, eight months after the dose
    outcome = clinic.evaluator.evaluate_patients(["t3"])
    assert (outcome.opened, outcome.resolved, outcome.care_plans) == (1, 1, 1)
    assert clinic.store.alerts("t3") == {"denosumab-dose-due": "resolved", "denosumab-overdue": "open"}
    resolved = [e for e in clinic.store.tables.alert_events if e.action == "resolved"]
    assert [e.note for e in resolved] == ["superseded by denosumab-overdue"]
    plan = clinic.store.care_plan("t3")
    assert plan is not None
    assert plan["meta"]["versionId"] == "2"
    superseded = activity_for(plan, "denosumab-dose-due")["detail"]
    assert superseded["status"] == "stopped"
    assert superseded["statusReason"] == {"text": "superseded by 'Denosumab dose overdue'"}
    # The first alert's Task is cancelled in a new version, the new alert has its own.
    first, second = clinic.store.alert_rows("t3")
    assert first.closed_at == clinic.clock.now
    assert clinic.store.tables.tasks[first.id].version == 2
    assert clinic.store.tables.tasks[second.id].version == 1


def test_a_follow_on_infusion_resolves_the_alert_and_the_plan_says_so() -> None:
    clinic = Clinic()
    evaluated(clinic, denosumab_patient("t4", OVERDUE))
    evaluated(clinic, [administration("t4", "zol-1", T0.date(), ZOLEDRONIC)])
    assert clinic.store.alerts("t4") == {"denosumab-overdue": "resolved"}
    assert activity_for(clinic.store.care_plan("t4"), "denosumab-overdue")["detail"]["status"] == "completed"
    (alert,) = clinic.store.alert_rows("t4")
    assert clinic.store.tables.tasks[alert.id].resource["status"] == "completed"
    assert clinic.metrics.alerts[("resolved", "denosumab-overdue")] == 1


def test_people_act_and_a_dismissed_alert_stays_dismissed_for_its_episode() -> None:
    clinic = Clinic()
    evaluated(clinic, denosumab_patient("t5", OVERDUE))
    actions = AlertActions(clinic.store, clinic.evaluator, clinic.clock, local_day)
    (alert,) = clinic.store.alert_rows("t5")
    acknowledged = actions.act(alert.id, ActionRequest(AlertAction.ACKNOWLEDGE), "coordinator.a", expected_revision=1)
    assert acknowledged.alert.status == "acknowledged"
    with pytest.raises(RefractureError):  # someone acted first
        actions.act(alert.id, ActionRequest(AlertAction.ASSIGN, assignee="n.b"), "coordinator.c", expected_revision=1)
    actions.act(alert.id, ActionRequest(AlertAction.SNOOZE, until=(T0 + timedelta(days=7)).date()), "coordinator.a")
    assert activity_for(clinic.store.care_plan("t5"), "denosumab-overdue")["detail"]["status"] == "on-hold"
    assert clinic.store.tables.schedules["t5"] == (T0 + timedelta(days=7)).date()  # the sweep wakes it
    clinic.clock.now = T0 + timedelta(days=8)
    clinic.evaluator.evaluate_patients(["t5"])  # the snooze ends by itself
    assert clinic.store.alerts("t5") == {"denosumab-overdue": "open"}
    result = actions.act(alert.id, ActionRequest(AlertAction.DISMISS, reason="moved to another clinic"), "dr.d")
    assert [(e.actor, e.action) for e in result.history] == [
        ("refracture", "opened"),
        ("coordinator.a", "acknowledge"),
        ("coordinator.a", "snooze"),
        ("refracture", "unsnoozed"),
        ("dr.d", "dismiss"),
    ]
    clinic.clock.now = T0 + timedelta(days=30)
    assert clinic.evaluator.evaluate_patients(["t5"]).opened == 0  # not reopened for the same dose
    assert clinic.store.alerts("t5") == {"denosumab-overdue": "dismissed"}
    assert activity_for(clinic.store.care_plan("t5"), "denosumab-overdue")["detail"]["status"] == "cancelled"


def test_the_kidneys_decide_whether_a_bisphosphonate_is_recommended() -> None:
    clinic = Clinic()
    operation_day = (T0 - timedelta(weeks=20)).date()
    egfr_day = (T0 - timedelta(days=30)).date()
    evaluated(clinic, gap_patient("k1", operation_day, 25.0, egfr_day))
    evaluated(clinic, gap_patient("k2", operation_day, 62.0, egfr_day))
    assert clinic.store.alerts("k1") == {"treatment-gap": "open"}
    low, ok = clinic.store.care_plan("k1"), clinic.store.care_plan("k2")
    low_gap = activity_for(low, "treatment-gap")["detail"]
    assert "Specialist review (renal function)" in low_gap["description"]
    assert "eGFR 25" in low_gap["description"]
    assert "zoledronic" not in json.dumps(low).lower()
    ok_gap = activity_for(ok, "treatment-gap")["detail"]["description"]
    assert "Start anti-osteoporosis treatment" in ok_gap
    assert "25-OH vitamin D" in ok_gap


def test_treatment_since_before_the_fracture_closes_the_gap_and_myeloma_opens_none() -> None:
    clinic = Clinic()
    operation_day = (T0 - timedelta(weeks=20)).date()
    taking = [*gap_patient("g1", operation_day, 62.0), statement("g1", (T0 - timedelta(days=900)).date())]
    evaluated(clinic, taking)
    assert clinic.store.alerts("g1") == {}
    myeloma = [
        *gap_patient("g2", operation_day, 62.0),
        {
            "resourceType": "Condition",
            "id": "g2-myeloma",
            "subject": {"reference": "Patient/g2"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C90.00"}]},
            "onsetDateTime": "2024-06-01",
        },
        administration("g2", "zol4", (T0 - timedelta(days=20)).date(), "zoledronic acid 4 mg/5 mL concentrate"),
    ]
    evaluated(clinic, myeloma)
    assert clinic.store.alerts("g2") == {}
    evaluated(clinic, gap_patient("g3", operation_day, 62.0))
    assert clinic.store.alerts("g3") == {"treatment-gap": "open"}


def test_a_failed_evaluation_keeps_nothing_and_counts_nothing() -> None:
    clinic = Clinic()
    clinic.ingest(denosumab_patient("t6", OVERDUE))
    last_write = "tests.support.fakes.clinical.MemoryPatientSession.update_care_summaries"
    with patch(last_write, side_effect=RuntimeError("connection lost")), pytest.raises(RuntimeError):
        clinic.evaluator.evaluate_patients(["t6"])
    assert clinic.store.tables.alerts == {}
    assert clinic.store.tables.care_plans == {}
    assert clinic.store.tables.writebacks == {}
    assert clinic.metrics.alerts == {}  # counted only after the commit


def test_one_active_alert_per_patient_and_code_like_the_unique_index() -> None:
    clinic = Clinic()
    evaluated(clinic, denosumab_patient("t7", OVERDUE))
    (alert,) = clinic.store.alert_rows("t7")
    with pytest.raises(ConcurrentWrite), clinic.store.alert_session() as session:
        session.insert_alerts([StoredAlert(**{**_fields(alert), "id": "other", "episode": "other"})])


def test_the_store_is_the_port() -> None:
    store: AlertStore = MemoryStore()
    clinic = Clinic()
    evaluator = AlertEvaluator(store, clinic.clock, AlertConfig(), local_day)
    assert evaluator.evaluate_patients(["nobody"]).patients == 1


def _fields(alert: StoredAlert) -> dict[str, Any]:
    return {name: getattr(alert, name) for name in StoredAlert.__dataclass_fields__}
