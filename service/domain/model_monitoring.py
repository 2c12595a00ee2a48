"""Monitoring the risk model in production (pure): drift of its inputs and of its predictions against the model
card's reference cohort, and its calibration as outcomes accrue, with documented warning thresholds.

Drift. For each month (of the index operation) the newest assessment of each patient is summarised: for every
input the share of patients whose record does not hold it (missing rate), and the population stability index (PSI)
of its known values against the reference cohort (domain/reference_cohort.py); the PSI of the predicted risk
against the reference cohort's predicted risks; the share in each band.

    PSI = sum over bins of (actual share - expected share) x ln(actual share / expected share)

Binning (fixed by the reference cohort, so every month is cut the same way):
- numeric inputs and predicted risk: the reference cohort's deciles (at most 10 bins; edges that coincide, as for a
  rounded age, are merged), open at both ends so that no value falls outside;
- yes/no inputs: two bins; categorical inputs: one bin per category seen in the reference cohort or in the month;
- a bin empty on either side counts as a share of PSI_FLOOR, so the index stays finite.
Missing values are not a bin: the reference cohort knows every input, so a missing bin would make every real month
"drift". Missing rates are compared with the earlier months' pooled rate instead (MISSING_RISE).

Thresholds (the usual rule of thumb for PSI, Siddiqi, Credit Risk Scorecards, Wiley 2006, ch. 8; Yurdakul,
"Statistical properties of the population stability index", 2018): below 0.10 no significant shift; 0.10-0.25 a
moderate shift (reported, no warning); above 0.25 a major shift (warning). A month is judged only with at least
MIN_MONTH_PATIENTS patients: with fewer, sampling noise alone gives a PSI near (bins - 1) / n.

Calibration. As 2-year windows close (domain/outcomes.py: the same outcome definition and censoring rule as
recalibration), observed/expected (O/E), calibration slope and C-statistic by month of index, and pooled over the
last CALIBRATION_WINDOW_MONTHS months with closed windows. The warning fires when the pooled O/E lies outside
OE_LOW-OE_HIGH with at least calibration.MIN_EVENTS events (Riley et al. Stat Med 2021;40:4230: 50 events give
SE(ln O/E) about 0.13, so 0.8-1.25 is about +/- 1.7 SE: a real miscalibration, not noise; Van Calster et al. J Clin
Epidemiol 2016;74:167 for "moderate" calibration as the target).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from service.domain.calibration import MIN_EVENTS, c_statistic, fit_logistic, logit
from service.domain.reference_cohort import reference_cohort
from service.domain.risk_model import cohort_probabilities

__all__ = [
    "CALIBRATION_WINDOW_MONTHS",
    "MIN_MONTH_PATIENTS",
    "MISSING_RISE",
    "OE_HIGH",
    "OE_LOW",
    "PSI_FLOOR",
    "PSI_MAJOR",
    "PSI_MODERATE",
    "Bins",
    "CalibrationSummary",
    "InputDrift",
    "MonitoredAssessment",
    "MonthSummary",
    "Outcome",
    "Warning",
    "bins_for",
    "calibration_summary",
    "drift_level",
    "month_summary",
    "psi",
    "reference_bins",
    "reference_values",
    "warnings",
]

PSI_MODERATE: Final = 0.10
PSI_MAJOR: Final = 0.25
PSI_FLOOR: Final = 1e-4  # the share an empty bin counts as (keeps ln finite; a common choice)
MIN_MONTH_PATIENTS: Final = 100
# A rise of 20 percentage points in an input's missing rate over the earlier months' pooled rate: a feed or a
# coding change (e.g. CT reports no longer parsed) rather than case mix. An assumption, stated.
MISSING_RISE: Final = 0.20
OE_LOW: Final = 0.8
OE_HIGH: Final = 1.25
CALIBRATION_WINDOW_MONTHS: Final = 12
DECILES: Final = 10

Value = float | bool | str


@dataclass(frozen=True, slots=True)
class Bins:
    """How one variable is cut: numeric edges (inner cut points) or category names."""

    kind: str  # "numeric" | "binary" | "categorical"
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    def accepts(self, value: object) -> bool:
        """Whether a stored value has this variable's type (anything else counts as missing, never as a crash)."""
        if self.kind == "numeric":
            return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if self.kind == "binary":
            return isinstance(value, bool)
        return isinstance(value, str)

    def label(self, value: Value) -> str:
        """The bin a value falls in (bins are labelled by their index or category)."""
        if self.kind == "numeric":
            return str(bisect.bisect_right(self.edges, float(value)))
        if self.kind == "binary":
            return "yes" if value else "no"
        return str(value)


def bins_for(values: Sequence[Value], deciles: int = DECILES) -> Bins:
    """The binning of a variable from its reference values: yes/no, categories, or (numbers) the deciles."""
    if values and all(isinstance(v, bool) for v in values):
        return Bins("binary")
    if values and all(isinstance(v, str) for v in values):
        return Bins("categorical", categories=tuple(sorted({str(v) for v in values})))
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    edges = sorted({ordered[min(n - 1, (k * n) // deciles)] for k in range(1, deciles)}) if n else []
    # A cut at the minimum would leave the lowest bin empty on the reference side.
    return Bins("numeric", edges=tuple(e for e in edges if e > ordered[0]) if n else ())


def _shares(bins: Bins, values: Sequence[Value]) -> Counter[str]:
    return Counter(bins.label(v) for v in values)


def psi(expected: Sequence[Value], actual: Sequence[Value], bins: Bins) -> float:
    """The population stability index of ``actual`` against ``expected`` on the given bins (0 when identical).

    Raises:
        ValueError: either side is empty.
    """
    if not expected or not actual:
        raise ValueError("the PSI needs values on both sides")
    e_counts, a_counts = _shares(bins, expected), _shares(bins, actual)
    total = 0.0
    for label in set(e_counts) | set(a_counts):
        e = max(e_counts[label] / len(expected), PSI_FLOOR)
        a = max(a_counts[label] / len(actual), PSI_FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def drift_level(value: float) -> str:
    """'none' below 0.10, 'moderate' up to 0.25, 'major' above (Siddiqi 2006)."""
    if value > PSI_MAJOR:
        return "major"
    return "moderate" if value >= PSI_MODERATE else "none"


def reference_bins(reference: Mapping[str, Sequence[Value]]) -> dict[str, Bins]:
    """The binning of every reference variable."""
    return {code: bins_for(values) for code, values in reference.items()}


@dataclass(frozen=True, slots=True)
class MonitoredAssessment:
    """What monitoring needs of one stored assessment: the known inputs, the missing ones, the risk and its band."""

    inputs: Mapping[str, Value]
    missing: frozenset[str]
    probability: float
    band: str


@dataclass(frozen=True, slots=True)
class InputDrift:
    """One input in one month."""

    code: str
    known: int
    missing_rate: float
    psi: float | None  # None when no patient had it
    level: str


@dataclass(frozen=True, slots=True)
class MonthSummary:
    """One month of index operations: the distribution of the model's inputs and outputs."""

    month: str  # YYYY-MM
    patients: int
    inputs: tuple[InputDrift, ...]
    risk_psi: float | None
    risk_level: str
    mean_risk: float
    bands: dict[str, float]  # share of patients per band
    alerts: dict[str, float] = field(default_factory=dict)  # share of patients with each alert code

    def as_dict(self) -> dict[str, object]:
        """For JSON and for storage."""
        return {
            "month": self.month,
            "patients": self.patients,
            "inputs": [
                {"code": d.code, "known": d.known, "missing_rate": d.missing_rate, "psi": d.psi, "level": d.level}
                for d in self.inputs
            ],
            "risk_psi": self.risk_psi,
            "risk_level": self.risk_level,
            "mean_risk": self.mean_risk,
            "bands": self.bands,
            "alerts": self.alerts,
        }


RISK: Final = "predicted-risk"


def month_summary(
    month: str,
    assessments: Sequence[MonitoredAssessment],
    reference: Mapping[str, Sequence[Value]],
    alert_patients: Mapping[str, int] | None = None,
) -> MonthSummary:
    """The month's missing rates, PSI per input and of predicted risk (reference key ``predicted-risk``), band shares
    and alert shares (``alert_patients``: patients with each alert code among this month's patients)."""
    bins = reference_bins(reference)
    n = len(assessments)
    drifts: list[InputDrift] = []
    for code in sorted(c for c in reference if c != RISK):
        known = [a.inputs[code] for a in assessments if bins[code].accepts(a.inputs.get(code))]
        value = psi(reference[code], known, bins[code]) if known else None
        drifts.append(
            InputDrift(
                code, len(known), (n - len(known)) / n if n else 0.0, value, drift_level(value or 0.0) if n else "none"
            )
        )
    risks = [a.probability for a in assessments]
    risk_psi = psi(reference[RISK], risks, bins[RISK]) if risks and RISK in reference else None
    bands = Counter(a.band for a in assessments)
    return MonthSummary(
        month=month,
        patients=n,
        inputs=tuple(drifts),
        risk_psi=risk_psi,
        risk_level=drift_level(risk_psi or 0.0),
        mean_risk=sum(risks) / n if n else 0.0,
        bands={b: bands[b] / n for b in ("low", "moderate", "high")} if n else {},
        alerts={code: k / n for code, k in sorted((alert_patients or {}).items())} if n else {},
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """One patient with a closed 2-year window: the month of the index, the predicted risk, the event."""

    month: str
    probability: float
    event: bool


@dataclass(frozen=True, slots=True)
class CalibrationSummary:
    """Calibration over a set of patients (a month of index, or the pooled recent window)."""

    label: str
    n: int
    events: int
    observed: float
    expected: float
    oe: float | None
    in_the_large: float | None  # intercept with the log-odds as offset (0 when the mean is right); None without both
    slope: float | None  # None with fewer than MIN_EVENTS events or non-events
    c_statistic: float | None  # None without both events and non-events
    enough: bool  # at least MIN_EVENTS events and non-events: the O/E warning may fire

    def as_dict(self) -> dict[str, object]:
        """For JSON and for storage."""
        return {
            "label": self.label,
            "n": self.n,
            "events": self.events,
            "observed": self.observed,
            "expected": self.expected,
            "oe": self.oe,
            "in_the_large": self.in_the_large,
            "slope": self.slope,
            "c_statistic": self.c_statistic,
            "enough": self.enough,
        }


def calibration_summary(label: str, outcomes: Sequence[Outcome]) -> CalibrationSummary:
    """O/E, calibration slope (outcome ~ a + b x the model's log-odds) and C-statistic of these patients."""
    n = len(outcomes)
    y = [int(o.event) for o in outcomes]
    p = [o.probability for o in outcomes]
    events = sum(y)
    observed = events / n if n else 0.0
    expected = sum(p) / n if n else 0.0
    enough = min(events, n - events) >= MIN_EVENTS
    both = 0 < events < n
    lp = [logit(pi) for pi in p]
    slope = fit_logistic(lp, y).slope if enough else None
    # Calibration-in-the-large as calibration.evaluate computes it: the intercept with the log-odds as offset.
    in_the_large = fit_logistic([0.0] * n, y, offset=lp, slope=0.0).intercept if both else None
    return CalibrationSummary(
        label=label,
        n=n,
        events=events,
        observed=observed,
        expected=expected,
        oe=observed / expected if expected > 0 else None,
        in_the_large=in_the_large,
        slope=slope,
        c_statistic=c_statistic(y, p) if both else None,
        enough=enough,
    )


@dataclass(frozen=True, slots=True)
class Warning:
    """A threshold passed: what, by how much, and the threshold."""

    metric: str  # "psi" | "missing-rate" | "oe"
    subject: str  # the input code, "predicted-risk", or the calibration window
    value: float
    threshold: str
    month: str

    def as_dict(self) -> dict[str, object]:
        """For JSON and for storage."""
        return {
            "metric": self.metric,
            "subject": self.subject,
            "value": self.value,
            "threshold": self.threshold,
            "month": self.month,
        }


def warnings(months: Sequence[MonthSummary], pooled: CalibrationSummary | None) -> list[Warning]:
    """The warnings to raise: drift in the latest month with at least MIN_MONTH_PATIENTS patients (major PSI of an
    input or of predicted risk; an input's missing rate MISSING_RISE above the earlier months' pooled rate), and
    miscalibration of the pooled recent window (O/E outside OE_LOW-OE_HIGH with enough events)."""
    out: list[Warning] = []
    judged = [m for m in months if m.patients >= MIN_MONTH_PATIENTS]
    if judged:
        latest = max(judged, key=lambda m: m.month)
        earlier = [m for m in judged if m.month < latest.month]
        for d in latest.inputs:
            if d.psi is not None and d.psi > PSI_MAJOR:
                out.append(Warning("psi", d.code, d.psi, f"> {PSI_MAJOR}", latest.month))
            if earlier:
                before_n = sum(m.patients for m in earlier)
                before_missing = sum(m.patients * i.missing_rate for m in earlier for i in m.inputs if i.code == d.code)
                baseline = before_missing / before_n
                if d.missing_rate - baseline > MISSING_RISE:
                    out.append(
                        Warning(
                            "missing-rate", d.code, d.missing_rate, f"> {baseline:.2f} + {MISSING_RISE}", latest.month
                        )
                    )
        if latest.risk_psi is not None and latest.risk_psi > PSI_MAJOR:
            out.append(Warning("psi", RISK, latest.risk_psi, f"> {PSI_MAJOR}", latest.month))
    if pooled is not None and pooled.enough and pooled.oe is not None and not OE_LOW <= pooled.oe <= OE_HIGH:
        out.append(Warning("oe", pooled.label, pooled.oe, f"outside {OE_LOW}-{OE_HIGH}", pooled.label))
    return out


def reference_values() -> dict[str, tuple[Value, ...]]:
    """The model card's reference cohort: every input's values and (``predicted-risk``) each member's predicted risk
    as the model as published gives it."""
    cohort = reference_cohort()
    out: dict[str, tuple[Value, ...]] = {code: tuple(m[code] for m in cohort) for code in cohort[0]}
    out[RISK] = cohort_probabilities()
    return out
