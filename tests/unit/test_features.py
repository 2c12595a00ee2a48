"""Features from facts: only what was known at the time, unknown kept apart from absent, sources kept."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from service.domain.facts import Fact, FactKind
from service.domain.features import build_features

OP = date(2025, 3, 10)
AS_OF = datetime(2025, 9, 1, 12, tzinfo=UTC)


def operation(**attrs: Any) -> Fact:
    return Fact(
        FactKind.VERTEBRAL_AUGMENTATION,
        effective_date=OP,
        status="completed",
        attrs={"method": "PKP", "levels": ["L1"], **attrs},
        source="Procedure/op",
        recorded_at=datetime(2025, 3, 11, tzinfo=UTC),
    )


def dose(drug: str, day: date, event: str = "administration", status: str = "completed", n: int = 0) -> Fact:
    return Fact(
        FactKind.MEDICATION,
        effective_date=day,
        status=status,
        attrs={"drug": drug, "event": event},
        source=f"MedicationAdministration/d{n}",
    )


def test_no_augmentation_means_the_model_does_not_apply() -> None:
    assert build_features([Fact(FactKind.SEX, value_text="female")], ["Patient"], AS_OF).index is None
    planned = Fact(FactKind.VERTEBRAL_AUGMENTATION, effective_date=OP, status="preparation", attrs={})
    assert build_features([planned], ["Procedure"], AS_OF).index is None


def test_facts_recorded_or_dated_after_the_assessment_are_ignored() -> None:
    later = Fact(
        FactKind.SARCOPENIA_DIAGNOSIS,
        effective_date=date(2024, 1, 1),
        status="active",
        source="Condition/s",
        recorded_at=AS_OF + timedelta(seconds=1),
    )
    future = Fact(FactKind.DXA_T_SCORE, value_num=-3.0, effective_date=date(2025, 9, 2), source="Observation/t")
    features = build_features([operation(), later, future], ["Condition"], AS_OF)
    assert features.inputs["sarcopenia"] is None
    assert features.inputs["dxa-t-score"] is None
    assert build_features([operation(), later], ["Condition"], AS_OF + timedelta(days=1)).inputs["sarcopenia"] is True
    # An operation not yet known at that time: no index event.
    assert build_features([operation()], ["Procedure"], datetime(2025, 3, 10, 23, tzinfo=UTC)).index is None


def test_a_comorbidity_is_absent_only_when_the_record_has_conditions() -> None:
    without = build_features([operation()], ["Procedure"], AS_OF).inputs
    assert without["type2-diabetes"] is None
    assert without["prior-vertebral-fracture"] is None
    with_conditions = build_features([operation()], ["Procedure", "Condition"], AS_OF).inputs
    assert with_conditions["type2-diabetes"] is False
    assert with_conditions["prior-vertebral-fracture"] is False
    assert with_conditions["sarcopenia"] is None  # rarely coded: no diagnosis is no evidence


@pytest.mark.parametrize(
    ("facts", "coverage", "expected"),
    [
        ([], ["Procedure"], None),
        ([], ["Procedure", "MedicationRequest"], "none"),
        ([dose("alendronate", date(2025, 4, 1), event="request", status="active")], ["MedicationRequest"], "treated"),
        ([dose("denosumab-60mg", date(2025, 4, 1))], ["MedicationAdministration"], "treated"),
        # the last denosumab dose more than 16 weeks late (295 days, the alerts' threshold) and nothing after it
        ([dose("denosumab-60mg", date(2024, 10, 20))], ["MedicationAdministration"], "denosumab-stopped"),
        # 7 months ago is overdue, not yet stopped: it covered the operation, so the patient was treated
        ([dose("denosumab-60mg", date(2025, 1, 20))], ["MedicationAdministration"], "treated"),
        (
            [dose("denosumab-60mg", date(2025, 1, 20)), dose("zoledronic-acid-5mg", date(2025, 8, 1), n=1)],
            ["MedicationAdministration"],
            "treated",
        ),
        (
            [
                dose("denosumab-60mg", date(2025, 6, 1)),
                dose("denosumab-60mg", date(2025, 7, 1), event="request", status="stopped", n=1),
            ],
            ["MedicationAdministration"],
            "denosumab-stopped",
        ),
        # oncology denosumab raises no osteoporosis alert but is antiresorptive exposure (alerts.md)
        ([dose("denosumab-120mg", date(2025, 8, 1))], ["MedicationAdministration"], "treated"),
        ([dose("alendronate", date(2025, 4, 1), event="request", status="cancelled")], ["MedicationRequest"], "none"),
    ],
)
def test_treatment_status(facts: list[Fact], coverage: list[str], expected: str | None) -> None:
    assert build_features([operation(), *facts], coverage, AS_OF).inputs["osteoporosis-treatment"] == expected


def test_inputs_keep_their_sources() -> None:
    hu = Fact(
        FactKind.VERTEBRAL_HU,
        value_num=58.0,
        effective_date=OP - timedelta(days=2),
        attrs={"levels": ["L1"]},
        source="Observation/hu-l1",
    )
    other = Fact(
        FactKind.VERTEBRAL_HU,
        value_num=30.0,
        effective_date=OP - timedelta(days=2),
        attrs={"levels": ["L4"]},
        source="Observation/hu-l4",
    )
    features = build_features([operation(), hu, other], ["Observation"], AS_OF)
    assert features.inputs["vertebral-hu"] == 58.0  # the treated level, not the lowest anywhere
    assert features.sources["vertebral-hu"] == ("Observation/hu-l1",)
    assert features.index is not None
    assert features.index.sources == ("Procedure/op",)


def test_prior_and_index_fractures_are_told_apart() -> None:
    index_fracture = Fact(
        FactKind.VERTEBRAL_FRACTURE,
        effective_date=OP - timedelta(days=20),
        status="active",
        attrs={"levels": ["L1", "L2"]},
        source="Condition/now",
    )
    old = Fact(
        FactKind.VERTEBRAL_FRACTURE,
        effective_date=date(2021, 5, 1),
        status="active",
        attrs={"levels": ["T8"]},
        source="Condition/old",
    )
    hip = Fact(FactKind.NON_VERTEBRAL_FRACTURE, effective_date=date(2019, 2, 1), source="Condition/hip")
    inputs = build_features([operation(), index_fracture, old, hip], ["Condition"], AS_OF).inputs
    assert inputs["early-surgery"] is True
    assert inputs["multiple-fractures"] is True
    assert inputs["prior-vertebral-fracture"] is True
    assert inputs["prior-nonvertebral-fracture"] is True


def test_kidney_function_from_egfr_or_stage() -> None:
    egfr = Fact(FactKind.EGFR, value_num=25.0, effective_date=date(2025, 1, 1), source="Observation/e")
    assert build_features([operation(), egfr], [], AS_OF).inputs["chronic-kidney-disease"] == "stage-4-5"
    stage = Fact(
        FactKind.CHRONIC_KIDNEY_DISEASE,
        effective_date=date(2020, 1, 1),
        status="active",
        attrs={"stage": 3},
        source="Condition/ckd",
    )
    assert build_features([operation(), stage], ["Condition"], AS_OF).inputs["chronic-kidney-disease"] == "stage-3"


def test_p1np_ctx_ratio_from_same_day_measurements() -> None:
    p1np = Fact(FactKind.P1NP, value_num=60.0, effective_date=date(2025, 5, 1), source="Observation/p1np")
    ctx = Fact(FactKind.BETA_CTX, value_num=0.5, effective_date=date(2025, 5, 1), source="Observation/ctx")
    features = build_features([operation(), p1np, ctx], [], AS_OF)
    assert features.inputs["p1np-ctx-ratio"] == 120.0
    assert features.sources["p1np-ctx-ratio"] == ("Observation/ctx", "Observation/p1np")
    other_day = Fact(FactKind.BETA_CTX, value_num=0.5, effective_date=date(2025, 4, 1), source="Observation/c2")
    assert build_features([operation(), p1np, other_day], [], AS_OF).inputs["p1np-ctx-ratio"] is None
