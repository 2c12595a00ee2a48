"""The re-fracture risk model: a centred logistic model over the parameter table (pure, no I/O).

log-odds = logit(baseline) + sum over factors of beta * (input - population value). An unknown input is imputed
to its population value (contribution 0) and listed as missing; the range then spans every unknown input from its
most protective to its most harmful plausible value, so each missing input widens the estimate.

A local recalibration (calibration.Calibration, fitted by `refracture recalibrate`) maps the log-odds to
a + b x log-odds; each contribution is then scaled by b, so the contributions still add up to the estimate.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from service.domain import risk_parameters as P
from service.domain.calibration import Calibration
from service.domain.risk_parameters import FACTORS, Factor, Kind

__all__ = ["Contribution", "InputValue", "RiskEstimate", "band_of", "estimate", "model_id", "model_version"]

InputValue = float | bool | str | None

_INTERCEPT: Final = math.log(P.BASELINE_RISK / (1 - P.BASELINE_RISK))


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one factor did: its input, and the log-odds it moved the patient from the population average."""

    code: str
    label: str
    value: InputValue
    log_odds: float
    known: bool

    @property
    def odds_ratio(self) -> float:
        """The factor's effect on the odds, against a patient at the population value."""
        return math.exp(self.log_odds)


@dataclass(frozen=True, slots=True)
class RiskEstimate:
    """The model's answer for one patient."""

    probability: float
    low: float  # every unknown input at its most protective plausible value
    high: float  # every unknown input at its most harmful plausible value
    band: str  # low | moderate | high
    contributions: tuple[Contribution, ...]
    missing: tuple[str, ...]  # factor codes whose input the record does not hold
    model: str
    version: str
    calibration: Calibration | None = None  # the local recalibration applied, if any


def _model_version() -> str:
    table = repr((P.BASELINE_RISK, P.LOW_BELOW, P.HIGH_FROM, FACTORS)).encode()
    return f"{P.MODEL_VERSION}+{hashlib.sha256(table).hexdigest()[:8]}"


_MODEL_VERSION: Final = _model_version()
_MODEL_ID: Final = f"{P.MODEL_NAME}/{_MODEL_VERSION}"


def model_version() -> str:
    """The version and a digest of the parameter table: any change to a number changes it."""
    return _MODEL_VERSION


def model_id() -> str:
    """Name and version, e.g. refracture-ovcf-2y/1.0.0+1a2b3c4d."""
    return _MODEL_ID


def band_of(probability: float) -> str:
    """The band of a 2-year probability (thresholds in risk_parameters)."""
    if probability < P.LOW_BELOW:
        return "low"
    return "high" if probability >= P.HIGH_FROM else "moderate"


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _clamp(factor: Factor, value: float) -> float:
    low = factor.clamp_low if factor.clamp_low is not None else value
    high = factor.clamp_high if factor.clamp_high is not None else value
    return min(max(value, low), high)


_CENTRES: Final = {
    f.code: sum(c.prevalence * math.log(c.odds_ratio) for c in f.categories) for f in FACTORS if f.categories
}


def _category_centre(factor: Factor) -> float:
    # Categories are centred on their prevalence-weighted mean log-odds, like binary factors on prevalence.
    return _CENTRES[factor.code]


def _known_log_odds(factor: Factor, value: float | bool | str) -> float | None:
    """The contribution of a known input, or None when the input is not a valid value for the factor."""
    if factor.kind is Kind.BINARY:
        if not isinstance(value, bool):
            return None
        return factor.beta * ((1.0 if value else 0.0) - factor.population)
    if factor.kind is Kind.PER_UNIT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return factor.beta * (_clamp(factor, float(value)) - factor.population)
    if factor.kind is Kind.CATEGORY:
        category = next((c for c in factor.categories if c.value == value), None)
        return None if category is None else math.log(category.odds_ratio) - _category_centre(factor)
    return 0.0


def _unknown_span(factor: Factor) -> tuple[float, float]:
    """The lowest and highest contribution an unknown input could plausibly have."""
    if factor.kind is Kind.BINARY:
        ends = (factor.beta * -factor.population, factor.beta * (1.0 - factor.population))
    elif factor.kind is Kind.PER_UNIT:
        low = factor.plausible_low if factor.plausible_low is not None else factor.population
        high = factor.plausible_high if factor.plausible_high is not None else factor.population
        ends = (factor.beta * (low - factor.population), factor.beta * (high - factor.population))
    elif factor.kind is Kind.CATEGORY:
        centre = _category_centre(factor)
        ends = tuple(math.log(c.odds_ratio) - centre for c in factor.categories)  # type: ignore[assignment]
    else:
        ends = (0.0, 0.0)
    return min(ends), max(ends)


_SPANS: Final = {factor.code: _unknown_span(factor) for factor in FACTORS}


def estimate(inputs: Mapping[str, InputValue], calibration: Calibration | None = None) -> RiskEstimate:
    """The probability of a new or recurrent vertebral fracture within 2 years after the index augmentation.

    Args:
        inputs: factor code → value (bool for binary factors, a number for per-unit ones, a category name for
            categorical ones); a missing key or None means unknown.
        calibration: the hospital's recalibration of the literature model; None applies the model as published.
            One fitted for another version of the parameter table is ignored.

    Returns:
        The estimate, its range over the unknown inputs, the band, each factor's contribution and the missing
        inputs. An input of the wrong type counts as unknown.
    """
    total = _INTERCEPT
    spread_low = 0.0
    spread_high = 0.0
    contributions: list[Contribution] = []
    missing: list[str] = []
    for factor in FACTORS:
        value = inputs.get(factor.code)
        log_odds = None if value is None else _known_log_odds(factor, value)
        if log_odds is None:
            if factor.kind is not Kind.SHOWN:
                missing.append(factor.code)
                low, high = _SPANS[factor.code]
                spread_low += low
                spread_high += high
            contributions.append(Contribution(factor.code, factor.label, None, 0.0, False))
            continue
        total += log_odds
        contributions.append(Contribution(factor.code, factor.label, value, log_odds, True))
    if calibration is not None and calibration.base_version == _MODEL_VERSION:
        # a + b x (total + spread) keeps the order of low, estimate and high because b > 0 (choose_update).
        slope = calibration.slope
        return RiskEstimate(
            probability=(probability := _sigmoid(calibration.apply(total))),
            low=_sigmoid(calibration.apply(total + spread_low)),
            high=_sigmoid(calibration.apply(total + spread_high)),
            band=band_of(probability),
            contributions=tuple(
                Contribution(c.code, c.label, c.value, c.log_odds * slope, c.known) for c in contributions
            ),
            missing=tuple(missing),
            model=P.MODEL_NAME,
            version=calibration.version,
            calibration=calibration,
        )
    probability = _sigmoid(total)
    return RiskEstimate(
        probability=probability,
        low=_sigmoid(total + spread_low),
        high=_sigmoid(total + spread_high),
        band=band_of(probability),
        contributions=tuple(contributions),
        missing=tuple(missing),
        model=P.MODEL_NAME,
        version=_MODEL_VERSION,
    )
