"""The risk model reproduces the article's numbers, is monotone where the evidence is, and treats unknown as unknown."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import pytest

from service.domain import risk_parameters as P
from service.domain.facts import Fact, FactKind
from service.domain.features import build_features
from service.domain.risk_model import InputValue, band_of, estimate


def odds(p: float) -> float:
    return p / (1 - p)


def odds_ratio(a: dict[str, InputValue], b: dict[str, InputValue]) -> float:
    return odds(estimate(a).probability) / odds(estimate(b).probability)


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
    "sarcopenia": False,
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


@pytest.mark.parametrize(
    ("factor", "ratio"),
    [("sarcopenia", 2.78), ("prior_vertebral_fracture", 2.55), ("thoracolumbar_junction", 3.50)],
)
def test_binary_factors_reproduce_the_article(factor: str, ratio: float) -> None:
    assert odds_ratio(with_(**{factor: True}), with_(**{factor: False})) == pytest.approx(ratio)


def test_each_hu_lower_is_about_5_8_percent_more() -> None:
    for hu in (40.0, 70.0, 120.0):
        assert odds_ratio(with_(vertebral_hu=hu - 1), with_(vertebral_hu=hu)) == pytest.approx(1.058)


def test_early_surgery_roughly_halves_the_risk() -> None:
    early, late = estimate(with_(early_surgery=True)), estimate(with_(early_surgery=False))
    assert odds(early.probability) / odds(late.probability) == pytest.approx(0.5)
    assert 0.45 <= early.probability / late.probability <= 0.6


def test_risk_moves_in_the_direction_of_the_evidence() -> None:
    def p(**changes: Any) -> float:
        return estimate(with_(**changes)).probability

    assert p(age=60) < p(age=70) < p(age=80) < p(age=90)
    assert p(vertebral_hu=120.0) < p(vertebral_hu=90.0) < p(vertebral_hu=60.0) < p(vertebral_hu=30.0)
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


def test_an_all_unknown_patient_gets_the_baseline_and_the_widest_range() -> None:
    result = estimate({})
    assert result.probability == pytest.approx(P.BASELINE_RISK)
    assert result.low < 0.02
    assert result.high > 0.9
    scored = [f.code for f in P.FACTORS if f.kind is not P.Kind.SHOWN]
    assert list(result.missing) == scored


def test_an_unknown_input_is_imputed_not_absent_and_widens_the_range() -> None:
    known_yes, known_no = estimate(with_(sarcopenia=True)), estimate(with_(sarcopenia=False))
    unknown = estimate(with_(sarcopenia=None))
    assert known_no.probability < unknown.probability < known_yes.probability
    # Imputed at the article's prevalence (72.5 %), on the log-odds scale.
    expected = math.log(odds(known_no.probability)) + 0.725 * math.log(2.78)
    assert math.log(odds(unknown.probability)) == pytest.approx(expected)
    assert unknown.low == pytest.approx(known_no.probability)
    assert unknown.high == pytest.approx(known_yes.probability)
    assert "sarcopenia" in unknown.missing
    full = estimate(EVERYTHING)
    assert full.low == pytest.approx(full.probability) == pytest.approx(full.high)
    assert not full.missing
    fewer = estimate(with_(sarcopenia=None, vertebral_hu=None, dxa_t_score=None))
    assert (fewer.high - fewer.low) > (unknown.high - unknown.low)


def test_contributions_add_up_to_the_estimate() -> None:
    result = estimate(with_(sarcopenia=True, age=85))
    total = math.log(odds(P.BASELINE_RISK)) + sum(c.log_odds for c in result.contributions)
    assert math.log(odds(result.probability)) == pytest.approx(total)
    sarcopenia = next(c for c in result.contributions if c.code == "sarcopenia")
    assert sarcopenia.odds_ratio == pytest.approx(2.78 ** (1 - 0.725))


def test_a_wrong_type_counts_as_unknown() -> None:
    assert "age" in estimate(with_(age="old")).missing
    assert "sarcopenia" in estimate(with_(sarcopenia=1)).missing


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
        if factor.kind is P.Kind.BINARY:
            assert 0 < factor.population < 1
        if factor.kind is P.Kind.CATEGORY:
            assert sum(c.prevalence for c in factor.categories) == pytest.approx(1.0)


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
