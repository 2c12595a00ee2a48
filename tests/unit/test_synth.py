"""The synthetic cohort: valid FHIR R4 that the service accepts and understands, deterministic, with realistic mixes."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from service.devtools.synth import cohort
from service.domain.alert_rules import evaluate
from service.domain.facts import Fact
from service.domain.features import build_features
from service.entrypoints.cli import main
from service.fhir.bundle import plan_bundle
from service.fhir.normalise import Normaliser
from service.fhir.terminology import Terminology
from service.fhir.validation import validate_resource

TODAY = date(2026, 11, 1)
SIZE = 300


@cache
def bundles() -> tuple[dict[str, Any], ...]:
    return tuple(cohort(SIZE, seed=4, today=TODAY))


def facts_of(bundle: dict[str, Any]) -> tuple[list[Fact], list[tuple[str, str]]]:
    normaliser = Normaliser(Terminology())
    facts: list[Fact] = []
    unrecognised: list[tuple[str, str]] = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        out = normaliser.normalise(resource, lambda _: None)
        source = f"{resource['resourceType']}/{resource['id']}"
        facts += [dataclasses.replace(f, source=source) for f in out.facts]
        unrecognised += [(u.system, u.code) for u in out.unrecognised]
    return facts, unrecognised


def test_every_bundle_is_valid_r4_and_accepted_by_the_service() -> None:
    for bundle in bundles():
        assert validate_resource(bundle) == []
        planned = plan_bundle(bundle, 5000)  # raises on anything the ingest endpoint would refuse
        assert all(plan.error is None for plan in planned.entries)
        for item in bundle["entry"]:
            assert validate_resource(item["resource"]) == []
            assert item["fullUrl"].startswith("https://")  # R4: the absolute URL of the resource


def test_every_code_is_one_refracture_recognises() -> None:
    for bundle in bundles():
        assert facts_of(bundle)[1] == []


def test_same_seed_and_day_give_the_same_bytes_and_another_seed_does_not() -> None:
    again = json.dumps(cohort(SIZE, seed=4, today=TODAY), sort_keys=True)
    assert again == json.dumps(list(bundles()), sort_keys=True)
    assert json.dumps(cohort(SIZE, seed=5, today=TODAY), sort_keys=True) != again


def test_nothing_is_dated_after_today() -> None:
    keys = ("birthDate", "onsetDateTime", "performedDateTime", "effectiveDateTime", "whenHandedOver", "authoredOn")
    for bundle in bundles():
        for item in bundle["entry"]:
            for key in keys:
                if key in item["resource"]:
                    assert date.fromisoformat(item["resource"][key]) <= TODAY, (item["resource"]["id"], key)


def test_the_mix_of_inputs_treatments_and_alerts_is_realistic() -> None:
    treatment: Counter[Any] = Counter()
    known: Counter[str] = Counter()
    alerts: Counter[str] = Counter()
    as_of = datetime(2026, 11, 1, 12, tzinfo=UTC)
    for bundle in bundles():
        facts = facts_of(bundle)[0]
        features = build_features(facts, ["Condition", "MedicationAdministration"], as_of)
        treatment[features.inputs["osteoporosis-treatment"]] += 1
        known.update(code for code, value in features.inputs.items() if value is not None)
        alerts.update(finding.code.value for finding in evaluate(facts, TODAY).findings)
    share = {k: v / SIZE for k, v in treatment.items()}
    # Loose bounds: most are treated or untreated, a clear minority stopped denosumab without a follow-on drug.
    assert 0.3 < share["treated"] < 0.75
    assert 0.2 < share["none"] < 0.5
    assert 0.05 < share["denosumab-stopped"] < 0.3
    for alert in (
        "treatment-gap",
        "bmd-assessment-gap",
        "denosumab-dose-due",
        "denosumab-overdue",
        "denosumab-stopped-without-follow-on",
        "adherence-check-due",
    ):
        assert alerts[alert] >= 5, alert
    assert alerts["treatment-gap"] > alerts["denosumab-overdue"]
    # Every input of the model is present for some patients and missing for others (records are incomplete).
    for code in ("dxa-t-score", "vertebral-hu", "hu-gradient", "cement-volume-high", "cement-leakage", "cobb-over-10"):
        assert 0.1 * SIZE < known[code] < 0.95 * SIZE, code
    for code in ("kyphosis-correction", "compression-38", "sarcopenia", "glucocorticoids", "cement-both-endplates"):
        assert known[code] > 0.05 * SIZE, code
    assert known["chronic-kidney-disease"] > 0.3 * SIZE


@pytest.mark.parametrize("ndjson", [False, True])
def test_the_synth_command_writes_one_bundle_per_patient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ndjson: bool
) -> None:
    common = ["synth", "--patients", "3", "--seed", "9", "--today", "2026-11-01"]
    if ndjson:
        assert main([*common, "--ndjson"]) == 0
        lines = capsys.readouterr().out.splitlines()
        written = [json.loads(line) for line in lines]
    else:
        assert main([*common, "--out", str(tmp_path)]) == 0
        files = sorted(tmp_path.glob("*.json"))
        assert [f.name for f in files] == [f"synth-00000{n}.json" for n in (1, 2, 3)]
        written = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    assert written == cohort(3, seed=9, today=TODAY)
