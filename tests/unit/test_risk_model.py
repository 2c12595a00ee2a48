"""The risk model reproduces the article's numbers, shrinks and bounds the rest, is monotone where the evidence is,
and averages over unknown inputs."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import pytest

from service.domain import risk_parameters as P
from service.domain.facts import Fact, FactKind
from service.domain.features import build_features
from service.domain.reference_cohort import DISTRIBUTIONS, reference_cohort
from service.domain.risk_model import InputValue, band_of, estimate, model_version, reference_log_odds


def odds(p: float) -> float:
    return p / (1 - p)


def odds_ratio(a: dict[str, InputValue], b: dict[str, InputValue]) -> float:
    # On the model's log-odds: the floor and ceiling would hide an effect at their edge.
    return math.exp(estimate(a).log_odds - estimate(b).log_odds)


# A patient with most inputs known, so "holding everything else equal" means something.
EVERYTHING: dict[str, InputValue] = {
    "age": 74,
    "female-sex": True,
    "dxa-t-score": -2.9,
    "vertebral-hu": 70.0,
    "hu-gradient": False,
    "cobb-over-10": False,
    "kyphosis-correction": 6.0,
    "compression-38": False,
    "cement-volume-high": False,
    "cement-leakage": "none",
    "cement-both-endplates": True,
    "thoracolumbar-junction": False,
    "multiple-fractures": False,
    "kyphoplasty": True,
    "early-surgery": False,
    "sarcopenia": True,  # as in 72.5 % of OVCF patients: a patient of typical risk, clear of the floor
    "prior-vertebral-fracture": False,
    "prior-nonvertebral-fracture": False,
    "type2-diabetes": False,
    "sglt2-inhibitor": False,
    "chronic-kidney-disease": "none",
    "glucocorticoids": False,
    "osteoporosis-treatment": "none",
}


def with_(**changes: Any) -> dict[str, InputValue]:
    return {**EVERYTHING, **{k.replace("_", "-"): v for k, v in changes.items()}}


def test_the_articles_binary_effects_are_reproduced_exactly() -> None:
    assert odds_ratio(with_(sarcopenia=True), with_(sarcopenia=False)) == pytest.approx(2.78)
    prior = odds_ratio(with_(prior_vertebral_fracture=True), with_(prior_vertebral_fracture=False))
    assert prior == pytest.approx(2.55)


def test_literature_effects_are_shrunk_by_the_documented_slope() -> None:
    junction = P.FACTOR_BY_CODE["thoracolumbar-junction"]
    expected = 3.50**P.SHRINKAGE_WEAK  # conflicting evidence (Zheng 2025): shrunk like a single study
    assert junction.model_odds_ratio == pytest.approx(expected)
    got = odds_ratio(with_(thoracolumbar_junction=True), with_(thoracolumbar_junction=False))
    assert got == pytest.approx(expected)
    steroids = odds_ratio(with_(glucocorticoids=True), with_(glucocorticoids=False))
    assert steroids == pytest.approx(3.94**P.SHRINKAGE)  # Liu 2025 pooled adjusted OR, shrunk


def test_each_hu_lower_is_about_5_8_percent_more_near_the_typical_value() -> None:
    at_typical = odds_ratio(with_(vertebral_hu=74.0, dxa_t_score=-2.8), with_(vertebral_hu=75.0, dxa_t_score=-2.8))
    assert at_typical == pytest.approx(1.058, rel=0.001)
    for hu in (65.0, 70.0, 80.0, 86.0):  # the article's 5.8 % from about 63 to 87 HU
        step = odds_ratio(with_(vertebral_hu=hu - 1, dxa_t_score=-2.8), with_(vertebral_hu=hu, dxa_t_score=-2.8))
        assert 0.85 * 0.058 <= step - 1 <= 1.15 * 0.058, hu


def test_the_bone_quality_effect_is_bounded() -> None:
    worst = estimate(with_(vertebral_hu=20.0, dxa_t_score=-5.0))
    best = estimate(with_(vertebral_hu=150.0, dxa_t_score=1.0))
    # The old model: x1,500 between 20 and 150 HU. Now at most x4 between the worst and the best bone.
    ratio = odds(worst.probability) / odds(best.probability)
    assert 2.0 < ratio <= math.exp(2 * P.BONE_BOUND) + 1e-9
    # Both measures known: the T-score counts at half weight beside the HU.
    t_alone = odds_ratio({"dxa-t-score": -3.8}, {"dxa-t-score": -2.8})
    t_with_hu = odds_ratio(with_(dxa_t_score=-3.8, vertebral_hu=75.0), with_(dxa_t_score=-2.8, vertebral_hu=75.0))
    assert 1.0 < t_with_hu < t_alone


def test_cement_mechanics_are_one_bounded_group() -> None:
    worst = with_(cement_leakage="disc", cement_volume_high=True, hu_gradient=True, cement_both_endplates=False)
    best = with_(cement_leakage="none", cement_volume_high=False, hu_gradient=False, cement_both_endplates=True)
    low, high = P.CEMENT_BOUNDS
    assert odds_ratio(worst, best) <= math.exp(high - low) + 1e-9
    assert odds_ratio(worst, best) < (
        math.exp(P.FACTOR_BY_CODE["cement-leakage"].category_beta("disc") or 0.0)
        * P.FACTOR_BY_CODE["cement-volume-high"].model_odds_ratio
        * P.FACTOR_BY_CODE["hu-gradient"].model_odds_ratio
        / P.FACTOR_BY_CODE["cement-both-endplates"].model_odds_ratio
    )


def test_leakage_is_counted_once_and_endplates_only_for_their_outcome() -> None:
    leakage = P.FACTOR_BY_CODE["cement-leakage"]
    other = next(c for c in leakage.categories if c.value == "other")
    # Non-disc leakage is what remains of Dai 2022's any-leakage OR once disc leakage is taken out of it.
    disc = next(c for c in leakage.categories if c.value == "disc")
    assert 1.0 < other.odds_ratio < 2.05 < disc.odds_ratio
    endplates = P.FACTOR_BY_CODE["cement-both-endplates"]
    assert 0.7 < endplates.odds_ratio < 1.0  # not the crude 0.28 for re-collapse of the treated level


def test_no_gradient_effect_when_the_treated_vertebra_is_already_low() -> None:
    low_hu = odds_ratio(with_(hu_gradient=True, vertebral_hu=50.0), with_(hu_gradient=False, vertebral_hu=50.0))
    assert low_hu == pytest.approx(1.0)
    high_hu = odds_ratio(with_(hu_gradient=True, vertebral_hu=90.0), with_(hu_gradient=False, vertebral_hu=90.0))
    assert high_hu > 1.2


def test_early_surgery_roughly_halves_the_risk() -> None:
    early, late = estimate(with_(early_surgery=True)), estimate(with_(early_surgery=False))
    assert odds(early.probability) / odds(late.probability) == pytest.approx(0.5)
    assert 0.45 <= early.probability / late.probability <= 0.6


def test_risk_moves_in_the_direction_of_the_evidence() -> None:
    def p(**changes: Any) -> float:
        return estimate(with_(**changes)).probability

    assert p(age=60) < p(age=70) < p(age=80) < p(age=90)
    # Linear within the bone-quality bound (about 63-87 HU here), flat beyond it.
    assert p(vertebral_hu=120.0) == p(vertebral_hu=90.0) < p(vertebral_hu=80.0) < p(vertebral_hu=70.0)
    assert p(vertebral_hu=70.0) < p(vertebral_hu=65.0) <= p(vertebral_hu=30.0)
    assert p(dxa_t_score=-1.0) < p(dxa_t_score=-2.5) < p(dxa_t_score=-3.5)
    assert p(kyphosis_correction=0.0) < p(kyphosis_correction=10.0) < p(kyphosis_correction=20.0)
    assert (
        p(chronic_kidney_disease="none") < p(chronic_kidney_disease="stage-3") < p(chronic_kidney_disease="stage-4-5")
    )
    assert p(cement_leakage="none") < p(cement_leakage="other") < p(cement_leakage="disc")
    assert (
        p(osteoporosis_treatment="treated")
        < p(osteoporosis_treatment="none")
        < p(osteoporosis_treatment="denosumab-stopped")
    )
    for factor in (
        "female_sex",
        "hu_gradient",
        "cobb_over_10",
        "compression_38",
        "cement_volume_high",
        "multiple_fractures",
        "prior_nonvertebral_fracture",
        "type2_diabetes",
        "glucocorticoids",
    ):
        assert p(**{factor: True}) > p(**{factor: False}), factor
    assert p(cement_both_endplates=True) < p(cement_both_endplates=False)
    assert p(kyphoplasty=True) == pytest.approx(p(kyphoplasty=False))  # [27]: no consensus, no effect


def test_hu_is_linear_only_within_its_range() -> None:
    assert estimate(with_(vertebral_hu=5.0)).probability == pytest.approx(
        estimate(with_(vertebral_hu=20.0)).probability
    )


def test_an_all_unknown_patient_gets_the_cohort_mean_and_a_usable_range() -> None:
    result = estimate({})
    assert result.probability == pytest.approx(P.BASELINE_RISK, abs=0.01)
    assert P.FLOOR <= result.low < result.probability < result.high <= P.CEILING
    assert result.high < 0.4  # not "between under 1 % and over 99 %"
    scored = [f.code for f in P.FACTORS if f.kind is not P.Kind.SHOWN]
    assert list(result.missing) == scored
    assert 1 <= len(result.narrowing) <= 2


def test_an_unknown_input_is_averaged_over_the_cohort_not_imputed() -> None:
    known_yes, known_no = estimate(with_(sarcopenia=True)), estimate(with_(sarcopenia=False))
    unknown = estimate(with_(sarcopenia=None))
    assert known_no.probability < unknown.probability < known_yes.probability
    share = sum(bool(m["sarcopenia"]) for m in reference_cohort()) / len(reference_cohort())
    assert share == pytest.approx(0.725, abs=0.04)  # [19] 72.5 % of OVCF patients
    # The mean risk over the cohort's members, not the risk at the mean log-odds.
    expected = share * known_yes.probability + (1 - share) * known_no.probability
    assert unknown.probability == pytest.approx(expected)
    assert unknown.probability != pytest.approx(1 / (1 + math.exp(-unknown_at_mean_log_odds())))
    assert unknown.low == pytest.approx(known_no.probability)
    assert unknown.high == pytest.approx(known_yes.probability)
    assert "sarcopenia" in unknown.missing
    assert unknown.narrowing == ("sarcopenia",)
    full = estimate(EVERYTHING)
    assert full.low == pytest.approx(full.probability) == pytest.approx(full.high)
    assert not full.missing
    assert not full.narrowing
    fewer = estimate(with_(sarcopenia=None, vertebral_hu=None, dxa_t_score=None, cement_leakage=None))
    assert (fewer.high - fewer.low) > (unknown.high - unknown.low)


def unknown_at_mean_log_odds() -> float:
    # What the first model did: the mean log-odds (prevalence x beta) in place of the unknown input.
    no = estimate(with_(sarcopenia=False))
    return no.log_odds + 0.725 * math.log(2.78)


def test_contributions_add_up_to_the_estimate() -> None:
    result = estimate(with_(sarcopenia=True, age=85))
    total = reference_log_odds() + sum(c.log_odds for c in result.contributions)
    assert result.log_odds == pytest.approx(total)
    assert math.log(odds(result.probability)) == pytest.approx(total)
    share = sum(bool(m["sarcopenia"]) for m in reference_cohort()) / len(reference_cohort())
    sarcopenia = next(c for c in result.contributions if c.code == "sarcopenia")
    assert sarcopenia.odds_ratio == pytest.approx(2.78 ** (1 - share))
    # A bounded group shares its effect among its known factors: still adds up.
    bounded = estimate(with_(vertebral_hu=20.0, dxa_t_score=-4.5, cement_leakage="disc", cement_volume_high=True))
    assert bounded.log_odds == pytest.approx(reference_log_odds() + sum(c.log_odds for c in bounded.contributions))


def test_a_wrong_type_counts_as_unknown() -> None:
    assert "age" in estimate(with_(age="old")).missing
    assert "sarcopenia" in estimate(with_(sarcopenia=1)).missing
    assert "vertebral-hu" in estimate(with_(vertebral_hu=math.nan)).missing


@pytest.mark.parametrize(
    ("p", "band"),
    [(0.05, "low"), (0.0999, "low"), (0.10, "moderate"), (0.1999, "moderate"), (0.20, "high"), (0.6, "high")],
)
def test_bands(p: float, band: str) -> None:
    assert band_of(p) == band


def test_every_factor_has_a_source_and_a_sensible_value() -> None:
    codes = [f.code for f in P.FACTORS]
    assert len(codes) == len(set(codes))
    for factor in P.FACTORS:
        assert factor.source
        assert factor.label
        assert factor.odds_ratio > 0
        assert 0.0 <= factor.slope <= 1.0
        if factor.kind is P.Kind.CATEGORY:
            assert factor.categories[0].odds_ratio == 1.0  # the reference
        if factor.evidence is P.Evidence.ARTICLE:
            assert factor.slope == 1.0  # the article's numbers, as stated
    assert {d.code for d in DISTRIBUTIONS} == {f.code for f in P.SCORED}


def test_the_model_version_is_new() -> None:
    assert model_version().startswith("2.")


# --- the thresholds live in the features: test them through the facts -------------------------------------
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
OP = date(2025, 3, 10)


def fact(kind: FactKind, value: float | None = None, day: date = OP, text: str | None = None, **attrs: Any) -> Fact:
    return Fact(kind, value_num=value, value_text=text, effective_date=day, attrs=attrs, source=f"Observation/{kind}")


def operation(levels: list[str], method: str = "PKP") -> Fact:
    return Fact(
        FactKind.VERTEBRAL_AUGMENTATION,
        effective_date=OP,
        status="completed",
        attrs={"method": method, "levels": levels},
        source="Procedure/op",
    )


def inputs(*facts: Fact, coverage: tuple[str, ...] = ("Condition",)) -> dict[str, InputValue]:
    return build_features(facts, coverage, AS_OF).inputs


@pytest.mark.parametrize(("ratio", "expected"), [(13.82, False), (13.83, True), (9.0, False), (22.0, True)])
def test_the_13_82_percent_cement_threshold(ratio: float, expected: bool) -> None:
    got = inputs(operation(["L1"]), fact(FactKind.CEMENT_VOLUME_RATIO, ratio, levels=["L1"]))
    assert got["cement-volume-high"] is expected


@pytest.mark.parametrize(
    ("augmented", "adjacent", "expected"),
    [(1000.0, 60.0, True), (1000.0, 70.0, False), (850.0, 60.0, False), (1000.0, 66.9, False)],
)
def test_the_hu_ratio_rule(augmented: float, adjacent: float, expected: bool) -> None:
    got = inputs(
        operation(["L1"]),
        fact(FactKind.VERTEBRAL_HU, augmented, date(2025, 4, 1), levels=["L1"]),
        fact(FactKind.VERTEBRAL_HU, adjacent, date(2025, 3, 8), levels=["L2"]),
    )
    assert got["hu-gradient"] is expected


@pytest.mark.parametrize(("angle", "expected"), [(10.0, False), (10.5, True), (4.0, False)])
def test_the_10_degree_cobb_rule(angle: float, expected: bool) -> None:
    assert inputs(operation(["L1"]), fact(FactKind.COBB_ANGLE, angle, plane="coronal"))["cobb-over-10"] is expected


@pytest.mark.parametrize(
    ("levels", "expected"),
    [(["T11"], True), (["T12", "L1"], True), (["L2"], True), (["T10"], False), (["L3", "L4"], False), ([], None)],
)
def test_the_t11_l2_zone(levels: list[str], expected: bool | None) -> None:
    assert inputs(operation(levels))["thoracolumbar-junction"] is expected


@pytest.mark.parametrize(("days", "expected"), [(10, True), (28, True), (29, False), (120, False)])
def test_early_surgery_from_the_fracture_date(days: int, expected: bool) -> None:
    onset = date.fromordinal(OP.toordinal() - days)
    fracture = Fact(
        FactKind.VERTEBRAL_FRACTURE,
        effective_date=onset,
        status="active",
        attrs={"levels": ["L1"]},
        source="Condition/f",
    )
    assert inputs(operation(["L1"]), fracture)["early-surgery"] is expected
