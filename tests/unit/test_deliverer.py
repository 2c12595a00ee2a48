"""The Deliverer on in-memory ports and a fake EHR: what it sends in each write mode, retries with backoff on 5xx and
timeouts, the dead letter for a 4xx, and never the same state twice. tests/integration/test_writeback.py checks the
same at the HTTP boundary against PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from unittest.mock import patch
from urllib.parse import unquote

import pytest

from service.domain.backoff import RetryPolicy
from service.fhir.validation import validate_resource
from service.fhir.writeback import PLAN_SYSTEM, RA_SYSTEM
from service.usecases.ports.ehr import EhrGateway
from service.usecases.ports.writeback import WritebackState, WritebackStore
from tests.ehr_standin import capability
from tests.support.clinic import T0, Clinic
from tests.support.fakes import EhrFault, FakeEhr, MemoryStore
from tests.support.records import ZOLEDRONIC, administration, denosumab_patient

OVERDUE = (T0 - timedelta(days=240)).date()  # the last denosumab dose: eight months ago


def ehr_of(clinic: Clinic) -> FakeEhr:
    assert clinic.ehr is not None
    return clinic.ehr


def exactly_once(clinic: Clinic, pid: str) -> None:
    """Each delivered assessment is at the EHR once, the newest among them; one CarePlan, our latest version."""
    ehr = ehr_of(clinic)
    sent = [
        i["value"]
        for r in ehr.resources("RiskAssessment")
        if r["subject"]["reference"] == f"Patient/{pid}"
        for i in r["identifier"]
        if i["system"] == RA_SYSTEM
    ]
    assert len(sent) == len(set(sent)), "an assessment reached the EHR twice"
    ours = clinic.store.assessments_of(pid)
    assert set(sent) == {a.row.id for a in ours if a.delivered_at is not None}
    assert ours[-1].row.id in sent, "the newest assessment never reached the EHR"
    plans = [p for p in ehr.resources("CarePlan") if p["subject"]["reference"] == f"Patient/{pid}"]
    assert len(plans) == 1, "the CarePlan was duplicated"
    stored = clinic.store.tables.care_plans[pid]
    assert stored.delivered_version == stored.version, "the latest CarePlan version was not delivered"
    assert all(t.delivered_version == t.version for t in clinic.store.tables.tasks.values() if t.patient_id == pid)


def test_the_fakes_are_the_ports() -> None:
    # mypy checks these assignments when run on tests/ (the fakes' modules check themselves the same way).
    store: WritebackStore = MemoryStore()
    ehr: EhrGateway = FakeEhr()
    assert store.writeback_counts() == {"jobs": {}, "oldest_pending_at": None}
    assert ehr.base_url.startswith("https://")


def test_one_transaction_with_the_risk_assessment_the_care_plan_and_the_tasks() -> None:
    clinic = Clinic()
    clinic.process(denosumab_patient("c1", OVERDUE))
    ehr = ehr_of(clinic)
    (write,) = ehr.writes()
    assert (write.method, write.path) == ("POST", "")
    entries = write.body["entry"]
    kinds = [e["resource"]["resourceType"] for e in entries]
    assert kinds[0] == "RiskAssessment"
    assert kinds[1] == "CarePlan"
    assert kinds[-1] == "Provenance"
    assert set(kinds[2:-1]) == {"Task"}
    assessment = clinic.store.latest("c1")
    assert assessment is not None
    assert unquote(entries[0]["request"]["url"]) == f"RiskAssessment?identifier={RA_SYSTEM}|{assessment.row.id}"
    assert unquote(entries[1]["request"]["url"]).startswith(f"CarePlan?identifier={PLAN_SYSTEM}|")
    assert "ifMatch" not in entries[1]["request"]  # first delivery: no version to match yet
    for entry in entries:
        assert validate_resource(entry["resource"]) == []
    # The EHR's ids and versions are recorded; the job is done.
    assert assessment.ehr_id == ehr.resources("RiskAssessment")[0]["id"]
    assert clinic.store.tables.care_plans["c1"].ehr_version == "1"
    job = clinic.store.job("c1")
    assert job is not None
    assert job.status == "delivered"
    assert clinic.metrics.writebacks == {("transaction", "delivered"): 1}
    exactly_once(clinic, "c1")


def test_nothing_is_sent_twice() -> None:
    clinic = Clinic()
    clinic.process(denosumab_patient("c1", OVERDUE))
    ehr = ehr_of(clinic)
    sent = len(ehr.requests)
    clinic.clock.now += timedelta(hours=1)
    clinic.deliver()
    clinic.pipeline.run(["c1"])  # nothing new: no new assessment, plan version or job
    clinic.deliver()
    assert len(ehr.requests) == sent
    # A new dose: a new assessment and CarePlan version, matched on the version the EHR gave; the first assessment
    # is not sent again.
    clinic.process([administration("c1", "d2", clinic.clock.now.date())])
    second = ehr.writes()[-1].body
    plan_request = next(e["request"] for e in second["entry"] if e["resource"]["resourceType"] == "CarePlan")
    assert plan_request["ifMatch"] == 'W/"1"'
    (task,) = [e for e in second["entry"] if e["resource"]["resourceType"] == "Task"]  # only the one that changed
    assert task["resource"]["status"] == "completed"  # the dose resolved the alert: completed in place
    assert len(ehr.resources("RiskAssessment")) == 2
    exactly_once(clinic, "c1")


def test_a_state_queued_during_a_delivery_is_sent_next() -> None:
    clinic = Clinic()
    clinic.ingest(denosumab_patient("n1", OVERDUE))
    clinic.pipeline.run(["n1"])
    read_state = clinic.store.writeback_state

    def meanwhile(patient_id: str) -> WritebackState:
        state = read_state(patient_id)
        # A new dose is processed while the first state is on its way to the EHR.
        clinic.ingest([administration("n1", "d2", T0.date())])
        clinic.pipeline.run(["n1"])
        return state

    with patch.object(clinic.store, "writeback_state", side_effect=meanwhile):
        clinic.deliver()
    job = clinic.store.job("n1")
    assert job is not None
    assert job.status == "pending"  # not done: a newer state came meanwhile
    clinic.deliver()
    assert len(ehr_of(clinic).resources("RiskAssessment")) == 2
    exactly_once(clinic, "n1")


def test_separate_conditional_requests_when_the_ehr_has_no_transactions() -> None:
    clinic = Clinic(ehr=FakeEhr(capability(transaction=False)))
    clinic.process(denosumab_patient("c2", OVERDUE))
    ehr = ehr_of(clinic)
    paths = [(w.method, w.path.split("?")[0]) for w in ehr.writes()]
    assert paths[:2] == [("PUT", "/RiskAssessment"), ("PUT", "/CarePlan")]
    assert set(paths[2:-1]) == {("PUT", "/Task")}
    assert paths[-1][1].startswith("/Provenance/")
    ra, plan = ehr.resources("RiskAssessment")[0], ehr.resources("CarePlan")[0]
    assert ehr.writes()[1].body["supportingInfo"] == [{"reference": f"RiskAssessment/{ra['id']}"}]
    assert ehr.writes()[2].body["focus"] == {"reference": f"CarePlan/{plan['id']}"}
    assert clinic.store.read_ehr_state()["mode"] == "conditional"  # type: ignore[index]
    exactly_once(clinic, "c2")


def test_a_refused_transaction_falls_back_to_separate_requests() -> None:
    clinic = Clinic()
    ehr = ehr_of(clinic)
    ehr.faults = [EhrFault(status=405, method="POST")]
    clinic.process(denosumab_patient("c4", OVERDUE))
    assert [w.method for w in ehr.writes()][:2] == ["POST", "PUT"]
    exactly_once(clinic, "c4")


def test_pull_mode_sends_nothing_and_the_job_waits() -> None:
    clinic = Clinic(ehr=None)
    clinic.process(denosumab_patient("c5", OVERDUE))
    job = clinic.store.job("c5")
    assert job is not None
    assert job.status == "pending"
    assert clinic.store.read_ehr_state()["mode"] == "pull"  # type: ignore[index]
    # An EHR configured later gets everything.
    later = Clinic(store=clinic.store, clock=clinic.clock)
    later.deliver()
    exactly_once(later, "c5")


def test_a_5xx_is_retried_with_backoff_and_nothing_is_duplicated() -> None:
    clinic = Clinic()
    ehr = ehr_of(clinic)
    ehr.faults = [EhrFault(status=500, times=3)]
    clinic.process(denosumab_patient("f1", OVERDUE))
    job = clinic.store.job("f1")
    assert job is not None
    assert (job.status, job.attempts, job.last_status) == ("pending", 1, 500)
    # The full jittered delay (random() = 1.0): base 2 s after the first failure, doubling after each.
    assert job.next_attempt_at == T0 + timedelta(seconds=2)
    clinic.deliver()  # not due yet: no request
    assert len(ehr.requests) == 1
    waits = []
    for _ in range(3):
        clinic.clock.now = job.next_attempt_at
        clinic.deliver()
        job = clinic.store.job("f1")
        assert job is not None
        waits.append(job.next_attempt_at - clinic.clock.now)
    assert waits[:2] == [timedelta(seconds=4), timedelta(seconds=8)]
    assert job.status == "delivered"
    assert clinic.metrics.writebacks == {("transaction", "retried"): 3, ("transaction", "delivered"): 1}
    exactly_once(clinic, "f1")


def test_retry_after_is_a_floor_and_a_timeout_is_retried_too() -> None:
    clinic = Clinic()
    ehr = ehr_of(clinic)
    ehr.faults = [EhrFault(status=503, retry_after=120), EhrFault(timeout=True)]
    clinic.process(denosumab_patient("f2", OVERDUE))
    job = clinic.store.job("f2")
    assert job is not None
    assert job.next_attempt_at - clinic.clock.now == timedelta(seconds=120)
    clinic.clock.now = job.next_attempt_at
    clinic.deliver()
    job = clinic.store.job("f2")
    assert job is not None
    assert (job.status, job.attempts, job.last_status) == ("pending", 2, None)
    assert "did not answer in time" in (job.last_error or "")
    clinic.clock.now = job.next_attempt_at
    clinic.deliver()
    exactly_once(clinic, "f2")


def test_an_answer_lost_after_the_ehr_committed_is_retried_without_a_duplicate() -> None:
    clinic = Clinic()
    ehr = ehr_of(clinic)
    ehr.faults = [EhrFault(after_commit=True, times=2)]
    clinic.process(denosumab_patient("f3", OVERDUE))
    assert len(ehr.resources("RiskAssessment")) == 1  # the EHR has it; refracture does not know
    job = clinic.store.job("f3")
    assert job is not None
    assert (job.status, job.attempts) == ("pending", 1)
    for _ in range(2):
        clinic.clock.now += timedelta(minutes=6)
        clinic.deliver()
    exactly_once(clinic, "f3")
    # A second state after the faults arrives too; the first is not sent again.
    clinic.process([administration("f3", "d2", clinic.clock.now.date())])
    assert len(ehr.resources("RiskAssessment")) == 2
    exactly_once(clinic, "f3")


def test_a_4xx_goes_to_the_dead_letter_with_the_answer_and_can_be_replayed() -> None:
    clinic = Clinic()
    ehr = ehr_of(clinic)
    answer = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "business-rule", "details": {"text": "profile X required"}}],
    }
    ehr.faults = [EhrFault(status=422, body=answer)]
    clinic.process(denosumab_patient("x1", OVERDUE))
    job = clinic.store.job("x1")
    assert job is not None
    assert (job.status, job.last_status, job.last_answer) == ("dead", 422, answer)
    assert clinic.store.dead_writebacks(10)[0]["patient_id"] == "x1"
    clinic.clock.now += timedelta(hours=2)
    clinic.deliver()
    assert len(ehr.requests) == 1  # not retried
    assert clinic.store.replay_writebacks(["x1"], clinic.clock.now) == ["x1"]
    clinic.deliver()
    exactly_once(clinic, "x1")
    # Each attempt is in the audit trail, refused then delivered, without the EHR's words.
    trail = [a for a in clinic.store.tables.audit if a.action == "write-back" and a.patient_id == "x1"]
    assert [(a.actor, a.outcome) for a in trail] == [("refracture", 422), ("refracture", 200)]
    assert all("profile X" not in (a.detail or "") for a in trail)


def test_a_job_failing_past_the_retry_window_is_dead_letter() -> None:
    clinic = Clinic(policy=RetryPolicy(2.0, 300.0, 1800.0))
    ehr = ehr_of(clinic)
    ehr.faults = [EhrFault(status=503, times=1000)]
    clinic.process(denosumab_patient("g1", OVERDUE))
    for _ in range(12):
        clinic.clock.now += timedelta(minutes=6)
        clinic.deliver()
    job = clinic.store.job("g1")
    assert job is not None
    assert job.status == "dead"
    assert "gave up" in (job.last_error or "")
    ehr.faults = []
    assert clinic.store.replay_writebacks(None, clinic.clock.now) == ["g1"]
    clinic.deliver()
    exactly_once(clinic, "g1")


def test_the_circuit_breaker_stops_hammering() -> None:
    clinic = Clinic(breaker_failures=2, policy=RetryPolicy(1.0, 1.0, 86400.0))
    ehr = ehr_of(clinic)
    ehr.faults = [EhrFault(status=503, times=1000)]
    for n in range(3):
        clinic.process(denosumab_patient(f"b{n}", OVERDUE))
    hits = len(ehr.requests)
    assert hits == 2  # the third patient's job found the circuit open
    clinic.clock.now += timedelta(seconds=30)
    assert clinic.deliverer.deliver_due().skipped == 0  # open: not even claimed
    assert len(ehr.requests) == hits
    ehr.faults = []
    clinic.clock.now += timedelta(minutes=11)
    clinic.deliver()
    for n in range(3):
        exactly_once(clinic, f"b{n}")


def test_a_care_plan_changed_at_the_ehr_is_merged_not_overwritten() -> None:
    clinic = Clinic()
    clinic.process(denosumab_patient("v1", OVERDUE))
    ehr = ehr_of(clinic)

    def clinician_edit(plan: dict[str, object]) -> None:
        plan["note"] = [{"text": "Discussed with the patient's daughter."}]

    ehr.edit("CarePlan", clinician_edit)  # version 2 at the EHR; refracture still thinks it is 1
    clinic.process([administration("v1", "d2", T0.date(), ZOLEDRONIC)])
    assert any(r.method == "GET" and r.path.startswith("/CarePlan?") for r in ehr.requests)
    (plan,) = ehr.resources("CarePlan")
    assert plan["note"] == [{"text": "Discussed with the patient's daughter."}]
    assert plan["meta"]["versionId"] == "3"
    assert clinic.store.tables.care_plans["v1"].ehr_version == "3"
    exactly_once(clinic, "v1")


def test_an_unreadable_capability_statement_makes_deliveries_wait() -> None:
    clinic = Clinic(ehr=FakeEhr(metadata_fails=True))
    clinic.process(denosumab_patient("u1", OVERDUE))
    assert clinic.deliverer.deliver_due().mode == "unknown"
    assert ehr_of(clinic).requests == []
    job = clinic.store.job("u1")
    assert job is not None
    assert job.status == "pending"


def test_a_crash_mid_delivery_leaves_the_job_to_the_next_worker_after_its_lease() -> None:
    clinic = Clinic()
    clinic.ingest(denosumab_patient("l1", OVERDUE))
    clinic.pipeline.run(["l1"])
    with patch.object(clinic.store, "complete_writeback", side_effect=SystemExit), pytest.raises(SystemExit):
        clinic.deliver()  # the worker dies after the EHR answered, before it recorded the delivery
    job = clinic.store.job("l1")
    assert job is not None
    assert job.status == "delivering"
    clinic.deliver()  # the lease holds: nobody else takes it
    assert len(ehr_of(clinic).writes()) == 1
    clinic.clock.now += timedelta(minutes=3)
    clinic.deliver()  # sent again: conditional updates on identifiers, so the EHR still holds one of each
    exactly_once(clinic, "l1")
