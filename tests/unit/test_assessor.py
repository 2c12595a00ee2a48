"""The Assessor on in-memory ports (tests/support/fakes/): an assessment stored and its write-back queued in one
transaction, unchanged inputs not stored again, patients outside the model left alone, and rescoring in batches."""

from __future__ import annotations

import json
from datetime import timedelta
from unittest.mock import patch

import pytest

from service.domain.calibration import Calibration
from service.usecases.assess import Assessor
from service.usecases.ports.assessment import AssessmentStore
from tests.support.clinic import T0, Clinic
from tests.support.clock import ManualClock
from tests.support.fakes import MemoryStore
from tests.support.records import administration, denosumab_patient, patient

DOSE = (T0 - timedelta(days=100)).date()


def test_an_assessment_is_stored_and_its_write_back_queued() -> None:
    clinic = Clinic()
    clinic.ingest(denosumab_patient("a1", DOSE))
    outcome = clinic.assessor.assess_patients(["a1"])
    assert (outcome.assessed, outcome.unchanged, outcome.not_applicable) == (1, 0, 0)
    (stored,) = clinic.store.assessments_of("a1")
    assert (stored.row.sequence_no, stored.row.assessed_at) == (1, T0)
    assert 0.0 < stored.row.probability_low <= stored.row.probability <= stored.row.probability_high < 1.0
    assert clinic.store.tables.risk_summaries["a1"] == (stored.row.band, stored.row.probability, T0)
    job = clinic.store.job("a1")
    assert job is not None
    assert (job.status, job.next_attempt_at) == ("pending", T0)
    # The RiskAssessment is rendered from the compact row when read.
    text = clinic.store.read_risk_assessment(stored.row.id)
    assert text is not None
    resource = json.loads(text.body)
    assert (resource["resourceType"], resource["id"], resource["subject"]) == (
        "RiskAssessment",
        stored.row.id,
        {"reference": "Patient/a1"},
    )
    assert clinic.store.risk_assessments_of("a1", 10) == [text.body]


def test_unchanged_inputs_are_not_stored_again() -> None:
    clinic = Clinic()
    clinic.ingest(denosumab_patient("a2", DOSE))
    clinic.assessor.assess_patients(["a2"])
    job = clinic.store.job("a2")
    assert job is not None
    queued = job.wanted_seq
    clinic.clock.now += timedelta(hours=1)
    outcome = clinic.assessor.assess_patients(["a2", "a2"])
    assert (outcome.assessed, outcome.unchanged) == (0, 1)
    assert len(clinic.store.assessments_of("a2")) == 1
    job = clinic.store.job("a2")
    assert job is not None
    assert job.wanted_seq == queued  # nothing new to send


def test_new_facts_make_the_next_assessment_in_sequence() -> None:
    clinic = Clinic()
    clinic.ingest(denosumab_patient("a3", DOSE))
    clinic.assessor.assess_patients(["a3"])
    first = clinic.store.latest("a3")
    clinic.ingest([administration("a3", "dmab-2", T0.date())])
    assert clinic.assessor.assess_patients(["a3"]).assessed == 1
    latest = clinic.store.latest("a3")
    assert first is not None
    assert latest is not None
    assert latest.row.sequence_no == 2
    assert latest.row.inputs_hash != first.row.inputs_hash
    assert latest.row.id != first.row.id


def test_patients_outside_the_model_are_not_applicable() -> None:
    clinic = Clinic()
    clinic.ingest([patient("n1")])  # no augmentation on record
    outcome = clinic.assessor.assess_patients(["n1", "nobody"])
    assert (outcome.assessed, outcome.not_applicable) == (0, 2)
    assert clinic.store.tables.assessments == []
    assert clinic.store.tables.writebacks == {}
    assert clinic.assessor.assess_patients([]).assessed == 0
    assert clinic.store.calls["assessment_session"] == 1  # none for an empty call


def test_the_assessment_and_its_write_back_are_one_transaction() -> None:
    clinic = Clinic()
    clinic.ingest(denosumab_patient("a4", DOSE))
    with (
        patch("tests.support.fakes.clinical.queue_writeback", side_effect=RuntimeError("connection lost")),
        pytest.raises(RuntimeError),
    ):
        clinic.assessor.assess_patients(["a4"])
    assert clinic.store.tables.assessments == []  # rolled back: never an assessment the EHR will not get
    assert clinic.assessor.assess_patients(["a4"]).assessed == 1


def test_the_calibration_is_read_outside_the_transaction() -> None:
    store = MemoryStore()
    seen: list[int] = []

    def calibration() -> Calibration | None:
        # A read of its own, as the calibration store does: the fake raises if a session is open in this thread.
        store.read_text(("Patient", "c1"))
        seen.append(store.calls["assessment_session"])
        return None

    clinic = Clinic(store=store, calibration=calibration)
    clinic.ingest(denosumab_patient("c1", DOSE))
    assert clinic.assessor.assess_patients(["c1"]).assessed == 1
    assert seen == [0]


def test_rescore_walks_every_patient_with_an_augmentation_in_batches() -> None:
    clinic = Clinic()
    for pid in ("r1", "r2", "r3"):
        clinic.ingest(denosumab_patient(pid, DOSE))
    clinic.ingest([patient("r0")])
    total = clinic.assessor.rescore(batch_size=2)
    assert (total.assessed, total.unchanged, total.not_applicable) == (3, 0, 0)
    assert clinic.store.calls["assessment_session"] == 2  # one transaction per batch
    again = clinic.assessor.rescore(batch_size=2)
    assert (again.assessed, again.unchanged) == (0, 3)  # safe to run again
    given = clinic.assessor.rescore(["r2", "r0"], batch_size=1)
    assert (given.unchanged, given.not_applicable) == (1, 1)
    # The parts of a split rescore are disjoint and together cover everyone.
    parts = [clinic.store.patients_to_rescore("", 10, part, 2) for part in (0, 1)]
    assert sorted(parts[0] + parts[1]) == ["r1", "r2", "r3"]


def test_the_store_is_the_port() -> None:
    store: AssessmentStore = MemoryStore()
    clock = ManualClock(T0)
    assert Assessor(store, clock).assess_patients(["x"]).not_applicable == 1
