"""Validation statistics and logistic recalibration of a risk model on local outcomes (pure, standard library only).

From pairs of (prediction, observed outcome): discrimination (C-statistic with a DeLong confidence interval),
calibration (observed against expected by tenth of predicted risk, calibration-in-the-large, calibration slope and
intercept), overall accuracy (Brier score, log-loss), and the choice between keeping the model, updating its
intercept, or refitting intercept and slope (Steyerberg's closed testing procedure, Vergouwe et al. Stat Med
2017;36:4529). Plain Newton-Raphson on one or two parameters: no numerical library is needed for that, and the
domain stays free of dependencies.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "Calibration",
    "CalibrationGroup",
    "Evaluation",
    "LogisticFit",
    "UpdateChoice",
    "brier_score",
    "c_statistic",
    "calibration_groups",
    "choose_update",
    "delong_interval",
    "evaluate",
    "expit",
    "fit_logistic",
    "log_loss",
    "logit",
    "paired_log_loss_gain",
    "refit",
]

# Probabilities are kept inside (EPS, 1 - EPS) before taking logs: a model is never certain.
_EPS: Final = 1e-9
_Z95: Final = 1.959963984540054
_Z95_ONE_SIDED: Final = 1.6448536269514722
# The minimum events (and non-events) for an update, stated (Riley et al. Stat Med 2021;40:4230, criteria for
# external validation; Steyerberg, Clinical Prediction Models, 2nd ed., ch. 20):
# - intercept (calibration-in-the-large): the observed/expected ratio has SE(ln O/E) = sqrt((1 - p) / events);
#   50 events at the expected 10-18 % risk give SE about 0.13, a 95 % interval of O/E within about x/÷ 1.3.
#   Fewer, and even an intercept is mostly noise: the model is kept.
# - slope: its precision depends on the spread of the linear predictor; for a slope known to +/- 0.1 (SE 0.051)
#   at the model's spread the criterion needs about 145 events (about 1,100 patients with closed 2-year windows at
#   13 %). Fewer, and only the intercept may be updated.
MIN_EVENTS: Final = 50
MIN_EVENTS_FOR_SLOPE: Final = 145


def expit(x: float) -> float:
    """The logistic function, without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def logit(p: float) -> float:
    """log(p / (1 - p)), with p kept away from 0 and 1."""
    q = min(max(p, _EPS), 1.0 - _EPS)
    return math.log(q / (1.0 - q))


@dataclass(frozen=True, slots=True)
class Calibration:
    """A logistic recalibration of the literature model: new log-odds = intercept + slope x the model's log-odds."""

    version: str  # the model version it makes: the base version plus ".cal." and a digest of the numbers
    base_version: str  # the literature model's version it applies to (a new parameter table retires it)
    method: str  # "intercept" (slope kept) or "logistic" (intercept and slope refitted)
    intercept: float
    slope: float
    n: int = 0  # patients it was fitted on
    events: int = 0

    def apply(self, log_odds: float) -> float:
        """The recalibrated log-odds."""
        return self.intercept + self.slope * log_odds


@dataclass(frozen=True, slots=True)
class LogisticFit:
    """Maximum-likelihood fit of outcome ~ intercept + slope x predictor (+ offset)."""

    intercept: float
    slope: float
    se_intercept: float
    se_slope: float  # 0 when the slope was held fixed
    log_likelihood: float
    converged: bool


def _log_likelihood(y: Sequence[int], eta: Sequence[float]) -> float:
    total = 0.0
    for yi, e in zip(y, eta, strict=True):
        # log(expit(e)) = -log(1 + exp(-e)), computed stably on both sides.
        total -= math.log1p(math.exp(-abs(e))) + (max(-e, 0.0) if yi else max(e, 0.0))
    return total


def fit_logistic(
    x: Sequence[float],
    y: Sequence[int],
    offset: Sequence[float] | None = None,
    *,
    slope: float | None = None,
    max_iter: int = 50,
) -> LogisticFit:
    """Fit P(y = 1) = expit(intercept + slope * x + offset) by Newton-Raphson.

    Args:
        x: the predictor (here: a model's log-odds).
        y: outcomes, 0 or 1.
        offset: a known part of the log-odds (none: zeros).
        slope: hold the slope at this value and fit the intercept only (calibration-in-the-large uses slope=1 with
            the model's log-odds as predictor).
        max_iter: Newton steps before giving up (it converges in a handful when the data allow a fit).

    Returns:
        The estimates, their standard errors from the observed information, and the log-likelihood.
    """
    n = len(y)
    if n == 0 or len(x) != n:
        raise ValueError("fit_logistic needs as many predictions as outcomes, and at least one")
    off = list(offset) if offset is not None else [0.0] * n
    a, b = 0.0, 1.0 if slope is None else slope
    events = sum(y)
    if 0 < events < n and slope is not None:
        a = logit(events / n) - b * sum(x) / n  # a good start when only the intercept moves
    converged = False
    info_aa = info_ab = info_bb = 0.0
    for _ in range(max_iter):
        grad_a = grad_b = 0.0
        info_aa = info_ab = info_bb = 0.0
        for xi, yi, oi in zip(x, y, off, strict=True):
            p = expit(a + b * xi + oi)
            w = p * (1.0 - p)
            grad_a += yi - p
            grad_b += (yi - p) * xi
            info_aa += w
            info_ab += w * xi
            info_bb += w * xi * xi
        if slope is not None:
            step_a, step_b = (grad_a / info_aa if info_aa > 0 else 0.0), 0.0
        else:
            det = info_aa * info_bb - info_ab * info_ab
            if det <= 1e-12:
                break  # no spread in the predictor (or separation): the slope is not identifiable
            step_a = (info_bb * grad_a - info_ab * grad_b) / det
            step_b = (info_aa * grad_b - info_ab * grad_a) / det
        # Halve long steps: Newton can overshoot when the start is far from the optimum.
        scale = 1.0
        while max(abs(step_a), abs(step_b)) * scale > 5.0:
            scale /= 2.0
        a += step_a * scale
        b += step_b * scale
        if max(abs(step_a), abs(step_b)) * scale < 1e-10:
            converged = True
            break
    eta = [a + b * xi + oi for xi, oi in zip(x, off, strict=True)]
    if slope is not None:
        se_a, se_b = (1.0 / math.sqrt(info_aa) if info_aa > 0 else math.inf), 0.0
    else:
        det = info_aa * info_bb - info_ab * info_ab
        se_a = math.sqrt(info_bb / det) if det > 0 else math.inf
        se_b = math.sqrt(info_aa / det) if det > 0 else math.inf
    return LogisticFit(a, b, se_a, se_b, _log_likelihood(y, eta), converged)


def _midranks(values: Sequence[float]) -> list[float]:
    """1-based ranks with ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def c_statistic(y: Sequence[int], score: Sequence[float]) -> float:
    """The C-statistic (area under the ROC curve): the chance that a random patient with the event scores higher
    than a random one without, ties counting a half (Mann-Whitney U from midranks, O(n log n)).

    Raises:
        ValueError: no events or no non-events (the statistic is undefined).
    """
    events = sum(y)
    non_events = len(y) - events
    if events == 0 or non_events == 0:
        raise ValueError("the C-statistic needs patients with and without the event")
    ranks = _midranks(score)
    rank_sum = sum(r for r, yi in zip(ranks, y, strict=True) if yi)
    return (rank_sum - events * (events + 1) / 2.0) / (events * non_events)


def _placement(sorted_others: Sequence[float], value: float) -> float:
    """How many of the (sorted) other group lie below ``value``, ties a half."""
    below = bisect.bisect_left(sorted_others, value)
    ties = bisect.bisect_right(sorted_others, value) - below
    return below + 0.5 * ties


def delong_interval(y: Sequence[int], score: Sequence[float], level_z: float = _Z95) -> tuple[float, float, float]:
    """The C-statistic and its confidence interval by DeLong's variance (DeLong et al. Biometrics 1988;44:837).

    The interval is computed on the logit scale and transformed back, so it stays inside (0, 1).

    Returns:
        (C, lower, upper); 95 % by default.
    """
    positives = sorted(s for s, yi in zip(score, y, strict=True) if yi)
    negatives = sorted(s for s, yi in zip(score, y, strict=True) if not yi)
    m, n = len(positives), len(negatives)
    if m == 0 or n == 0:
        raise ValueError("the C-statistic needs patients with and without the event")
    v10 = [_placement(negatives, s) / n for s in positives]  # per event: share of non-events scored below it
    v01 = [1.0 - _placement(positives, s) / m for s in negatives]  # per non-event: share of events scored above
    auc = sum(v10) / m
    s10 = sum((v - auc) ** 2 for v in v10) / (m - 1) if m > 1 else 0.0
    s01 = sum((v - auc) ** 2 for v in v01) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(s10 / m + s01 / n)
    if auc <= 0.0 or auc >= 1.0 or se == 0.0:
        return auc, auc, auc
    centre = logit(auc)
    se_logit = se / (auc * (1.0 - auc))
    return auc, expit(centre - level_z * se_logit), expit(centre + level_z * se_logit)


def brier_score(y: Sequence[int], p: Sequence[float]) -> float:
    """Mean squared difference between predicted probability and outcome (lower is better)."""
    return sum((pi - yi) ** 2 for pi, yi in zip(p, y, strict=True)) / len(y)


def _point_log_loss(yi: int, pi: float) -> float:
    q = min(max(pi, _EPS), 1.0 - _EPS)
    return -math.log(q if yi else 1.0 - q)


def log_loss(y: Sequence[int], p: Sequence[float]) -> float:
    """Mean negative log-likelihood per patient, in nats (lower is better)."""
    return sum(_point_log_loss(yi, pi) for yi, pi in zip(y, p, strict=True)) / len(y)


def paired_log_loss_gain(y: Sequence[int], current: Sequence[float], candidate: Sequence[float]) -> tuple[float, float]:
    """How much lower the candidate's log-loss is than the current model's on the same patients, and a one-sided
    95 % lower confidence bound of that gain (paired differences, normal approximation).

    Returns:
        (mean gain per patient, lower bound); a lower bound above 0 means the candidate is better beyond chance.
    """
    diffs = [_point_log_loss(yi, c) - _point_log_loss(yi, k) for yi, c, k in zip(y, current, candidate, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return mean, -math.inf
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    return mean, mean - _Z95_ONE_SIDED * sd / math.sqrt(n)


@dataclass(frozen=True, slots=True)
class CalibrationGroup:
    """One tenth of the patients by predicted risk: how many, the mean predicted and the observed risk."""

    n: int
    events: int
    expected: float  # mean predicted probability
    observed: float  # share with the event


def calibration_groups(y: Sequence[int], p: Sequence[float], groups: int = 10) -> tuple[CalibrationGroup, ...]:
    """Patients sorted by predicted risk and cut into ``groups`` groups of (nearly) equal size."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    n = len(order)
    out: list[CalibrationGroup] = []
    for g in range(min(groups, n)):
        members = order[g * n // groups : (g + 1) * n // groups]
        if not members:
            continue
        events = sum(y[i] for i in members)
        out.append(
            CalibrationGroup(len(members), events, sum(p[i] for i in members) / len(members), events / len(members))
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A model's predictions against observed outcomes."""

    n: int
    events: int
    c_statistic: float
    c_low: float
    c_high: float
    brier: float
    log_loss: float
    observed: float  # share with the event
    expected: float  # mean predicted probability
    calibration_in_the_large: float  # intercept with the log-odds as offset: 0 when the mean is right
    calibration_slope: float  # 1 when predictions are neither too extreme (< 1) nor too modest (> 1)
    calibration_intercept: float  # the intercept fitted together with the slope
    slope_low: float
    slope_high: float
    groups: tuple[CalibrationGroup, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        """For JSON: every figure, and the groups as lists."""
        return {
            "n": self.n,
            "events": self.events,
            "c_statistic": self.c_statistic,
            "c_low": self.c_low,
            "c_high": self.c_high,
            "brier": self.brier,
            "log_loss": self.log_loss,
            "observed": self.observed,
            "expected": self.expected,
            "calibration_in_the_large": self.calibration_in_the_large,
            "calibration_slope": self.calibration_slope,
            "calibration_intercept": self.calibration_intercept,
            "slope_low": self.slope_low,
            "slope_high": self.slope_high,
            "groups": [
                {"n": g.n, "events": g.events, "expected": g.expected, "observed": g.observed} for g in self.groups
            ],
        }


def evaluate(y: Sequence[int], p: Sequence[float]) -> Evaluation:
    """Discrimination, calibration and accuracy of predicted probabilities ``p`` against outcomes ``y``.

    Raises:
        ValueError: no events or no non-events.
    """
    lp = [logit(pi) for pi in p]
    auc, low, high = delong_interval(y, p)
    large = fit_logistic([0.0] * len(y), y, offset=lp, slope=0.0)
    both = fit_logistic(lp, y)
    return Evaluation(
        n=len(y),
        events=sum(y),
        c_statistic=auc,
        c_low=low,
        c_high=high,
        brier=brier_score(y, p),
        log_loss=log_loss(y, p),
        observed=sum(y) / len(y),
        expected=sum(p) / len(p),
        calibration_in_the_large=large.intercept,
        calibration_slope=both.slope,
        calibration_intercept=both.intercept,
        slope_low=both.slope - _Z95 * both.se_slope,
        slope_high=both.slope + _Z95 * both.se_slope,
        groups=calibration_groups(y, p),
    )


def _chi2_sf(statistic: float, df: int) -> float:
    """Upper tail of the chi-squared distribution, for 1 or 2 degrees of freedom (closed forms)."""
    x = max(statistic, 0.0)
    if df == 1:
        return math.erfc(math.sqrt(x / 2.0))
    if df == 2:
        return math.exp(-x / 2.0)
    raise ValueError("only 1 or 2 degrees of freedom are needed here")


@dataclass(frozen=True, slots=True)
class UpdateChoice:
    """What closed testing chose, relative to the model whose log-odds were given."""

    method: str  # "none" | "intercept" | "logistic"
    intercept: float  # new log-odds = intercept + slope x given log-odds
    slope: float
    reason: str
    p_overall: float  # original vs intercept and slope refitted (2 df)
    p_slope: float  # intercept-only vs intercept and slope (1 df)
    p_intercept: float  # original vs intercept-only (1 df)


def choose_update(y: Sequence[int], lp: Sequence[float], alpha: float = 0.05) -> UpdateChoice:
    """Choose between keeping the model, updating its intercept, or refitting intercept and slope.

    Closed testing as published (Vergouwe et al. Stat Med 2017;36:4529), with recalibration as the most extensive
    update: first the original model against recalibration (intercept and slope; likelihood ratio, 2 df); not
    significant, the model is kept. Significant, recalibration-in-the-large is tested against recalibration (1 df):
    significant, both are refitted; not significant, the intercept alone is updated. A negative slope would reverse
    every ranking and is never chosen (the intercept is updated instead). With fewer than MIN_EVENTS events (or
    non-events) the model is kept; with fewer than MIN_EVENTS_FOR_SLOPE the slope cannot be estimated with useful
    precision, so the closed test runs over the original and recalibration-in-the-large only (1 df).

    Args:
        y: outcomes.
        lp: the current model's log-odds for the same patients.
        alpha: the significance level of each test.
    """
    events = sum(y)
    non_events = len(y) - events
    if min(events, non_events) < MIN_EVENTS:
        return UpdateChoice("none", 0.0, 1.0, f"{min(events, non_events)} events or non-events: too few", 1, 1, 1)
    original = _log_likelihood(y, lp)
    intercept_only = fit_logistic([0.0] * len(y), y, offset=lp, slope=0.0)
    full = fit_logistic(lp, y)
    p_overall = _chi2_sf(2.0 * (full.log_likelihood - original), 2)
    p_slope = _chi2_sf(2.0 * (full.log_likelihood - intercept_only.log_likelihood), 1)
    p_intercept = _chi2_sf(2.0 * (intercept_only.log_likelihood - original), 1)
    if min(events, non_events) < MIN_EVENTS_FOR_SLOPE:
        if p_intercept < alpha:
            reason = f"fewer than {MIN_EVENTS_FOR_SLOPE} events: the intercept only"
            return UpdateChoice("intercept", intercept_only.intercept, 1.0, reason, p_overall, p_slope, p_intercept)
        return UpdateChoice("none", 0.0, 1.0, "the intercept does not differ", p_overall, p_slope, p_intercept)
    if p_overall >= alpha:
        return UpdateChoice("none", 0.0, 1.0, "the model fits as it is", p_overall, p_slope, p_intercept)
    if p_slope < alpha and full.slope > 0:
        return UpdateChoice(
            "logistic", full.intercept, full.slope, "intercept and slope differ", p_overall, p_slope, p_intercept
        )
    reason = "only the intercept differs" if full.slope > 0 else "a negative slope is never used: the intercept only"
    return UpdateChoice("intercept", intercept_only.intercept, 1.0, reason, p_overall, p_slope, p_intercept)


def refit(method: str, y: Sequence[int], lp: Sequence[float]) -> tuple[float, float]:
    """The chosen update refitted on these patients: (intercept, slope) relative to ``lp``."""
    if method == "logistic":
        full = fit_logistic(lp, y)
        return full.intercept, full.slope
    if method == "intercept":
        return fit_logistic([0.0] * len(y), y, offset=lp, slope=0.0).intercept, 1.0
    return 0.0, 1.0
