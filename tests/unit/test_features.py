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
        # oncology denosumab raises no osteoporosis alert but is antiresorptive exposure (docs/sources/alerts.md)
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


# --- inputs read as a clinician would (issue 14) -------------------------------------------------------------
def timed_operation(at: datetime | None) -> Fact:
    return Fact(
        FactKind.VERTEBRAL_AUGMENTATION,
        effective_date=OP,
        effective_at=at,
        status="completed",
        attrs={"method": "PVP", "levels": ["L1"], **({"timed": True} if at else {})},
        source="Procedure/op",
    )


def hu(value: float, day: date, at: datetime | None = None, level: str = "L1") -> Fact:
    return Fact(
        FactKind.VERTEBRAL_HU,
        value_num=value,
        effective_date=day,
        effective_at=at,
        attrs={"levels": [level], **({"timed": True} if at else {})},
        source=f"Observation/hu-{value:.0f}",
    )


SURGERY = datetime(2025, 3, 10, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("operation_at", "ct", "expected"),
    [
        (None, hu(80.0, OP - timedelta(days=1)), 80.0),  # the day before: pre-operative
        (SURGERY, hu(80.0, OP, SURGERY - timedelta(hours=2)), 80.0),  # that morning, before the operation
        (SURGERY, hu(80.0, OP, SURGERY + timedelta(hours=3)), None),  # after it: post-operative
        (None, hu(80.0, OP), None),  # the same day without times: ambiguous, left out
        (SURGERY, hu(80.0, OP), None),  # one time missing: ambiguous too
        (None, hu(80.0, OP + timedelta(days=1)), None),
    ],
)
def test_ct_time_against_the_operation_time(operation_at: datetime | None, ct: Fact, expected: float | None) -> None:
    inputs = build_features([timed_operation(operation_at), ct], ["Observation"], AS_OF).inputs
    assert inputs["vertebral-hu"] == expected


def test_a_trabecular_hu_over_300_is_cement_and_never_clamped_into_the_model() -> None:
    features = build_features([operation(), hu(1150.0, OP - timedelta(days=1))], ["Observation"], AS_OF)
    assert features.inputs["vertebral-hu"] is None  # unknown, not 150
    assert "cement" in features.details["vertebral-hu"]
    both = build_features(
        [operation(), hu(1150.0, OP - timedelta(days=1)), hu(90.0, OP - timedelta(days=3))], [], AS_OF
    )
    assert both.inputs["vertebral-hu"] == 90.0


def t_score(value: float, day: date) -> Fact:
    return Fact(
        FactKind.DXA_T_SCORE, value_num=value, effective_date=day, attrs={"site": "hip"}, source="Observation/t"
    )


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (OP - timedelta(days=30), -2.8),
        (OP - timedelta(days=730), -2.8),
        (OP - timedelta(days=731), None),  # older than 2 years
        (OP + timedelta(days=40), None),  # a post-operative DXA is not the baseline
    ],
)
def test_the_dxa_baseline_is_before_the_operation(day: date, expected: float | None) -> None:
    assert build_features([operation(), t_score(-2.8, day)], ["Observation"], AS_OF).inputs["dxa-t-score"] == expected


def cobb(angle: float, plane: str | None) -> Fact:
    return Fact(
        FactKind.COBB_ANGLE,
        value_num=angle,
        effective_date=OP - timedelta(days=5),
        attrs={"plane": plane} if plane else {},
        source="Observation/cobb",
    )


@pytest.mark.parametrize(
    ("fact", "expected"),
    [
        (cobb(25.0, "coronal"), True),
        (cobb(8.0, "coronal"), False),
        (cobb(25.0, "sagittal"), None),
        (cobb(25.0, None), None),
    ],
)
def test_only_a_coronal_cobb_angle_is_scoliosis(fact: Fact, expected: bool | None) -> None:
    assert build_features([operation(), fact], ["Observation"], AS_OF).inputs["cobb-over-10"] is expected


def steroid(
    day: date,
    event: str = "statement",
    status: str = "active",
    dose: float | None = 5.0,
    ingredient: str = "prednisolone",
    end: date | None = None,
    n: int = 0,
    **attrs: Any,
) -> Fact:
    base: dict[str, Any] = {"drug": "glucocorticoid", "event": event, "ingredient": ingredient, "interval_days": 1.0}
    if dose is not None:
        base["dose_mg"] = dose
    return Fact(
        FactKind.MEDICATION,
        effective_date=day,
        end_date=end,
        status=status,
        attrs={**base, **attrs},
        source=f"MedicationStatement/steroid-{n}",
    )


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ([], False),
        ([steroid(OP - timedelta(days=200))], True),  # 5 mg/day prednisolone for months, ongoing
        ([steroid(OP - timedelta(days=200), dose=2.5)], False),  # below 5 mg/day
        ([steroid(OP - timedelta(days=200), dose=4.0, ingredient="methylprednisolone")], True),  # 4 mg = 5 mg pred
        ([steroid(OP - timedelta(days=200), dose=0.5, ingredient="dexamethasone")], False),  # 0.5 mg < 0.75 mg
        ([steroid(OP - timedelta(days=60), end=OP - timedelta(days=1))], False),  # two months only
        # one perioperative dexamethasone dose
        ([steroid(OP, event="administration", status="completed", dose=8.0, ingredient="dexamethasone")], False),
        # an epidural injection, or an inhaled one, is local
        ([steroid(OP - timedelta(days=200), route="epidural")], False),
        ([steroid(OP - timedelta(days=200), route="respiratory tract route (inhalation)")], False),
        # four monthly dispenses of 30 days at 10 mg: 120 days
        (
            [
                steroid(
                    OP - timedelta(days=150 - 30 * k),
                    event="dispense",
                    status="completed",
                    dose=10.0,
                    n=k,
                    days_supply=30,
                )
                for k in range(4)
            ],
            True,
        ),
        ([steroid(OP - timedelta(days=200), dose=None)], None),  # a long course, dose not stated: unknown
    ],
)
def test_systemic_glucocorticoids(facts: list[Fact], expected: bool | None) -> None:
    inputs = build_features([operation(), *facts], ["MedicationStatement"], AS_OF).inputs
    assert inputs["glucocorticoids"] is expected


def test_a_coded_long_term_use_counts() -> None:
    coded = Fact(FactKind.GLUCOCORTICOID_LONG_TERM, status="active", source="Condition/z7952")
    assert build_features([operation(), coded], ["Condition"], AS_OF).inputs["glucocorticoids"] is True
    assert build_features([operation()], ["Condition"], AS_OF).inputs["glucocorticoids"] is None


def test_augmentation_for_malignancy_is_out_of_the_models_scope() -> None:
    myeloma = Fact(FactKind.MALIGNANCY, status="active", attrs={"type": "myeloma"}, source="Condition/mm")
    features = build_features([operation(), myeloma], ["Condition"], AS_OF)
    assert (features.index, features.excluded) == (None, "malignancy")


def test_a_fracture_without_onset_has_no_timing_but_recorded_before_the_episode_is_prior() -> None:
    undated = Fact(
        FactKind.VERTEBRAL_FRACTURE,
        status="active",
        attrs={"levels": ["L1"], "recorded_date": "2025-03-01"},
        source="Condition/now",
    )
    inputs = build_features([operation(), undated], ["Condition"], AS_OF).inputs
    assert inputs["early-surgery"] is None  # no onset: unknown, not "early"
    assert inputs["prior-vertebral-fracture"] is False  # recorded within the episode: not an earlier fracture
    old = Fact(
        FactKind.VERTEBRAL_FRACTURE,
        status="active",
        attrs={"levels": ["T8"], "recorded_date": "2020-01-01"},
        source="Condition/old",
    )
    assert build_features([operation(), old], ["Condition"], AS_OF).inputs["prior-vertebral-fracture"] is True


@pytest.mark.parametrize(("at", "expected"), [(SURGERY + timedelta(hours=2), True), (None, None)])
def test_the_post_operative_ct_of_the_cement_feeds_the_gradient(at: datetime | None, expected: bool | None) -> None:
    adjacent = hu(60.0, OP - timedelta(days=2), level="L2")
    cement = hu(1000.0, OP, at)
    inputs = build_features([timed_operation(SURGERY), adjacent, cement], ["Observation"], AS_OF).inputs
    assert inputs["hu-gradient"] is expected
    assert inputs["vertebral-hu"] is None  # the cement is never the pre-operative bone
