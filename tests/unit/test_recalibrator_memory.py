"""The Recalibrator over the in-memory CalibrationStore, on a small seeded synthetic cohort whose true risk differs
from the literature model's: a dry run stores nothing, a run registers a calibration only when it is better on
held-out patients, and the next run finds nothing better (the SQL itself: tests/integration/test_recalibration.py)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from service.devtools.synth import iter_cohort
from service.devtools.synth_fhir import condition
from service.domain.calibration import expit
from service.domain.facts import Fact
from service.domain.outcomes import development_case
from service.domain.risk_model import model_version
from service.domain.risk_parameters import MODEL_NAME
from service.fhir.normalise import Normaliser
from service.fhir.terminology import Terminology
from service.usecases.recalibrate import Recalibrator, report_lines
from tests.support.clock import ManualClock
from tests.support.fakes import MemoryCalibrationStore

RECORDS_END = date(2023, 6, 1)
TODAY = date(2025, 7, 1)  # every patient's 2-year window has closed
NOW = datetime.combine(TODAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
# The hospital's true risk: higher and less extreme than the literature model's, by far enough that a few hundred
# patients tell (the integration test's 8,000 patients find a subtler difference).
TRUE_INTERCEPT, TRUE_SLOPE = 1.0, 0.4
LEVELS = ("T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
PATIENTS = 300


def miscalibrated(store: MemoryCalibrationStore, size: int, seed: int, *, outcomes: bool = True) -> None:
    """Synthetic patients, each with a new vertebral fracture at another level within 2 years of the operation when
    a draw from the true model gives one."""
    rng = random.Random(seed)
    normaliser = Normaliser(Terminology({}))
    for bundle in iter_cohort(size, seed, RECORDS_END, prefix="cal"):
        resources = [e["resource"] for e in bundle["entry"]]
        facts: list[Fact] = []
        patient = ""
        for resource in resources:
            out = normaliser.normalise(resource, lambda _: None)
            patient = patient or (out.patient_id or "")
            facts += out.facts
        coverage = {r["resourceType"] for r in resources}
        case = development_case(patient, facts, coverage, TODAY)
        assert not isinstance(case, str), case
        if outcomes and rng.random() < expit(TRUE_INTERCEPT + TRUE_SLOPE * case.log_odds):
            treated = next(r for r in resources if r["resourceType"] == "Procedure")
            level = treated["bodySite"][0]["coding"][0]["code"]
            other = LEVELS[(LEVELS.index(level) + 2) % len(LEVELS)] if level in LEVELS else "T8"
            onset = case.index_day + timedelta(days=rng.randint(20, 700))
            new = condition(patient, "new-ovcf", "M80.08XA", "Osteoporotic vertebral fracture", onset, levels=(other,))
            facts += normaliser.normalise(new, lambda _: None).facts
        store.put(patient, facts, coverage)


@pytest.fixture(scope="module")
def cohort() -> MemoryCalibrationStore:
    store = MemoryCalibrationStore()
    miscalibrated(store, PATIENTS, seed=11)
    return store


def recalibrator(store: MemoryCalibrationStore) -> Recalibrator:
    return Recalibrator(store, ManualClock(NOW), lambda moment: moment.date(), batch_size=120)


def fresh(cohort: MemoryCalibrationStore) -> MemoryCalibrationStore:
    """The cohort's facts with nothing registered (the facts are shared, not copied)."""
    store = MemoryCalibrationStore()
    store.facts, store.coverage = cohort.facts, cohort.coverage
    return store


def test_the_dataset_reads_in_batches_and_the_narrower_read_finds_the_same_cases(
    cohort: MemoryCalibrationStore,
) -> None:
    store = fresh(cohort)
    cases, excluded = recalibrator(store).dataset(TODAY)
    assert len(cases) == PATIENTS
    assert not excluded
    assert store.reads == 3  # 300 patients, 120 a batch
    assert recalibrator(store).closed_cases(TODAY) == cases
    # Before any window closed: monitoring's narrower read reads no facts at all.
    reads = store.reads
    assert recalibrator(store).closed_cases(date(2015, 1, 1)) == []
    assert store.reads == reads


def test_a_dry_run_registers_nothing_and_stores_nothing(cohort: MemoryCalibrationStore) -> None:
    store = fresh(cohort)
    dry = recalibrator(store).run(seed=1, held_out_share=0.5, dry_run=True)
    assert dry.dry_run
    assert not dry.registered
    assert dry.candidate_calibration is not None
    assert store.calibrations == {}
    assert store.evaluations == []
    assert "dry run: nothing stored" in report_lines(dry)[-1]


def test_a_better_calibration_is_registered_once(cohort: MemoryCalibrationStore) -> None:
    store = fresh(cohort)
    report = recalibrator(store).run(seed=1, held_out_share=0.5)
    assert report.registered, report.reason
    assert report.current is not None
    assert report.candidate is not None
    assert report.candidate.log_loss < report.current.log_loss
    assert report.gain_low > 0
    calibration = report.candidate_calibration
    assert calibration is not None
    assert calibration.n == PATIENTS  # refitted on every patient once validated
    assert [r.parent_version for r in store.calibrations.values()] == [model_version()]
    assert store.active_calibration(model_version()) == calibration
    assert store.active_calibration("another-base") is None
    (evaluation,) = store.evaluations
    assert evaluation.registered
    assert evaluation.candidate_version == f"{MODEL_NAME}/{calibration.version}"

    # Again: the registered calibration is now the current model, and nothing better is found.
    again = recalibrator(store).run(seed=1, held_out_share=0.5)
    assert not again.registered, again.reason
    assert again.current_version == f"{MODEL_NAME}/{calibration.version}"
    assert len(store.calibrations) == 1
    assert len(store.evaluations) == 2
    assert not store.evaluations[1].registered


def test_without_outcomes_nothing_is_fitted_but_the_run_is_recorded() -> None:
    store = MemoryCalibrationStore()
    miscalibrated(store, 40, seed=5, outcomes=False)
    report = recalibrator(store).run()
    assert not report.registered
    assert report.choice is None
    assert "not enough patients" in report.reason
    assert [e.registered for e in store.evaluations] == [False]
    assert store.calibrations == {}


def test_the_held_out_share_must_lie_between_0_and_1() -> None:
    with pytest.raises(ValueError, match="held-out share"):
        recalibrator(MemoryCalibrationStore()).run(held_out_share=1.0)
