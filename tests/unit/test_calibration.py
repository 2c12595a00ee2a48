"""Recalibration statistics against known values and brute force; the development dataset's outcome rules; the
risk model with a calibration applied."""

from __future__ import annotations

import itertools
import math
import random
from datetime import date, timedelta

import pytest

from service.domain.calibration import (
    MIN_EVENTS,
    MIN_EVENTS_FOR_SLOPE,
    Calibration,
    brier_score,
    c_statistic,
    calibration_groups,
    choose_update,
    delong_interval,
    evaluate,
    expit,
    fit_logistic,
    log_loss,
    logit,
    paired_log_loss_gain,
    refit,
)
from service.domain.facts import Fact, FactKind
from service.domain.outcomes import DevelopmentCase, development_case, split_held_out
from service.domain.risk_model import estimate, model_version


def simulate(n: int, intercept: float, slope: float, seed: int) -> tuple[list[int], list[float]]:
    """Outcomes drawn from expit(intercept + slope x lp), with lp the model's log-odds."""
    rng = random.Random(seed)
    lp = [rng.gauss(-1.5, 1.2) for _ in range(n)]
    y = [int(rng.random() < expit(intercept + slope * x)) for x in lp]
    return y, lp


def brute_force_auc(y: list[int], score: list[float]) -> float:
    pos = [s for s, t in zip(score, y, strict=True) if t]
    neg = [s for s, t in zip(score, y, strict=True) if not t]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_the_c_statistic_equals_the_pairwise_count_with_ties() -> None:
    rng = random.Random(3)
    y = [int(rng.random() < 0.3) for _ in range(400)]
    score = [round(rng.random() + 0.3 * t, 1) for t in y]  # rounded: many ties
    assert c_statistic(y, score) == pytest.approx(brute_force_auc(y, score), abs=1e-12)
    auc, low, high = delong_interval(y, score)
    assert auc == pytest.approx(brute_force_auc(y, score), abs=1e-12)
    assert low < auc < high
    assert 0.05 < high - low < 0.2


def test_delong_matches_a_hand_computed_example() -> None:
    # Events 0.9, 0.8, 0.4; non-events 0.7, 0.3, 0.2, 0.1: 11 of 12 pairs ordered (the 0.4/0.7 pair is not).
    y = [1, 1, 1, 0, 0, 0, 0]
    score = [0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1]
    auc, low, high = delong_interval(y, score)
    assert auc == pytest.approx(11 / 12)
    # Structural components: V10 = (1, 1, 3/4), V01 = (2/3, 1, 1, 1): variance S10/3 + S01/4.
    s10 = sum((v - 11 / 12) ** 2 for v in (1, 1, 0.75)) / 2
    s01 = sum((v - 11 / 12) ** 2 for v in (2 / 3, 1, 1, 1)) / 3
    se = math.sqrt(s10 / 3 + s01 / 4)
    se_logit = se / (auc * (1 - auc))
    assert low == pytest.approx(expit(logit(auc) - 1.959963984540054 * se_logit))
    assert high == pytest.approx(expit(logit(auc) + 1.959963984540054 * se_logit))


def test_the_c_statistic_needs_both_outcomes() -> None:
    with pytest.raises(ValueError, match="with and without"):
        c_statistic([1, 1], [0.2, 0.3])


def test_a_binary_predictor_gives_the_log_odds_ratio() -> None:
    # 2x2 table: x=0: 30 events of 100; x=1: 60 of 100. Intercept log(30/70), slope log((60/40)/(30/70)).
    x = [0.0] * 100 + [1.0] * 100
    y = [1] * 30 + [0] * 70 + [1] * 60 + [0] * 40
    fit = fit_logistic(x, y)
    assert fit.converged
    assert fit.intercept == pytest.approx(math.log(30 / 70), abs=1e-8)
    assert fit.slope == pytest.approx(math.log((60 / 40) / (30 / 70)), abs=1e-8)
    # Woolf's standard error of a log odds ratio.
    assert fit.se_slope == pytest.approx(math.sqrt(1 / 30 + 1 / 70 + 1 / 60 + 1 / 40), rel=1e-6)


def test_a_perfectly_calibrated_model_has_slope_one_and_nothing_to_update() -> None:
    y, lp = simulate(20_000, 0.0, 1.0, seed=1)
    result = evaluate(y, [expit(x) for x in lp])
    assert result.calibration_slope == pytest.approx(1.0, abs=0.05)
    assert result.slope_low < 1.0 < result.slope_high
    assert result.calibration_in_the_large == pytest.approx(0.0, abs=0.05)
    assert result.observed == pytest.approx(result.expected, abs=0.01)
    assert sum(g.n for g in result.groups) == 20_000
    assert len(result.groups) == 10
    assert choose_update(y, lp).method == "none"


def test_a_miscalibrated_model_is_recalibrated_and_the_fit_recovers_the_truth() -> None:
    y, lp = simulate(20_000, 0.5, 0.6, seed=2)
    before = evaluate(y, [expit(x) for x in lp])
    assert before.calibration_slope == pytest.approx(0.6, abs=0.05)
    choice = choose_update(y, lp)
    assert choice.method == "logistic"
    assert choice.slope == pytest.approx(0.6, abs=0.05)
    assert choice.intercept == pytest.approx(0.5, abs=0.08)
    after = evaluate(y, [expit(choice.intercept + choice.slope * x) for x in lp])
    assert after.calibration_slope == pytest.approx(1.0, abs=1e-6)  # on its own fitting data: exactly 1
    assert after.calibration_in_the_large == pytest.approx(0.0, abs=1e-6)
    assert after.log_loss < before.log_loss
    assert after.c_statistic == pytest.approx(before.c_statistic)  # a positive slope keeps every ranking


def test_an_intercept_shift_alone_updates_the_intercept_only() -> None:
    y, lp = simulate(20_000, 0.7, 1.0, seed=4)
    choice = choose_update(y, lp)
    assert choice.method == "intercept"
    assert choice.slope == 1.0
    assert choice.intercept == pytest.approx(0.7, abs=0.08)


def test_few_events_allow_no_slope() -> None:
    y, lp = simulate(600, -1.5, 0.5, seed=5)
    events = sum(y)
    assert MIN_EVENTS <= events < MIN_EVENTS_FOR_SLOPE, events
    assert choose_update(y, lp).method in ("none", "intercept")
    few = 300
    assert sum(y[:few]) < MIN_EVENTS
    assert choose_update(y[:few], lp[:few]).method == "none"  # under 50 events


def test_the_minimum_events_are_stated() -> None:
    assert (MIN_EVENTS, MIN_EVENTS_FOR_SLOPE) == (50, 145)


def test_the_closed_test_as_published() -> None:
    # Step 1 rejects the original; step 2 finds no slope beyond the intercept: the intercept alone is updated,
    # without a further test of the intercept against the original (Vergouwe 2017).
    y, lp = simulate(20_000, 0.4, 1.0, seed=9)
    choice = choose_update(y, lp)
    assert (choice.method, choice.reason) == ("intercept", "only the intercept differs")
    assert choice.p_overall < 0.05
    assert choice.p_slope >= 0.05


def test_refit_on_all_patients() -> None:
    y, lp = simulate(20_000, 0.5, 0.6, seed=8)
    a, b = refit("logistic", y, lp)
    assert (a, b) == pytest.approx((0.5, 0.6), abs=0.08)
    _, b_only = refit("intercept", y, lp)
    assert b_only == 1.0
    assert refit("none", y, lp) == (0.0, 1.0)


def test_accuracy_scores_and_the_paired_gain() -> None:
    assert brier_score([1, 0], [0.8, 0.4]) == pytest.approx((0.04 + 0.16) / 2)
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    y, lp = simulate(5000, 0.5, 0.6, seed=6)
    current = [expit(x) for x in lp]
    better = [expit(0.5 + 0.6 * x) for x in lp]
    gain, low = paired_log_loss_gain(y, current, better)
    assert gain > low > 0
    assert paired_log_loss_gain(y, current, current) == (0.0, 0.0)


def test_calibration_groups_are_tenths_by_predicted_risk() -> None:
    p = [i / 100 for i in range(100)]
    y = [int(i % 2 == 0) for i in range(100)]
    groups = calibration_groups(y, p)
    assert [g.n for g in groups] == [10] * 10
    assert groups[0].expected == pytest.approx(0.045)
    assert groups[-1].expected == pytest.approx(0.945)
    assert all(g.observed == 0.5 for g in groups)


# --- the development dataset ----------------------------------------------------------------------------
OP = date(2022, 3, 1)
CUTOFF = date(2025, 1, 1)


def record(*extra: Fact) -> list[Fact]:
    return [
        Fact(FactKind.BIRTH_DATE, effective_date=date(1948, 5, 1)),
        Fact(FactKind.SEX, value_text="female"),
        Fact(FactKind.VERTEBRAL_FRACTURE, effective_date=OP - timedelta(days=20), attrs={"levels": ["L1"]}),
        Fact(FactKind.VERTEBRAL_AUGMENTATION, effective_date=OP, status="completed", attrs={"levels": ["L1"]}),
        *extra,
    ]


def case_of(*extra: Fact, cutoff: date = CUTOFF) -> DevelopmentCase | str:
    return development_case("p1", record(*extra), {"Patient", "Condition", "Procedure"}, cutoff)


def test_a_later_vertebral_fracture_within_two_years_is_the_event() -> None:
    later = Fact(FactKind.VERTEBRAL_FRACTURE, effective_date=OP + timedelta(days=400), attrs={"levels": ["T12"]})
    case = case_of(later)
    assert isinstance(case, DevelopmentCase)
    assert (case.event, case.event_kind, case.event_day) == (True, "fracture", OP + timedelta(days=400))
    too_late = Fact(FactKind.VERTEBRAL_FRACTURE, effective_date=OP + timedelta(days=731))
    assert case_of(too_late).event is False  # type: ignore[union-attr]


def test_a_new_augmentation_counts_at_another_level_only() -> None:
    def operation(levels: list[str]) -> Fact:
        return Fact(
            FactKind.VERTEBRAL_AUGMENTATION,
            effective_date=OP + timedelta(days=200),
            status="completed",
            attrs={"levels": levels},
        )

    other = case_of(operation(["L3"]))
    same = case_of(operation(["L1"]))
    assert isinstance(other, DevelopmentCase)
    assert isinstance(same, DevelopmentCase)
    assert (other.event, other.event_kind) == (True, "augmentation")
    assert same.event is False
    # The prediction is the one at the first operation: the later one changes nothing in it.
    assert other.log_odds == same.log_odds == case_of().log_odds  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("attrs", "day", "event"),
    [
        ({"levels": ["T12"], "encounter": "initial"}, OP + timedelta(days=300), True),
        # the follow-up visit of a known fracture (M80.08XD, ...XG, ...XK, ...XS) is no new fracture
        ({"levels": ["T12"], "encounter": "subsequent"}, OP + timedelta(days=300), False),
        ({"levels": ["L1"], "encounter": "sequela"}, OP + timedelta(days=300), False),
        # without onset a diagnosis is dated by its visit, not the fracture: not counted
        ({"levels": ["T12"], "recorded_date": (OP + timedelta(days=300)).isoformat()}, None, False),
        # on the index day: the index fracture, not an incident one
        ({"levels": ["T12"]}, OP, False),
    ],
)
def test_incident_fractures_by_onset_only(attrs: dict[str, object], day: date | None, event: bool) -> None:
    later = Fact(FactKind.VERTEBRAL_FRACTURE, effective_date=day, attrs=attrs)
    case = case_of(later)
    assert isinstance(case, DevelopmentCase)
    assert case.event is event


def test_augmentation_for_malignancy_is_left_out() -> None:
    myeloma = Fact(FactKind.MALIGNANCY, status="active", attrs={"type": "myeloma"})
    assert case_of(myeloma) == "malignancy"


def test_open_windows_and_deaths_are_left_out() -> None:
    assert case_of(cutoff=OP + timedelta(days=700)) == "window open"
    died = Fact(FactKind.DECEASED, effective_date=OP + timedelta(days=300))
    assert case_of(died) == "died"
    fracture = Fact(FactKind.VERTEBRAL_FRACTURE, effective_date=OP + timedelta(days=100))
    assert case_of(fracture, died).event is True  # type: ignore[union-attr]
    assert development_case("p2", [Fact(FactKind.SEX, value_text="male")], set(), CUTOFF) == "no augmentation"


def test_later_measures_do_not_leak_into_the_prediction() -> None:
    low_dxa_later = Fact(FactKind.DXA_T_SCORE, value_num=-4.5, effective_date=OP + timedelta(days=60))
    assert case_of(low_dxa_later).log_odds == case_of().log_odds  # type: ignore[union-attr]
    low_dxa_before = Fact(FactKind.DXA_T_SCORE, value_num=-4.5, effective_date=OP - timedelta(days=60))
    assert case_of(low_dxa_before).log_odds > case_of().log_odds  # type: ignore[union-attr,operator]


def test_the_split_is_stratified_and_seeded() -> None:
    cases = [DevelopmentCase(f"p{i}", OP, 0.0, i % 5 == 0, None, None) for i in range(1000)]
    fit, held = split_held_out(cases, 0.3, seed=1)
    assert len(held) == 300
    assert sum(cases[i].event for i in held) == 60  # 30 % of the 200 events
    assert sorted(fit + held) == list(range(1000))
    assert split_held_out(cases, 0.3, seed=1) == (fit, held)
    assert split_held_out(cases, 0.3, seed=2)[1] != held


# --- the model with a calibration ----------------------------------------------------------------------
def test_a_calibration_maps_the_log_odds_and_scales_the_contributions() -> None:
    inputs = {"sarcopenia": True, "age": 85, "female-sex": True}
    plain = estimate(inputs)
    cal = Calibration(f"{model_version()}.cal.test", model_version(), "logistic", 0.5, 0.6, 100, 30)
    calibrated = estimate(inputs, cal)
    assert calibrated.version == cal.version
    assert calibrated.calibration == cal
    assert logit(calibrated.probability) == pytest.approx(0.5 + 0.6 * logit(plain.probability))
    assert calibrated.low <= calibrated.probability <= calibrated.high
    # The calibration maps the model's log-odds; each contribution is scaled by b, so the explanation adds up.
    base = logit(calibrated.probability) - sum(c.log_odds for c in calibrated.contributions)
    plain_base = plain.log_odds - sum(c.log_odds for c in plain.contributions)
    assert base == pytest.approx(0.5 + 0.6 * plain_base)
    # One fitted for another parameter table does not apply.
    stale = Calibration("0.9.0+old.cal.x", "0.9.0+old", "logistic", 0.5, 0.6)
    assert estimate(inputs, stale) == plain
