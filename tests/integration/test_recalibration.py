"""Local recalibration, end to end: a synthetic cohort whose true risk differs from the literature model's, loaded
through the Ingestor; `refracture recalibrate`'s use case recovers calibration on held-out patients, registers
it once, and new assessments (and a rescore) carry the new model version."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.devtools.synth import iter_cohort
from service.devtools.synth_fhir import condition, entry
from service.domain.calibration import expit
from service.domain.outcomes import development_case
from service.domain.risk_model import model_version
from service.domain.risk_parameters import MODEL_NAME
from service.fhir.bundle import plan_bundle
from service.fhir.normalise import Normaliser
from service.fhir.terminology import Terminology
from service.platform.config import Settings
from tests.support.databases import query_one
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.settings import command_env
from tests.support.tokens import COORDINATOR

pytestmark = pytest.mark.integration

# Operations up to ~3 years before RECORDS_END; outcomes are read at TODAY, more than 2 years later, so every
# patient's 2-year window has closed (none is left out as "window open").
RECORDS_END = date(2023, 6, 1)
TODAY = date(2025, 7, 1)
PATIENTS = 8000
# The hospital's true risk: less extreme and higher than the literature model's (slope 0.6, intercept +0.5).
TRUE_INTERCEPT, TRUE_SLOPE = 0.5, 0.6
_LEVELS = ("T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")


_MEDICATIONS = {"MedicationAdministration", "MedicationDispense", "MedicationStatement", "MedicationRequest"}


def _trimmed(bundle: dict[str, Any], normaliser: Normaliser) -> tuple[str, list[Any], set[str], list[Any]]:
    """The patient's facts and coverage, and the entries without medicines dated only after the operation's first
    month: they cannot change the prediction at the operation, and leaving them out halves the load."""
    operation = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Procedure")
    keep_until = date.fromisoformat(operation["performedDateTime"][:10]) + timedelta(days=30)
    facts: list[Any] = []
    coverage: set[str] = set()
    entries: list[Any] = []
    patient = ""
    for item in bundle["entry"]:
        resource = item["resource"]
        out = normaliser.normalise(resource, lambda _: None)
        days = [f.effective_date for f in out.facts if f.effective_date is not None]
        if resource["resourceType"] in _MEDICATIONS and days and min(days) > keep_until:
            continue
        patient = patient or (out.patient_id or "")
        coverage.add(resource["resourceType"])
        facts += out.facts
        entries.append(item)
    return patient, facts, coverage, entries


def miscalibrated_cohort(size: int, seed: int) -> Iterator[dict[str, Any]]:
    """Synthetic patients with an outcome drawn from the true model: a new vertebral fracture Condition at another
    level within 2 years of the operation, for the patients the draw gives one."""
    rng = random.Random(seed)
    normaliser = Normaliser(Terminology({}))
    for bundle in iter_cohort(size, seed, RECORDS_END, prefix="cal"):
        patient, facts, coverage, entries = _trimmed(bundle, normaliser)
        bundle["entry"] = entries
        case = development_case(patient, facts, coverage, TODAY)
        assert not isinstance(case, str), case
        if rng.random() < expit(TRUE_INTERCEPT + TRUE_SLOPE * case.log_odds):
            treated = next(r for r in (e["resource"] for e in bundle["entry"]) if r["resourceType"] == "Procedure")
            level = treated["bodySite"][0]["coding"][0]["code"]
            other = _LEVELS[(_LEVELS.index(level) + 2) % len(_LEVELS)] if level in _LEVELS else "T8"
            onset = case.index_day + timedelta(days=rng.randint(20, 700))
            new = condition(
                patient,
                "new-ovcf",
                "M80.08XA",
                "Age-related osteoporosis with current pathological fracture, vertebra(e), initial encounter",
                onset,
                levels=(other,),
            )
            bundle["entry"].append(entry(new))
        yield bundle


def load(parts: Parts, bundles: Iterator[dict[str, Any]], per_transaction: int = 250) -> None:
    """Through the Ingestor, many patients per transaction (the HTTP layer's validation is not what is tested)."""
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        merged = {"resourceType": "Bundle", "type": "transaction", "entry": chunk}
        parts.ingestor.transaction(plan_bundle(merged, 100_000))
        chunk.clear()

    for bundle in bundles:
        chunk.extend(bundle["entry"])
        if len(chunk) >= per_transaction * 25:
            flush()
    if chunk:
        flush()


@pytest.fixture
def cohort_container(settings: Settings) -> Iterator[Parts]:
    moment = datetime.combine(TODAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    built = build_parts(settings, queue=RecordingQueue(), clock=lambda: moment)
    yield built
    built.close()


def test_recalibration_recovers_calibration_and_registers_once(cohort_container: Parts, database_url: str) -> None:
    parts = cohort_container
    load(parts, miscalibrated_cohort(PATIENTS, seed=11))
    # Monitoring's narrower read (only patients operated 2 years before the cut-off) finds the same cases.
    for cutoff in (TODAY, TODAY - timedelta(days=200), TODAY - timedelta(days=5000)):
        assert parts.recalibrator.closed_cases(cutoff) == parts.recalibrator.dataset(cutoff)[0]

    dry = parts.recalibrator.run(seed=1, held_out_share=0.5, dry_run=True)
    assert dry.dry_run
    assert not dry.registered
    assert query_one(database_url, "SELECT count(*) FROM model_evaluation") == 0

    report = parts.recalibrator.run(seed=1, held_out_share=0.5)
    assert report.cases == PATIENTS
    assert report.excluded == {}
    assert report.current is not None
    assert report.candidate is not None
    calibration = report.candidate_calibration
    assert calibration is not None
    current_slope = report.current.calibration_slope
    recalibrated_slope = report.candidate.calibration_slope
    print(
        f"held-out ({report.current.n} patients, {report.current.events} events): calibration slope "
        f"{current_slope:.3f} → {recalibrated_slope:.3f} ({report.candidate.slope_low:.2f}-"
        f"{report.candidate.slope_high:.2f}), in-the-large {report.current.calibration_in_the_large:+.3f} "
        f"→ {report.candidate.calibration_in_the_large:+.3f}, C {report.current.c_statistic:.3f}; fitted "
        f"a={calibration.intercept:.3f} b={calibration.slope:.3f} (true {TRUE_INTERCEPT}, {TRUE_SLOPE})"
    )
    # The literature model's log-odds spread less than the first model's (SD about 1 on its reference cohort, not
    # 2.2), so on 4,000 held-out patients a slope is known to about +-0.2: judged by its 95 % interval.
    assert report.current.slope_high < 1.0
    assert report.candidate.slope_low <= 1.0 <= report.candidate.slope_high
    assert 0.8 <= recalibrated_slope <= 1.25
    assert abs(report.candidate.calibration_in_the_large) < abs(report.current.calibration_in_the_large)
    assert report.candidate.log_loss < report.current.log_loss
    assert report.candidate.c_statistic == pytest.approx(report.current.c_statistic)  # b > 0 keeps the order
    assert report.registered, report.reason
    assert calibration.method == "logistic"
    assert math.isclose(calibration.slope, TRUE_SLOPE, abs_tol=0.1)
    assert query_one(database_url, "SELECT count(*) FROM model_calibration") == 1
    assert query_one(database_url, "SELECT parent_version FROM model_calibration") == model_version()
    assert parts.calibrations.active_calibration(model_version()) == calibration

    # Run again: the registered calibration is now the current model, and nothing better is found.
    again = parts.recalibrator.run(seed=1, held_out_share=0.5)
    assert not again.registered, again.reason
    assert again.current_version == f"{MODEL_NAME}/{calibration.version}"
    assert again.current is not None
    assert again.current.slope_low <= 1.0 <= again.current.slope_high
    assert query_one(database_url, "SELECT count(*) FROM model_calibration") == 1
    assert query_one(database_url, "SELECT count(*) FROM model_evaluation") == 2

    # New assessments carry the calibration: a rescore re-assesses everyone under the new model version.
    some = [f"cal-{n:06d}" for n in range(1, 21)]
    assert parts.assessor.rescore(some).assessed == len(some)
    versions = query_one(database_url, "SELECT array_agg(DISTINCT model_version) FROM assessment")
    assert versions == [f"{MODEL_NAME}/{calibration.version}"]
    # Stored compactly (issue 15): the RiskAssessment is rendered when read.
    stored = parts.assessments.read_risk_assessment(str(query_one(database_url, "SELECT id FROM assessment LIMIT 1")))
    assert stored is not None
    resource = json.loads(stored.body)
    assert resource["method"]["coding"][0]["version"] == calibration.version
    assert "Recalibrated to this hospital's outcomes" in resource["method"]["text"]
    assert parts.assessor.rescore(some).unchanged == len(some)

    # Retiring brings the literature model back.
    assert parts.calibrations.retire_all(datetime.now(UTC)) == [calibration.version]
    assert parts.calibrations.active_calibration(model_version()) is None
    assert parts.assessor.rescore(some).assessed == len(some)

    # The page and its JSON (the app closes the parts when the client stops).
    with TestClient(api_app(parts), headers=COORDINATOR) as client:
        document = client.get("/api/model/calibration").json()
        assert document["model_version"] == model_version()  # retired: the literature model again
        assert document["active_calibration"] is None
        assert [(c["model_version"], c["active"]) for c in document["calibrations"]] == [(calibration.version, False)]
        assert document["latest_evaluation"]["registered"] is False
        page = client.get("/worklist/model")
        assert page.status_code == 200
        assert calibration.version in page.text
        assert "<svg" in page.text
        assert "perfect calibration" in page.text


def test_the_command_reports_and_a_dry_run_stores_nothing(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.entrypoints.cli import main

    parts = build_parts(settings, queue=RecordingQueue())
    try:
        # The command reads outcomes as of the real today: records that ended more than 2 years ago.
        bundles = iter_cohort(300, 5, date.today() - timedelta(days=800), prefix="cli")
        load(parts, bundles)
    finally:
        parts.close()
    with command_env(monkeypatch, DATABASE_URL=database_url, REDIS_URL=settings.redis_url):
        assert main(["recalibrate", "--dry-run", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "development dataset: 300 patients" in out
    # No outcomes in this cohort: nothing to fit, and the command says so.
    assert "0 with a new vertebral fracture" in out
    assert "dry run: nothing stored: not enough patients with and without a new fracture" in out
    assert query_one(database_url, "SELECT count(*) FROM model_evaluation") == 0
    assert query_one(database_url, "SELECT count(*) FROM model_calibration") == 0
