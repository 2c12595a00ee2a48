"""The model card, rendered from the parameter table and the model itself so the two cannot drift
(`refracture model-card`): every figure (cohort mean, histogram, calibration table, example patients, seed effects)
is computed here by the same code that scores patients."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from service.domain import risk_parameters as P
from service.domain.calibration import MIN_EVENTS, MIN_EVENTS_FOR_SLOPE
from service.domain.outcomes import LANDMARK_DAYS
from service.domain.reference_cohort import COHORT_SIZE, DISTRIBUTIONS, reference_cohort
from service.domain.risk_model import (
    InputValue,
    RiskEstimate,
    cohort_log_odds,
    cohort_probabilities,
    estimate,
    implied_c_statistic,
    model_id,
    percentile,
)
from service.domain.risk_parameters import Factor, Kind

__all__ = [
    "COMPLETE_TYPICAL",
    "EXAMPLES",
    "SPARSE_TYPICAL",
    "CalibrationRow",
    "Example",
    "calibration_rows",
    "render_model_card",
    "seed_effects",
]

# The typical patient: a 72-year-old woman after PVP of L1 with a T-score of -2.8. Sparse: only what the
# operation and a DXA say. Complete: every input at the reference cohort's commonest value (sarcopenia present, as
# in 72.5 % of OVCF patients; no leakage; cement on both endplates; operated after 4 weeks).
SPARSE_TYPICAL: Final[Mapping[str, InputValue]] = {
    "age": 72,
    "female-sex": True,
    "thoracolumbar-junction": True,
    "kyphoplasty": False,
    "multiple-fractures": False,
    "dxa-t-score": -2.8,
}
COMPLETE_TYPICAL: Final[Mapping[str, InputValue]] = {
    **SPARSE_TYPICAL,
    "vertebral-hu": 75.0,
    "hu-gradient": False,
    "cobb-over-10": False,
    "kyphosis-correction": 5.0,
    "compression-38": False,
    "cement-volume-high": False,
    "cement-leakage": "none",
    "cement-both-endplates": True,
    "early-surgery": False,
    "sarcopenia": True,
    "prior-vertebral-fracture": False,
    "prior-nonvertebral-fracture": False,
    "type2-diabetes": False,
    "sglt2-inhibitor": False,
    "chronic-kidney-disease": "none",
    "glucocorticoids": False,
    "osteoporosis-treatment": "none",
}


@dataclass(frozen=True, slots=True)
class Example:
    """A patient the issue names, and the published figure to compare its estimate with."""

    label: str
    inputs: Mapping[str, InputValue]
    published: str


EXAMPLES: Final[tuple[Example, ...]] = (
    Example(
        "72-year-old woman, PVP of L1, T-score -2.8 (sparse record)",
        SPARSE_TYPICAL,
        "2-year incidence 10.6-12.2 %, pooled 13-18 % (docs/sources/clinical.md §a3)",
    ),
    Example(
        "the same woman, a typical record: the OVCF Condition (40 days before), no other condition coded, PVP, DXA",
        {
            **SPARSE_TYPICAL,
            "early-surgery": False,
            "prior-vertebral-fracture": False,
            "prior-nonvertebral-fracture": False,
            "type2-diabetes": False,
            "sglt2-inhibitor": False,
        },
        "2-year incidence 10.6-12.2 %, pooled 13-18 %",
    ),
    Example(
        "the same woman, every input known (typical values)",
        COMPLETE_TYPICAL,
        "2-year incidence 10.6-12.2 %, pooled 13-18 %",
    ),
    Example(
        "60-year-old man, T-score -1.0, HU 140",
        {"age": 60, "female-sex": False, "dxa-t-score": -1.0, "vertebral-hu": 140.0},
        "below the cohorts' 8.6-18 % (younger, male, good bone); no published subgroup",
    ),
    Example(
        "80-year-old woman, prior vertebral fracture, glucocorticoids, disc leakage, T11-L2",
        {
            "age": 80,
            "female-sex": True,
            "prior-vertebral-fracture": True,
            "glucocorticoids": True,
            "cement-leakage": "disc",
            "thoracolumbar-junction": True,
        },
        "highest published cohort figures: 33.3 % (elderly with comorbidity, Qi 2024); 19.2 % in 1 year after an "
        "incident vertebral fracture (Lindsay 2001)",
    ),
)


@dataclass(frozen=True, slots=True)
class CalibrationRow:
    """A published rate and the model's mean prediction over the matching reference-cohort subgroup."""

    source: str
    published: str
    subgroup: str
    members: int
    mean: float


_Member = Mapping[str, float | bool | str]
_SUBGROUPS: Final[tuple[tuple[str, str, str, Callable[[_Member], bool]], ...]] = (
    ("BMC MSD 2021 (403 PVP/PKP); BMC MSD 2023 (529 PKP)", "12.2 %; 10.6 % at 2 years", "everyone", lambda m: True),
    (
        "Dai 2022 (23 studies, 9,372); Liu 2025 (18 studies, 7,743)",
        "13.4 %; 17.3 % (variable follow-up)",
        "everyone",
        lambda m: True,
    ),
    ("Chen 2019 (410 PVP, 240 PKP)", "15.7 % (mean 24 months)", "everyone", lambda m: True),
    ("BMC MSD 2023 (529 PKP)", "10.6 % at 2 years", "kyphoplasty", lambda m: m["kyphoplasty"] is True),
    (
        "JOSR 2021 (9 studies, 1,882 PVP)",
        "18.1 % (variable follow-up)",
        "vertebroplasty",
        lambda m: m["kyphoplasty"] is False,
    ),
    (
        "Lindsay 2001 (placebo arms, 2,725 women)",
        "19.2 % in 1 year after an incident vertebral fracture",
        "women with a prior vertebral fracture",
        lambda m: m["female-sex"] is True and m["prior-vertebral-fracture"] is True,
    ),
    (
        "Qi 2024 (550 elderly PVP with comorbidity)",
        "33.3 % (follow-up to 10 years)",
        "75 or older with CKD stage 3-5 or type 2 diabetes",
        lambda m: float(m["age"]) >= 75 and (m["chronic-kidney-disease"] != "none" or m["type2-diabetes"] is True),
    ),
    (
        "Burckhardt 2021 (797 denosumab stoppers)",
        "10.3 % spinal fractures within 2 years of stopping",
        "denosumab stopped",
        lambda m: m["osteoporosis-treatment"] == "denosumab-stopped",
    ),
    (
        "Keshishian 2017 / treatment gap (docs/sources/clinical.md §a2)",
        "none published after PVP; treated patients should sit below the untreated",
        "treated after the fracture",
        lambda m: m["osteoporosis-treatment"] == "treated",
    ),
)


def calibration_rows() -> list[CalibrationRow]:
    """The calibration table: each published rate against our mean prediction in the matching subgroup."""
    members = reference_cohort()
    risks = cohort_probabilities()
    rows = []
    for source, published, name, belongs in _SUBGROUPS:
        chosen = [p for m, p in zip(members, risks, strict=True) if belongs(m)]
        rows.append(CalibrationRow(source, published, name, len(chosen), sum(chosen) / len(chosen)))
    return rows


def _odds(p: float) -> float:
    return p / (1 - p)


def seed_effects() -> list[tuple[str, str, float, str]]:
    """The article's numbers against the model's, one factor changed at the complete typical patient:
    (effect, article, model, where the bound changes it)."""
    base = dict(COMPLETE_TYPICAL)

    def ratio(change: Mapping[str, InputValue], against: Mapping[str, InputValue] | None = None) -> float:
        reference = estimate({**base, **(against or {})}).probability
        return _odds(estimate({**base, **change}).probability) / _odds(reference)

    return [
        ("sarcopenia, OR", "2.78", ratio({"sarcopenia": True}, {"sarcopenia": False}), "exact"),
        ("prior vertebral fracture, OR", "2.55", ratio({"prior-vertebral-fracture": True}), "exact"),
        (
            "each 1 HU lower, % higher odds",
            "5.8",
            100 * (ratio({"vertebral-hu": 74.0}) - 1),
            "from about 63 to 87 HU; the bone-quality bound holds it flat outside: "
            f"{100 * (ratio({'vertebral-hu': 59.0}, {'vertebral-hu': 60.0}) - 1):.1f} % at 60 HU, "
            f"{100 * (ratio({'vertebral-hu': 99.0}, {'vertebral-hu': 100.0}) - 1):.1f} % at 100 HU",
        ),
        ("early surgery, OR", "about 0.5", ratio({"early-surgery": True}), "exact"),
    ]


def _pct(p: float) -> str:
    return f"{100 * p:.1f} %"


def _histogram(risks: Sequence[float]) -> str:
    edges = (0.0, 0.02, 0.05, 0.10, 0.15, 0.20, 0.30, 0.40, 0.50, 0.60)
    lines = []
    for low, high in itertools.pairwise(edges):
        if high == P.FLOOR:
            share = sum(p <= P.FLOOR for p in risks) / len(risks)
            label = f"  at the floor {100 * P.FLOOR:>2.0f} %"
        else:
            last = high == edges[-1]
            share = sum(low < p <= high if not last else low < p for p in risks) / len(risks)
            label = f"{100 * low:>5.0f}-{100 * high:>2.0f} %      "
        lines.append(f"{label} | {'#' * round(share * 100):<40} {100 * share:4.1f} %")
    return "\n".join(lines)


def _effect(factor: Factor) -> str:
    if factor.kind is Kind.BINARY:
        return f"OR {factor.odds_ratio:.3g} present vs absent"
    if factor.kind is Kind.PER_UNIT:
        per = f"per {factor.unit}" if factor.unit else "per unit"
        return f"OR {factor.odds_ratio:.4g} {per} higher"
    if factor.kind is Kind.CATEGORY:
        return "; ".join(f"{c.value}: OR {c.odds_ratio:.3g}" for c in factor.categories if c.source != "reference")
    return "not scored"


def _model_effect(factor: Factor) -> str:
    if factor.kind is Kind.SHOWN:
        return "-"
    if factor.kind is Kind.CATEGORY:
        parts = [
            f"{c.value}: {math.exp(factor.category_beta(c.value) or 0.0):.3g}"
            for c in factor.categories
            if c.source != "reference"
        ]
        text = "; ".join(parts)
    elif factor.kind is Kind.PER_UNIT:
        text = f"{factor.model_odds_ratio:.4g} per {factor.unit}, from {factor.clamp_low:g} to {factor.clamp_high:g}"
    else:
        text = f"{factor.model_odds_ratio:.3g}"
    return f"{text} (x{factor.slope:g})" + (f", {factor.group.value} group" if factor.group else "")


def _source(factor: Factor) -> str:
    parts = [factor.source]
    parts += [f"{c.value}: {c.source}" for c in factor.categories if c.source != "reference"]
    if factor.note:
        parts.append(factor.note)
    return " ".join(p if p.endswith(".") else p + "." for p in parts).replace("|", "/")


def _example_rows() -> str:
    rows = []
    for example in EXAMPLES:
        result: RiskEstimate = estimate(example.inputs)
        narrowing = ", ".join(f"`{c}`" for c in result.narrowing) or "-"
        bound = f" ({result.bounded})" if result.bounded else ""
        rows.append(
            f"| {example.label} | {_pct(result.probability)}{bound} | {_pct(result.low)} - {_pct(result.high)} | "
            f"{narrowing} | {example.published} |"
        )
    return "\n".join(rows)


def render_model_card() -> str:
    """The model card as Markdown."""
    rows = "\n".join(
        f"| `{f.code}` | {f.label} | {_effect(f)} | {_model_effect(f)} | {f.evidence.value} | {_source(f)} |"
        for f in P.FACTORS
    )
    cohort_rows = "\n".join(f"| `{d.code}` | {d.description} | {d.source} |" for d in DISTRIBUTIONS)
    risks = cohort_probabilities()
    ordered = sorted(risks)
    log_odds = cohort_log_odds()
    mean = sum(risks) / len(risks)
    at_floor = sum(p <= P.FLOOR for p in risks) / len(risks)
    at_ceiling = sum(p >= P.CEILING for p in risks) / len(risks)
    calibration = "\n".join(
        f"| {r.source} | {r.published} | {r.subgroup} | {r.members} | {_pct(r.mean)} |" for r in calibration_rows()
    )
    seeds = "\n".join(f"| {name} | {article} | {model:.3g} | {note} |" for name, article, model, note in seed_effects())
    assumptions = ", ".join(f"`{f.code}`" for f in P.FACTORS if f.evidence is P.Evidence.ASSUMPTION)
    not_scored = ", ".join(f"`{f.code}`" for f in P.FACTORS if f.kind is Kind.SHOWN)
    low_share, high_share = P.RANGE_PERCENTILES
    return f"""# Model card: {P.MODEL_NAME}

<!-- Generated by `refracture model-card --out docs/model-card.md` from service/domain/risk_parameters.py,
     service/domain/reference_cohort.py and service/domain/risk_model.py.
     Do not edit by hand: a test fails when this file and the model differ. -->

**Model id** `{model_id()}` (name / version + digest of the parameter table and the reference cohort: any change
to a number changes it).
Design: [ADR 0005](adr/0005-calibrated-absolute-model.md).

## What it is for

The probability that a patient who had percutaneous vertebroplasty (PVP) or kyphoplasty (PKP) for an osteoporotic
vertebral compression fracture has a **new or recurrent vertebral fracture within {P.HORIZON_YEARS} years after
the operation** (re-collapse of the treated vertebra, or a new fracture of an adjacent or any other vertebra).
It helps a fracture-liaison or geriatric-orthopaedic team decide who needs attention first and which modifiable
factors to work on. **It is decision support, not a diagnosis**, and it does not replace clinical judgement.

Out of scope: patients without a completed augmentation on record (the model is not applied), fractures from
high-energy trauma or malignancy, and any use as the sole basis of a treatment decision.

## Output

- **Probability** over the {P.HORIZON_YEARS}-year horizon from the index operation. In FHIR it is
  `RiskAssessment.prediction.probabilityDecimal`, a **fraction between 0 and 1** (0.13 means 13 %), as in HL7's own
  R4 examples — not a percentage, whatever the R4 element comment says. Written to **two significant figures**
  (0.15, 0.047), never rounded to 0. Until the hospital's outcomes recalibrate the model, it is kept between a
  **floor of {P.FLOOR:.0%}** and a **ceiling of {P.CEILING:.0%}**; the note says when a bound set the figure.
  Floor: {P.FLOOR_SOURCE}: nobody after a vertebral augmentation is at lower risk than a treated osteoporosis
  cohort. Ceiling: {P.CEILING_SOURCE}: a 2-year risk above it is beyond any published cohort.
- **Band**: low below {P.LOW_BELOW:.0%}, moderate from {P.LOW_BELOW:.0%} to below {P.HIGH_FROM:.0%}, high from
  {P.HIGH_FROM:.0%}. High starts where the "imminent risk" after an incident vertebral fracture lies (19.2 % new
  vertebral fractures within a year, Lindsay 2001).
- **Range**: the {100 * low_share:.0f}th-{100 * high_share:.0f}th percentiles of the predicted risk with the inputs
  the record lacks drawn jointly from the reference cohort ("8 in 10 patients like this one lie between ..."), and
  the **one or two unknown inputs that would narrow it most** (the largest expected reduction of that width on the
  odds scale when the input is known). In FHIR: the extension `probability-range-unknown-inputs` (`low`, `high`,
  `narrowedBy`) and the note; on the worklist's patient page.
- **Each factor's contribution** in log-odds against a patient at population values (the reference cohort's mean),
  and as an odds ratio; a bounded group's effect is shared among its known factors in proportion.
- **Missing inputs**, listed, and averaged over (never imputed).

## How it works

A logistic model: log-odds = intercept + the ungrouped factors' terms + a bounded **bone-quality** group + a bounded
**cement-mechanics** group. Each term is the factor's published log odds ratio times a **shrinkage** factor:

- the article's own numbers (sarcopenia x2.78, prior vertebral fracture x2.55, 5.8 % per HU, early surgery about
  x0.5) are kept as stated: docs/sources/evidence.md's rule 3 asks the model to reproduce them;
- pooled adjusted ORs from meta-analyses are shrunk to {P.SHRINKAGE:g} of their log-odds; single studies,
  conflicting evidence and assumed sizes to {P.SHRINKAGE_WEAK:g}. Published re-fracture models are
  over-optimistic: {P.SHRINKAGE_SOURCE}. Effects from different studies multiplied as if independent over-disperse a
  model (this model's first version had an SD of the log-odds of 2.2 and an implied C-statistic of 0.88).
- **Bone quality** is one group: the vertebral HU of the treated vertebra (5.8 % per HU near the typical 75 HU) with
  the DXA T-score at {P.T_SCORE_WEIGHT_WITH_HU:g} weight when both are known, or whichever is known; the group's
  log-odds are held within x{math.exp(-P.BONE_BOUND):g} to x{math.exp(P.BONE_BOUND):g} of the typical patient's, so
  5.8 % per HU applies from about {75 - P.BONE_BOUND / math.log(1.058):.0f} to
  {75 + P.BONE_BOUND / math.log(1.058):.0f} HU and the best and the worst bone differ at most
  {math.exp(2 * P.BONE_BOUND):.0f}-fold, about what the shrunk pooled 0.96 per HU gives across the cohort's
  inter-decile HU range (not the x1,500 a linear 5.8 % per HU gives from 20 to 150 HU).
- **Cement mechanics** is one group: cement volume, leakage (disc or other, counted once), cement on both endplates
  (its effect on re-collapse of the treated level only, so a small one on any new fracture) and the stiffness
  gradient (none when the treated vertebra's own HU is already below {P.GRADIENT_SUPPRESSED_BELOW_HU:g}: the bone
  group counts it); the group's odds ratio is held within {math.exp(P.CEMENT_BOUNDS[0]):g} to
  {math.exp(P.CEMENT_BOUNDS[1]):g}.
- **The intercept** is set so that the **mean** prediction over the reference cohort (below), with the floor and
  ceiling, is the baseline of {P.BASELINE_RISK:.0%}: {P.BASELINE_SOURCE}.

**Unknown is not absent, and not imputed.** An input the record does not hold is listed as missing, and the estimate
is the mean predicted risk over the {COHORT_SIZE} members of the reference cohort, each lending the patient its own
values of all the unknown inputs at once (so inputs that go together stay together). A T-score without an HU (or the
reverse) stands for bone quality on its own. A comorbidity counts as absent only when the record holds Conditions at
all, a drug only when it holds medication resources at all; sarcopenia is never assumed absent without an
assessment, because it is rarely coded. The per-member sums of every pattern of unknown inputs are computed once and
cached: an assessment costs one pass over the cohort (about 0.1 ms).

Only data recorded by the assessment time and dated no later than it are used. An assessment is stored only when
its inputs or the model change.

## The absolute picture (reference cohort, {COHORT_SIZE} members)

Mean predicted risk **{_pct(mean)}** (target {P.BASELINE_RISK:.0%} ± 2 points); median {_pct(percentile(ordered, 0.5))};
10th-90th percentile {_pct(percentile(ordered, 0.1))} - {_pct(percentile(ordered, 0.9))}; at the floor
{_pct(at_floor)}, at the ceiling {_pct(at_ceiling)}; SD of the log-odds {statistics.pstdev(log_odds):.2f};
**implied C-statistic {implied_c_statistic(risks):.2f}** (what the model would reach if it were exactly right;
published models reach 0.52-0.74 externally).

```text
predicted 2-year risk  | share of the reference cohort (# = 1 %)
{_histogram(risks)}
```

### Calibration against published rates

The model's mean prediction over the reference-cohort subgroup that matches each published figure. Horizons differ
(some are 1 year or variable follow-up); the table is a plausibility check, not a validation.

| source | published rate | our subgroup | members | our mean |
|---|---|---|---|---|
{calibration}

The model sits below cohorts with long follow-up or routine imaging: Qi 2024 follows elderly patients for up to
10 years, and East Asian cohorts with routine imaging or many comorbidities report 22-33 % (docs/sources/clinical.md
§a3).

### The issue's example patients

| patient | estimate | range (10th-90th percentile) | would narrow it most | published comparison |
|---|---|---|---|---|
{_example_rows()}

The sparse record's range is wide mostly because sarcopenia is unknown: present in 72.5 % of OVCF patients with
OR 2.78 (the article's), it alone spans a factor of about 2.5 between the 10th and the 90th percentile; any other
unknown with a prevalence between 10 % and 90 % widens it further. Knowing sarcopenia narrows the range most.

### The article's numbers, one factor changed at the complete typical patient

Odds ratios (the article's "times the risk" figures come from case-control and retrospective designs with 10-20 %
event rates, where they are odds ratios in all but name).

| effect | article | model | where the bound changes it |
|---|---|---|---|
{seeds}

Each is within 15 % of the article's figure at the typical patient. Where the bound does not allow it: the per-HU
effect outside about 63-87 HU, held flat by the bone-quality bound, because a linear 5.8 % per HU from one
279-patient study would make HU alone a x1,500 factor across its range and count bone quality twice with the
T-score; and any effect that would take a patient past the floor or the ceiling until local recalibration.

The 13.82 % cement threshold, the HU-ratio/adjacent-HU rule, the 10 degree Cobb rule and the T11-L2 zone are the
inputs' definitions (unit tests check them); their sizes are shrunk as the table below says.

## Parameters

References in brackets are the seed review's. "Model OR" is the published OR after shrinkage (the factor in
brackets), as the model applies it.

| code | input | published effect | model OR | evidence | source |
|---|---|---|---|---|---|
{rows}

## The reference cohort

Synthetic, seeded, {COHORT_SIZE} members, every input known (service/domain/reference_cohort.py): what the intercept
is set on, what unknown inputs are averaged over, and what the figures above are computed on.

| input | distribution | source |
|---|---|---|
{cohort_rows}

## Where the sources conflict, and what this model follows

- **Sarcopenia**: the article's 2.78 (Lin 2025, its ref [19]) is used; Nguyen 2025 pools 2.92.
- **Cobb correction**: the article's "more correction, more re-fracture" (495 PKP patients) is followed with a small
  assumed effect, because Dai 2022 found the opposite direction.
- **Thoracolumbar junction**: Liu 2025's adjusted OR 3.50, shrunk like a single study, because an Asian pool
  (Zheng 2025) found no effect.
- **Per-HU effect**: the article's 5.8 % per HU (ref [11]) near the typical HU, bounded as a group; Liu 2025 pools 4 %
  (OR 0.96 per HU) and single studies find cut-offs near 65 HU.
- **Prior fracture**: the article's 2.55 for a prior vertebral fracture; Liu 2025 pools 7.72 for any fracture
  history with a wide interval.

## Local recalibration

Published re-fracture models calibrate poorly outside the cohorts they came from, so this model is a
literature-anchored prior to be recalibrated on the hospital's own outcomes: `refracture recalibrate`.

- **Outcome**: from the patient's first completed augmentation on record (the index), a vertebral fracture
  diagnosis dated after the index day (any level: new or recurrent), or a new augmentation of a level the index
  did not treat, within {P.HORIZON_YEARS} years. A repeat augmentation of the same levels alone does not count.
- **Prediction** at the index: the model's log-odds (before its floor and ceiling) on the facts dated up to
  {LANDMARK_DAYS} days after the operation (its own cement and CT measures), and no later augmentation. Facts are
  selected by the date they describe, not by when they were stored, because data loaded in bulk were all stored at
  load time.
- **Censoring**: a patient whose {P.HORIZON_YEARS}-year window has not closed by today is left out whether or not
  a fracture was seen (keeping early events but dropping event-free follow-up would inflate the risk), and so is a
  patient who died within the window without one. Patients who moved elsewhere look event-free: the record
  cannot tell.
- **Fit and held-out split**: patients are split, stratified by outcome, with a seeded hash of their id (30 % held
  out by default). On the fitting part, closed testing (Vergouwe et al. 2017) chooses between keeping the model,
  updating its intercept (new log-odds = a + log-odds) and refitting intercept and slope (a + b x log-odds), by
  likelihood-ratio tests at 5 %. With fewer than {MIN_EVENTS} events (or non-events) nothing is refitted; with
  fewer than {MIN_EVENTS_FOR_SLOPE}, at most the intercept.
- **Registered only when better**: on the held-out patients both models are scored (C-statistic with a DeLong
  95 % interval, calibration slope and intercept, calibration-in-the-large, observed/expected by tenth of risk,
  Brier score, log-loss). The recalibration becomes a new model version only when its held-out log-loss is lower
  beyond chance: the one-sided 95 % lower bound of the paired per-patient gain is above zero. `--dry-run`
  reports without storing.
- **In use**: the newest registered calibration for this parameter table applies to every new assessment, to the
  probability and to its range, and replaces the floor and ceiling. Its version (`{model_id()}.cal.` and a digest of
  a and b) is the model version of the assessment and of the RiskAssessment's `method`, whose text names the
  calibration; each factor's contribution is scaled by b so the explanation still adds up. A new version makes
  `refracture rescore` re-assess every patient. A change to the parameter table retires every calibration (they
  were fitted to the old one); `refracture recalibrate --retire` does so on purpose. The page `/worklist/model`
  (care coordinators and administrators) and `GET /api/model/calibration` show the calibrations and the latest
  evaluation's calibration plot.

## Monitoring in production

A daily task compares the stored assessments, month by month of index operation, with the reference cohort: the
missing rate and population stability index (PSI) of every input, the PSI of the predicted risk, the share per band
and per alert; and, as 2-year windows close (the outcome and censoring rule above), observed/expected, calibration
slope and C-statistic. A PSI above 0.25 (major shift), an input's missing rate 0.20 above the earlier months', or an
observed/expected outside 0.8-1.25 with at least {MIN_EVENTS} events raises a warning: the gauge
`refracture_model_monitoring_warning`, per-metric gauges (`refracture_model_drift_psi{{input=...}}`,
`refracture_model_calibration_oe`) and a banner on `/worklist/model`; `GET /api/model/monitoring` gives the figures.
Thresholds, their sources and what to do (`refracture recalibrate --dry-run`) are in
[model-monitoring.md](model-monitoring.md).

## Limits

- **Not validated on outcomes.** The calibration table compares means with published rates; discrimination and
  calibration on real patients are unknown until local recalibration. Published models reach AUC 0.8-0.97
  internally but 0.52-0.74 on external validation.
- **Assumed sizes.** The article gives a direction but no size for {assumptions}; their ORs are moderate values
  chosen here, shrunk further, to be re-estimated on local data.
- **The reference cohort is synthetic**: its prevalences follow the evidence where it gives them and are
  assumptions elsewhere (table above); the range and the mean of a patient with unknown inputs depend on them.
- **Not scored**: {not_scored} are shown to clinicians but have no published effect size to score.
- **Correlated factors** outside the two groups (sarcopenia and age, prior fractures and bone quality) are still
  multiplied as if independent; the shrinkage and the floor and ceiling limit the harm.
- **The U-shaped cement dose-response** is scored on the high side only: no low threshold is published.
- **Inputs come from coded data.** Missing or mis-coded data changes the estimate; the missing inputs are listed so
  the care team can fill them (the care plan asks for DXA and CT measures when absent).
"""  # noqa: S608 - Markdown that mentions no SQL; the rule matches its words
