"""Model monitoring on synthetic cohorts: the drift warning fires on a shifted cohort and not on an unshifted one."""

from __future__ import annotations

import math

import pytest

from service.domain.model_monitoring import (
    PSI_MAJOR,
    Bins,
    MonitoredAssessment,
    Outcome,
    bins_for,
    calibration_summary,
    drift_level,
    month_summary,
    psi,
    reference_values,
    warnings,
)
from service.domain.reference_cohort import reference_cohort
from service.domain.risk_model import estimate

Member = dict[str, float | bool | str]


def _assess(members: tuple[Member, ...], hide_hu_every: int) -> list[MonitoredAssessment]:
    """Assess each member with the model; every ``hide_hu_every``-th member's CT HU is unknown."""
    out = []
    for i, member in enumerate(members):
        inputs = dict(member)
        if hide_hu_every and i % hide_hu_every == 0:
            del inputs["vertebral-hu"]
        e = estimate(inputs)
        known = {c.code: c.value for c in e.contributions if c.known and c.value is not None}
        out.append(MonitoredAssessment(known, frozenset(e.missing), e.probability, e.band))
    return out


def _shifted(member: Member) -> Member:
    """Older, with poorer bone, more often after a prior fracture: a different population."""
    out = dict(member)
    out["age"] = min(95.0, float(member["age"]) + 9.0)
    out["dxa-t-score"] = max(-5.0, float(member["dxa-t-score"]) - 0.8)
    out["prior-vertebral-fracture"] = True if int(float(member["age"])) % 2 == 0 else member["prior-vertebral-fracture"]
    return out


@pytest.fixture(scope="module")
def reference() -> dict[str, tuple[float | bool | str, ...]]:
    return reference_values()


def test_psi_is_zero_for_identical_and_grows_with_shift() -> None:
    values = [float(i) for i in range(1000)]
    bins = bins_for(values)
    assert len(bins.edges) == 9
    assert psi(values, values, bins) == pytest.approx(0.0)
    small = psi(values, [v + 30 for v in values], bins)
    large = psi(values, [v + 300 for v in values], bins)
    assert 0 < small < large
    assert drift_level(large) == "major"
    assert drift_level(0.05) == "none"
    assert drift_level(0.15) == "moderate"


def test_binning_of_yes_no_categories_and_ties() -> None:
    assert bins_for([True, False, True]).kind == "binary"
    assert bins_for(["none", "disc", "other"]) == Bins("categorical", categories=("disc", "none", "other"))
    tied = bins_for([70.0] * 50 + [80.0] * 50)
    assert tied.edges == (80.0,)  # coinciding deciles merge; no bin left empty on the reference side
    # A category never seen in the reference counts against a floored share: finite, and large.
    assert math.isfinite(psi(["a"] * 10, ["a"] * 5 + ["b"] * 5, bins_for(["a"])))
    with pytest.raises(ValueError):
        psi([], [1.0], tied)


def test_no_warning_on_an_unshifted_cohort(reference: dict[str, tuple[float | bool | str, ...]]) -> None:
    # Two months drawn afresh from the reference cohort's own generator (another seed), HU missing in 1 of 10.
    earlier = month_summary("2026-01", _assess(reference_cohort(400, 11), 10), reference)
    latest = month_summary("2026-02", _assess(reference_cohort(400, 12), 10), reference)
    assert latest.risk_psi is not None
    assert latest.risk_psi < PSI_MAJOR
    assert all(d.psi is None or d.psi < PSI_MAJOR for d in latest.inputs)
    assert warnings([earlier, latest], None) == []


def test_warning_fires_on_a_shifted_cohort(reference: dict[str, tuple[float | bool | str, ...]]) -> None:
    earlier = month_summary("2026-01", _assess(reference_cohort(400, 11), 10), reference)
    shifted = tuple(_shifted(m) for m in reference_cohort(400, 12))
    latest = month_summary("2026-02", _assess(shifted, 2), reference)  # and HU missing in 1 of 2
    fired = {(w.metric, w.subject) for w in warnings([earlier, latest], None)}
    assert ("psi", "age") in fired
    assert ("missing-rate", "vertebral-hu") in fired
    assert ("psi", "predicted-risk") in fired
    assert latest.mean_risk > earlier.mean_risk


def test_small_months_are_not_judged(reference: dict[str, tuple[float | bool | str, ...]]) -> None:
    shifted = tuple(_shifted(m) for m in reference_cohort(40, 12))
    assert warnings([month_summary("2026-02", _assess(shifted, 2), reference)], None) == []


def _outcomes(n: int, p: float, rate: float) -> list[Outcome]:
    events = round(n * rate)
    return [Outcome("2024-01", p if i % 3 else p * 1.5, i < events) for i in range(n)]


def test_calibration_warning_needs_enough_events_and_an_oe_outside_the_range() -> None:
    well = calibration_summary("2023-02..2024-01", _outcomes(1000, 0.12, 0.14))
    assert well.enough
    assert well.oe is not None
    assert 0.8 <= well.oe <= 1.25
    assert well.slope is not None
    assert well.c_statistic is not None
    assert warnings([], well) == []
    under = calibration_summary("2023-02..2024-01", _outcomes(1000, 0.08, 0.16))
    assert under.oe is not None
    assert under.oe > 1.25
    assert under.in_the_large is not None
    assert under.in_the_large > 0  # more events than predicted
    assert [w.metric for w in warnings([], under)] == ["oe"]
    few = calibration_summary("2024-01", _outcomes(100, 0.08, 0.16))  # 16 events: too few to judge
    assert not few.enough
    assert few.slope is None
    assert warnings([], few) == []


def test_a_stored_value_of_the_wrong_type_counts_as_missing(
    reference: dict[str, tuple[float | bool | str, ...]],
) -> None:
    odd = [
        MonitoredAssessment({"age": "seventy", "female-sex": 1.0, "cement-leakage": True}, frozenset(), 0.1, "low"),
        MonitoredAssessment({"age": float("nan")}, frozenset(), 0.1, "low"),
        MonitoredAssessment({"age": 70.0, "female-sex": True, "cement-leakage": "disc"}, frozenset(), 0.1, "low"),
    ]
    summary = month_summary("2026-01", odd, reference)
    by_code = {d.code: d for d in summary.inputs}
    assert by_code["age"].known == 1
    assert by_code["female-sex"].known == 1
    assert by_code["cement-leakage"].known == 1
    assert by_code["age"].missing_rate == pytest.approx(2 / 3)
