"""The re-fracture model's parameters: one table, each row with its value and its source.

Effects are odds ratios (OR). The article's "times the risk" figures come from case-control and retrospective
designs with 10-20 % event rates, where they are odds ratios in all but name; treating them as ORs reproduces
them exactly "holding everything else equal". Every factor is centred on its population value (mean or
prevalence), which is also what an unknown input is imputed to: an all-unknown patient gets the baseline.

Sources: the review in shared/seed (its references in brackets) and the meta-analyses and studies in
shared/reference/clinical.md §a4. "Assumption" marks an effect the article states without a size; its value is a
moderate OR chosen here, stated as such in the model card, for local recalibration to correct.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

MODEL_NAME: Final = "refracture-ovcf-2y"
MODEL_VERSION: Final = "1.0.0"
HORIZON_YEARS: Final = 2

# Baseline: new or recurrent vertebral fracture within 2 years after PVP/PKP. 2-year cohorts report 10.6 % and
# 12.2 %, pooled any-follow-up estimates 13-18 % (clinical.md §a3); evidence.md: "roughly 10-18 %". 13 % sits in
# the middle and is the risk of a patient whose every input equals the population value.
BASELINE_RISK: Final = 0.13
BASELINE_SOURCE: Final = (
    "2-year incidence 10.6 % (BMC MSD 2023, 529 PKP) and 12.2 % (BMC MSD 2021, 403 PVP/PKP); pooled 13.4-18 % "
    "(Dai 2022, Liu 2025); evidence.md 'roughly 10-18 %'"
)

# Bands of the 2-year probability. High starts at 20 %: a new vertebral fracture follows an incident one in
# 19.2 % within a year (Lindsay 2001, JAMA 285:320), the "imminent risk" that fracture services act on.
LOW_BELOW: Final = 0.10
HIGH_FROM: Final = 0.20


class Evidence(StrEnum):
    """How strong the number behind a factor is."""

    ARTICLE = "article"  # the seed review states the number
    META_ANALYSIS = "meta-analysis"
    STUDY = "single study"
    ASSUMPTION = "assumption"  # direction from the evidence, size chosen here
    NOT_SCORED = "not scored"  # an input shown to clinicians, with no published effect to score it


class Kind(StrEnum):
    """How a factor's input becomes log-odds."""

    BINARY = "binary"  # present vs absent
    PER_UNIT = "per-unit"  # OR per unit increase, within [clamp_low, clamp_high]
    CATEGORY = "category"  # one OR per category against the reference category
    SHOWN = "shown"  # carried for the clinician, no effect


@dataclass(frozen=True, slots=True)
class Category:
    """One value of a categorical factor: its OR against the factor's reference value, and its prevalence."""

    value: str
    odds_ratio: float
    prevalence: float
    source: str


@dataclass(frozen=True, slots=True)
class Factor:
    """One row of the parameter table."""

    code: str  # the code in https://refracture.dev/fhir/CodeSystem/risk-factor
    label: str
    kind: Kind
    odds_ratio: float  # BINARY: present vs absent; PER_UNIT: per unit increase; otherwise 1
    population: float  # BINARY: prevalence; PER_UNIT: mean (the imputed value when unknown)
    source: str
    evidence: Evidence
    unit: str | None = None
    clamp_low: float | None = None  # PER_UNIT: the effect is linear only within this range
    clamp_high: float | None = None
    plausible_low: float | None = None  # PER_UNIT: 10th and 90th percentile, for the range of an unknown
    plausible_high: float | None = None
    categories: tuple[Category, ...] = ()
    note: str = ""

    @property
    def beta(self) -> float:
        """Log-odds per unit (PER_UNIT) or for presence (BINARY)."""
        return math.log(self.odds_ratio)


def _or_per_unit_lower(percent_per_unit_lower: float) -> float:
    # "Each 1-unit decrease … about 5.8 % increase" is an OR of 1.058 per unit down, so 1/1.058 per unit up.
    return 1.0 / (1.0 + percent_per_unit_lower / 100.0)


FACTORS: Final[tuple[Factor, ...]] = (
    Factor(
        "age",
        "Age at the operation",
        Kind.PER_UNIT,
        1.02,
        72.0,
        "Liu 2025 (JOSR, 18 studies, 7,743 patients) pooled adjusted OR 1.09 (1.02-1.17), unit not reported; the "
        "lower bound is used per year; age an independent risk factor [13]",
        Evidence.META_ANALYSIS,
        "years",
        50.0,
        95.0,
        62.0,
        85.0,
        note="The pooled OR's unit is not visible in the abstract; per year at its lower bound is the cautious "
        "reading.",
    ),
    Factor(
        "female-sex",
        "Female sex",
        Kind.BINARY,
        1.99,
        0.75,
        "Liu 2025 pooled adjusted OR 1.99 (1.50-2.64); independent risk factor after PVP [3]",
        Evidence.META_ANALYSIS,
    ),
    Factor(
        "dxa-t-score",
        "Lowest DXA T-score",
        Kind.PER_UNIT,
        0.74,
        -2.8,
        "Liu 2025 pooled adjusted OR 0.74 (0.63-0.86) per unit of BMD; low BMD a key predictor [3] [6]",
        Evidence.META_ANALYSIS,
        "SD",
        -5.0,
        1.0,
        -4.0,
        -1.5,
        note="Lowest of lumbar spine, total hip, femur and femoral neck within 2 years before the operation. "
        "Overlaps with vertebral HU (both measure bone quality); both are kept, as in the article.",
    ),
    Factor(
        "vertebral-hu",
        "CT Hounsfield units of the treated vertebra before surgery",
        Kind.PER_UNIT,
        _or_per_unit_lower(5.8),
        75.0,
        "[11] 279 PVP patients: each 1 HU lower before surgery, about 5.8 % higher risk of re-fracture "
        "(Liu 2025 pools OR 0.96 per HU)",
        Evidence.ARTICLE,
        "[hnsf'U]",
        20.0,
        150.0,
        45.0,
        110.0,
        note="Linear between 20 and 150 HU; outside that range the effect is held at its edge.",
    ),
    Factor(
        "hu-gradient",
        "Stiffness gradient: HU ratio augmented/adjacent > 15.18 with adjacent HU < 66.9",
        Kind.BINARY,
        2.0,
        0.15,
        "[12] the ratio above 15.18 together with adjacent-vertebra HU below 66.9 raises adjacent fracture risk "
        "markedly (no size stated)",
        Evidence.ASSUMPTION,
        note="The ratio is the augmented vertebra's HU after surgery over the adjacent vertebra's HU.",
    ),
    Factor(
        "cobb-over-10",
        "Coronal Cobb angle above 10 degrees (degenerative scoliosis)",
        Kind.BINARY,
        2.97,
        0.20,
        "[4] Cobb angle above 10 degrees a risk factor for adjacent fracture after PVP; size: lower bound of "
        "scoliosis aOR 6.46 (2.97-14.03), Qi 2025 (560 PVP)",
        Evidence.STUDY,
        note="The point estimate (6.46) comes from an over-fitted nomogram; its lower bound is used.",
    ),
    Factor(
        "kyphosis-correction",
        "Kyphotic (Cobb) angle corrected by the operation",
        Kind.PER_UNIT,
        1.03,
        5.0,
        "[43] 495 PKP patients: re-fracture risk rose with the degree of correction (no size stated); Dai 2022 "
        "found the opposite direction",
        Evidence.ASSUMPTION,
        "deg",
        0.0,
        30.0,
        0.0,
        12.0,
        note="The article's direction is followed; the evidence conflicts (Dai 2022), so the effect is small.",
    ),
    Factor(
        "compression-38",
        "Vertebral compression of 38.5 % or more before surgery",
        Kind.BINARY,
        1.5,
        0.40,
        "[33] compression of 38.5 % or more: more loss of restored height; more compression, more risk",
        Evidence.ASSUMPTION,
    ),
    Factor(
        "cement-volume-high",
        "Cement volume above 13.82 % of the vertebral body",
        Kind.BINARY,
        2.0,
        0.40,
        "[29] 245 patients: above 13.82 % the adjacent fracture risk rises significantly (no size stated); "
        "U-shaped dose-response [30]",
        Evidence.ASSUMPTION,
        note="The low side of the U (too little cement) has no published threshold and is not scored.",
    ),
    Factor(
        "cement-leakage",
        "Cement leakage",
        Kind.CATEGORY,
        1.0,
        0.0,
        "[33] [34] leakage, especially into the disc, an independent risk factor",
        Evidence.META_ANALYSIS,
        categories=(
            Category("none", 1.0, 0.70, "reference"),
            Category("other", 2.05, 0.20, "Dai 2022 (23 studies, 9,372 patients) OR 2.05 (1.40-3.00), any leakage"),
            Category("disc", 2.94, 0.10, "Liu 2025 pooled adjusted OR 2.94 (1.64-5.28), leakage into the disc"),
        ),
    ),
    Factor(
        "cement-both-endplates",
        "Cement touching both endplates",
        Kind.BINARY,
        0.28,
        0.50,
        "[31] fewer re-fractures with both endplates touched; recompression 5.2 % vs 16.5 % (PMC7427078, 137 "
        "patients), OR 0.28",
        Evidence.STUDY,
    ),
    Factor(
        "thoracolumbar-junction",
        "Treated level in T11-L2",
        Kind.BINARY,
        3.50,
        0.60,
        "[37] T11-L2 a high-risk zone for adjacent fracture; Liu 2025 pooled adjusted OR 3.50 (2.06-5.93)",
        Evidence.META_ANALYSIS,
        note="Not significant in an Asian pool (Zheng 2025).",
    ),
    Factor(
        "multiple-fractures",
        "Two or more fractured vertebrae at the first operation",
        Kind.BINARY,
        1.71,
        0.30,
        "[38] [39] risk rises with the number; Liu 2025 multiple vertebral fractures OR 1.71 (1.14-2.57)",
        Evidence.META_ANALYSIS,
    ),
    Factor(
        "kyphoplasty",
        "Kyphoplasty (PKP) rather than vertebroplasty (PVP)",
        Kind.BINARY,
        1.0,
        0.55,
        "[27] no consensus which has more re-fractures; Zheng 2025 not significant",
        Evidence.META_ANALYSIS,
    ),
    Factor(
        "early-surgery",
        "Surgery within 4 weeks of the fracture",
        Kind.BINARY,
        0.5,
        0.50,
        "[40] early surgery: about 50 % lower two-year re-fracture risk (thoracic OVCF); He 2021 late vs early "
        "HR 2.415",
        Evidence.ARTICLE,
        note="Early is taken as within 28 days of the fracture's onset.",
    ),
    Factor(
        "sarcopenia",
        "Sarcopenia",
        Kind.BINARY,
        2.78,
        0.725,
        "[19] present in 72.5 % of OVCF patients; re-fracture risk 2.78 times that without",
        Evidence.ARTICLE,
        note="Nguyen 2025 pools OR 2.92 (14 studies); the article's 2.78 is followed.",
    ),
    Factor(
        "prior-vertebral-fracture",
        "Earlier osteoporotic vertebral fracture",
        Kind.BINARY,
        2.55,
        0.20,
        "[19] meta-analysis of more than 7,000 patients: risk 2.55 times",
        Evidence.ARTICLE,
    ),
    Factor(
        "prior-nonvertebral-fracture",
        "Earlier non-vertebral fragility fracture",
        Kind.BINARY,
        1.93,
        0.15,
        "[22] an independent risk factor after PVP; OR 1.93 (PMC11297947, 674 patients)",
        Evidence.STUDY,
    ),
    Factor(
        "type2-diabetes",
        "Type 2 diabetes",
        Kind.BINARY,
        1.5,
        0.20,
        "[3] [15] a risk factor even with normal or high BMD (no size stated); not significant in the Asian "
        "pool (Zheng 2025)",
        Evidence.ASSUMPTION,
    ),
    Factor(
        "sglt2-inhibitor",
        "SGLT-2 inhibitor around the fracture (type 2 diabetes)",
        Kind.BINARY,
        1.3,
        0.03,
        "[16] higher vertebral fracture risk in the six months after the first spinal fracture (no size stated)",
        Evidence.ASSUMPTION,
    ),
    Factor(
        "chronic-kidney-disease",
        "Chronic kidney disease",
        Kind.CATEGORY,
        1.0,
        0.0,
        "[17] [18] higher risk, highest in advanced CKD",
        Evidence.STUDY,
        categories=(
            Category("none", 1.0, 0.70, "reference (stage 1-2 counts as none)"),
            Category("stage-3", 1.77, 0.25, "assumption: half the log-odds of advanced CKD"),
            Category("stage-4-5", 3.12, 0.05, "Qi 2025 (560 PVP) CKD aOR 3.12 (1.61-6.06)"),
        ),
    ),
    Factor(
        "glucocorticoids",
        "Systemic glucocorticoids",
        Kind.BINARY,
        3.94,
        0.07,
        "Liu 2025 pooled adjusted OR 3.94 (2.16-7.21) for steroid use",
        Evidence.META_ANALYSIS,
    ),
    Factor(
        "osteoporosis-treatment",
        "Anti-osteoporosis treatment",
        Kind.CATEGORY,
        1.0,
        0.0,
        "[23] [24] treatment lowers re-fracture risk; [8] [26] stopping denosumab raises it",
        Evidence.META_ANALYSIS,
        categories=(
            Category("none", 1.0, 0.78, "reference"),
            Category(
                "treated",
                1 / 2.93,
                0.20,
                "Liu 2025: no anti-osteoporosis treatment, pooled adjusted OR 2.93 (2.14-4.01)",
            ),
            Category(
                "denosumab-stopped",
                3.91 / 2.93,
                0.02,
                "Lyu 2020: vertebral fracture HR 3.91 (1.62-9.45) with a dose more than 16 weeks late, "
                "against on-time treatment; [8] 10.3 % spinal fractures within 2 years of stopping",
            ),
        ),
    ),
    Factor(
        "p1np-ctx-ratio",
        "Serum P1NP / beta-CTX ratio",
        Kind.SHOWN,
        1.0,
        0.0,
        "[38] a high ratio is associated with re-fracture; no threshold or size published",
        Evidence.NOT_SCORED,
    ),
    Factor(
        "paraspinal-fat-fraction",
        "Paraspinal muscle fat fraction",
        Kind.SHOWN,
        1.0,
        0.0,
        "[21] [22] fat infiltration associated with fracture severity and risk; no size published",
        Evidence.NOT_SCORED,
    ),
)

FACTOR_BY_CODE: Final = {factor.code: factor for factor in FACTORS}

# Inputs whose absence the care plan asks to fill: bone density by DXA and by CT.
KEY_INPUTS: Final = ("dxa-t-score", "vertebral-hu")
