"""The PatientPipeline on in-memory ports (tests/support/fakes/): one transaction per batch, the facts read once,
the assessment first and the alerts and care plan from the same facts, counted only once committed."""

from __future__ import annotations

from datetime import timedelta
from unittest.mock import patch

import pytest

from service.usecases.patient_pipeline import PatientPipeline
from service.usecases.ports.patient import PatientStore
from tests.support.clinic import T0, Clinic
from tests.support.fakes import MemoryStore
from tests.support.records import denosumab_patient, patient

OVERDUE = (T0 - timedelta(days=240)).date()


def test_a_batch_reads_its_facts_once_and_assesses_before_it_evaluates() -> None:
    clinic = Clinic()
    clinic.ingest(denosumab_patient("p1", OVERDUE))
    clinic.ingest(denosumab_patient("p2", OVERDUE))
    clinic.ingest([patient("p3")])
    outcome = clinic.pipeline.run(["p2", "p1", "p3", "p1"])
    assert (outcome.assessment.assessed, outcome.assessment.not_applicable) == (2, 1)
    assert (outcome.alerts.patients, outcome.alerts.opened, outcome.alerts.care_plans) == (3, 2, 2)
    assert clinic.store.calls == {"patient_session": 1, "lock_patients": 1, "facts_for_assessment": 1}
    # The care plan points at the assessment stored earlier in the same transaction.
    for pid in ("p1", "p2"):
        plan, latest = clinic.store.care_plan(pid), clinic.store.latest(pid)
        assert plan is not None
        assert latest is not None
        assert plan["supportingInfo"] == [{"reference": f"RiskAssessment/{latest.row.id}"}]
    assert clinic.store.alerts("p1") == {"denosumab-overdue": "open"}
    assert set(clinic.store.tables.writebacks) == {"p1", "p2"}
    assert clinic.metrics.alerts == {("opened", "denosumab-overdue"): 2}


def test_running_it_again_changes_nothing() -> None:
    clinic = Clinic()
    clinic.ingest(denosumab_patient("p1", OVERDUE))
    clinic.pipeline.run(["p1"])
    jobs = {p: j.wanted_seq for p, j in clinic.store.tables.writebacks.items()}
    again = clinic.pipeline.run(["p1"])
    assert (again.assessment.unchanged, again.alerts.opened, again.alerts.care_plans) == (1, 0, 0)
    assert {p: j.wanted_seq for p, j in clinic.store.tables.writebacks.items()} == jobs


def test_no_patients_no_transaction() -> None:
    clinic = Clinic()
    outcome = clinic.pipeline.run([])
    assert (outcome.assessment.assessed, outcome.alerts.patients) == (0, 0)
    assert clinic.store.calls == {}


def test_a_failed_evaluation_takes_the_assessment_with_it() -> None:
    clinic = Clinic()
    clinic.ingest(denosumab_patient("p1", OVERDUE))
    with (
        patch.object(clinic.evaluator, "evaluate_in", side_effect=RuntimeError("connection lost")),
        pytest.raises(RuntimeError),
    ):
        clinic.pipeline.run(["p1"])
    assert clinic.store.tables.assessments == []  # one transaction: all or nothing
    assert clinic.store.tables.writebacks == {}
    assert clinic.metrics.alerts == {}


def test_work_runs_the_batch() -> None:
    clinic = Clinic()
    clinic.ingest(denosumab_patient("p1", OVERDUE))
    clinic.pipeline.work(["p1"])
    assert clinic.store.alerts("p1") == {"denosumab-overdue": "open"}


def test_the_store_is_the_port() -> None:
    clinic = Clinic()
    store: PatientStore = MemoryStore()
    pipeline = PatientPipeline(store, clinic.assessor, clinic.evaluator, clinic.clock)
    assert pipeline.run(["nobody"]).assessment.not_applicable == 1
