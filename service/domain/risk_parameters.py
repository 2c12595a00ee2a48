"""The re-fracture model's parameters: one table, each row with its value and its source (ADR 0005).

Effects are odds ratios (OR). The article's "times the risk" figures come from case-control and retrospective
designs with 10-20 % event rates, where they are odds ratios in all but name. Each row keeps the published OR and
the shrinkage applied to it: literature ORs from different studies, multiplied as if independent, over-disperse a
model (the first version's log-odds had an SD of 2.2 and an implied C-statistic of 0.88, where published models reach
0.52-0.74 externally), so every OR the seed article does not state is shrunk towards 1 by a calibration slope
(SHRINKAGE) on the log-odds scale. The article's own numbers (sarcopenia x2.78, prior vertebral fracture x2.55,
5.8 % per HU, halved risk with early surgery) are kept as stated: docs/sources/evidence.md's rule 3 asks the model to
reproduce them, holding everything else equal, at a patient of typical risk.

Factors that describe the same thing form a group whose effect is bounded: bone quality (CT HU of the treated
vertebra and the DXA T-score) and cement mechanics (volume, leakage, endplate contact, stiffness gradient).

Sources: the review cited in docs/sources/evidence.md (its references in brackets) and the meta-analyses and studies in
docs/sources/clinical.md §a3-a4. "Assumption" marks an effect the article states without a size; its value is a
moderate OR chosen here, stated as such in the model card, for local recalibration to correct.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

MODEL_NAME: Final = "refracture-ovcf-2y"
# 2.0.0: calibrated absolute model (shrunk ORs, bounded groups, mean over a reference cohort, floor and ceiling).
MODEL_VERSION: Final = "2.0.0"
HORIZON_YEARS: Final = 2

# Baseline: new or recurrent vertebral fracture within 2 years after PVP/PKP. 2-year cohorts report 10.6 % and
# 12.2 %, pooled any-follow-up estimates 13-18 % (docs/sources/clinical.md §a3); docs/sources/evidence.md: "roughly
# 10-18 %". 13 % sits in the middle. The intercept is set so that the MEAN prediction over the reference cohort is this
# baseline.
BASELINE_RISK: Final = 0.13
BASELINE_SOURCE: Final = (
    "2-year incidence 10.6 % (BMC MSD 2023, 529 PKP) and 12.2 % (BMC MSD 2021, 403 PVP/PKP); pooled 13.4-18 % "
    "(Dai 2022, Liu 2025); docs/sources/evidence.md 'roughly 10-18 %'"
)

# The calibration slope applied to every literature OR the article does not state itself (log OR x 0.7). Published
# re-fracture models show slopes of about 0.7 even in their authors' own test sets (Qi 2025 nomogram: 1.000 in
# training, 0.697 in the test set) and lose most of their discrimination externally (Dai 2024: AUC 0.52-0.74).
SHRINKAGE: Final = 0.5
SHRINKAGE_SOURCE: Final = (
    "Qi 2025 nomogram (PMC12592060) calibration slope 0.697 in its own test set; external AUC 0.52-0.74 of four "
    "published models (Dai 2024, Eur Spine J)"
)

# Until a local calibration exists the probability is kept within a clinical floor and ceiling. Floor: spinal
# fractures in 2.2 % of patients while on denosumab (Burckhardt 2021, 797 patients) -- nobody after a vertebral
# augmentation is at lower risk than a treated osteoporosis cohort. Ceiling: 53 % new vertebral fractures over
# 10 years after PVP (Aregger 2024) and 33.3 % over follow-up in elderly patients with comorbidity (Qi 2024, the
# highest published cohort figure): a 2-year risk above 60 % is beyond any published cohort.
FLOOR: Final = 0.02
CEILING: Final = 0.60
FLOOR_SOURCE: Final = "2.2 % vertebral fractures on denosumab (Burckhardt 2021, JBMR 36:1717)"
CEILING_SOURCE: Final = (
    "53 % new vertebral fractures in 10 years after PVP (Aregger 2024); 33.3 % in elderly with comorbidity "
    "(Qi 2024, JOSR 19:556)"
)

# The range of an estimate: these percentiles of the predicted risk with the unknown inputs drawn jointly from the
# reference cohort.
RANGE_PERCENTILES: Final = (0.10, 0.90)

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


# Single studies (often the lower bound of an over-fitted model's interval) and sizes assumed here are shrunk more
# than pooled adjusted ORs: their own uncertainty comes on top of the optimism every published model shows.
SHRINKAGE_WEAK: Final = 0.35
SHRINKAGE_BY_EVIDENCE: Final = {
    Evidence.ARTICLE: 1.0,  # the article's numbers are reproduced as stated (docs/sources/evidence.md rule 3)
    Evidence.META_ANALYSIS: SHRINKAGE,
    Evidence.STUDY: SHRINKAGE_WEAK,
    Evidence.ASSUMPTION: SHRINKAGE_WEAK,
    Evidence.NOT_SCORED: 0.0,
}


class Kind(StrEnum):
    """How a factor's input becomes log-odds."""

    BINARY = "binary"  # present vs absent
    PER_UNIT = "per-unit"  # OR per unit increase, within [clamp_low, clamp_high]
    CATEGORY = "category"  # one OR per category against the reference category
    SHOWN = "shown"  # carried for the clinician, no effect


class Group(StrEnum):
    """Factors that measure the same thing; the group's effect is bounded (GROUP_BOUNDS)."""

    BONE = "bone quality"
    CEMENT = "cement mechanics"


# Bone quality: the group's log-odds are held within +-BONE_BOUND: the article's 5.8 % per HU applies from about 63
# to 87 HU around the typical 75 HU and not beyond (x2 either way). The pooled OR 0.96 per HU (Liu 2025), shrunk
# (0.98 per HU), gives about x4 across the cohort's inter-decile HU range (45-105 HU); single studies find cut-offs
# near 65 HU. A linear 5.8 % per HU from 20 to 150 HU would give x1,500. When both the vertebral HU and a DXA
# T-score are known, the T-score counts at half its weight (both measure the same bone; the HU is the treated
# vertebra's own).
BONE_BOUND: Final = math.log(2.0)
T_SCORE_WEIGHT_WITH_HU: Final = 0.5
# Cement mechanics: the sum of volume, leakage, endplate contact and stiffness gradient, held within x0.75..x2.5.
CEMENT_BOUNDS: Final = (math.log(0.8), math.log(2.0))
# No stiffness-gradient effect when the treated vertebra's own HU is already below the rule's adjacent threshold:
# the bone-quality group counts that low bone.
GRADIENT_SUPPRESSED_BELOW_HU: Final = 66.9


@dataclass(frozen=True, slots=True)
class Category:
    """One value of a categorical factor: its published OR against the factor's reference value."""

    value: str
    odds_ratio: float
    source: str


@dataclass(frozen=True, slots=True)
class Factor:
    """One row of the parameter table."""

    code: str  # the code in https://refracture.dev/fhir/CodeSystem/risk-factor
    label: str
    kind: Kind
    odds_ratio: float  # the published (or assumed) OR: BINARY present vs absent, PER_UNIT per unit increase
    source: str
    evidence: Evidence
    shrinkage: float | None = None  # the model uses log(OR) x shrinkage; None: by evidence (SHRINKAGE_BY_EVIDENCE)
    unit: str | None = None
    centre: float = 0.0  # PER_UNIT: the typical value (log-odds 0 of the factor's own term)
    clamp_low: float | None = None  # PER_UNIT: the effect is linear only within this range
    clamp_high: float | None = None
    categories: tuple[Category, ...] = ()
    group: Group | None = None
    note: str = ""

    @property
    def slope(self) -> float:
        """The shrinkage applied to the factor's log OR."""
        return self.shrinkage if self.shrinkage is not None else SHRINKAGE_BY_EVIDENCE[self.evidence]

    @property
    def beta(self) -> float:
        """The model's log-odds per unit (PER_UNIT) or for presence (BINARY), after shrinkage."""
        return math.log(self.odds_ratio) * self.slope

    @property
    def model_odds_ratio(self) -> float:
        """The OR the model applies (after shrinkage)."""
        return math.exp(self.beta)

    def category_beta(self, value: str) -> float | None:
        """The model's log-odds of a category against the reference, after shrinkage (None: not a category)."""
        category = next((c for c in self.categories if c.value == value), None)
        return None if category is None else math.log(category.odds_ratio) * self.slope


def _or_per_unit_lower(percent_per_unit_lower: float) -> float:
    # "Each 1-unit decrease … about 5.8 % increase" is an OR of 1.058 per unit down, so 1/1.058 per unit up.
    return 1.0 / (1.0 + percent_per_unit_lower / 100.0)


# Cement touching both endplates: recompression of the treated vertebra 5.2 % vs 16.5 % (RR 0.32, PMC7427078). That
# outcome is one part of "any new vertebral fracture": most new fractures are at adjacent or remote levels (one level
# away 21 %, two levels 10.6 % of 228 new fractures; Diagn Interv Radiol 2024). With re-collapse of the treated level
# taken as 30 % of new fractures (assumption), the effect on any new fracture is RR 0.7 + 0.3 x 0.32 = 0.80 (OR 0.78).
_ENDPLATE_SHARE_OF_EVENTS: Final = 0.30


def _rr_to_or(rr: float, p0: float = BASELINE_RISK) -> float:
    # Zhang & Yu 1998: OR = RR (1 - p0) / (1 - RR p0), p0 the risk without the factor.
    return rr * (1 - p0) / (1 - rr * p0)


_ENDPLATE_OR: Final = round(_rr_to_or(1 - _ENDPLATE_SHARE_OF_EVENTS * (1 - 5.2 / 16.5)), 2)
# Leakage counted once: Dai 2022's any-leakage OR 2.05 already contains disc leakage (OR 2.94, Liu 2025). With a third
# of leaks into the disc (reference cohort), non-disc leakage has log OR (log 2.05 - log 2.94 / 3) / (2 / 3).
_NON_DISC_LEAK_OR: Final = round(math.exp((math.log(2.05) - math.log(2.94) / 3) / (2 / 3)), 2)


FACTORS: Final[tuple[Factor, ...]] = (
    Factor(
        "age",
        "Age at the operation",
        Kind.PER_UNIT,
        1.02,
        "Liu 2025 (JOSR, 18 studies, 7,743 patients) pooled adjusted OR 1.09 (1.02-1.17), unit not reported; the "
        "lower bound is used per year; age an independent risk factor [13]",
        Evidence.META_ANALYSIS,
        unit="years",
        centre=72.0,
        clamp_low=50.0,
        clamp_high=95.0,
        note="The pooled OR's unit is not visible in the abstract; per year at its lower bound is the cautious "
        "reading.",
    ),
    Factor(
        "female-sex",
        "Female sex",
        Kind.BINARY,
        1.99,
        "Liu 2025 pooled adjusted OR 1.99 (1.50-2.64); independent risk factor after PVP [3]",
        Evidence.META_ANALYSIS,
    ),
    Factor(
        "dxa-t-score",
        "Lowest DXA T-score",
        Kind.PER_UNIT,
        0.74,
        "Liu 2025 pooled adjusted OR 0.74 (0.63-0.86) per unit of BMD; low BMD a key predictor [3] [6]",
        Evidence.META_ANALYSIS,
        unit="SD",
        centre=-2.8,
        clamp_low=-5.0,
        clamp_high=1.0,
        group=Group.BONE,
        note="Lowest of lumbar spine, total hip, femur and femoral neck within 2 years before the operation. "
        "Half weight when the vertebral HU is known too (same bone).",
    ),
    Factor(
        "vertebral-hu",
        "CT Hounsfield units of the treated vertebra before surgery",
        Kind.PER_UNIT,
        _or_per_unit_lower(5.8),
        "[11] 279 PVP patients: each 1 HU lower before surgery, about 5.8 % higher risk of re-fracture "
        "(Liu 2025 pools OR 0.96 per HU; single studies find cut-offs near 65 HU)",
        Evidence.ARTICLE,
        unit="[hnsf'U]",
        centre=75.0,
        clamp_low=20.0,
        clamp_high=150.0,
        group=Group.BONE,
        note="5.8 % per HU from about 63 to 87 HU around the typical 75 HU; the bone-quality bound holds it flat "
        "outside.",
    ),
    Factor(
        "hu-gradient",
        "Stiffness gradient: HU ratio augmented/adjacent > 15.18 with adjacent HU < 66.9",
        Kind.BINARY,
        2.0,
        "[12] the ratio above 15.18 together with adjacent-vertebra HU below 66.9 raises adjacent fracture risk "
        "markedly (no size stated)",
        Evidence.ASSUMPTION,
        group=Group.CEMENT,
        note="The ratio is the augmented vertebra's HU after surgery over the adjacent vertebra's HU. No effect when "
        "the treated vertebra's own HU is already below 66.9 (the bone-quality group counts it).",
    ),
    Factor(
        "cobb-over-10",
        "Coronal Cobb angle above 10 degrees (degenerative scoliosis)",
        Kind.BINARY,
        2.97,
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
        "[43] 495 PKP patients: re-fracture risk rose with the degree of correction (no size stated); Dai 2022 "
        "found the opposite direction",
        Evidence.ASSUMPTION,
        unit="deg",
        centre=5.0,
        clamp_low=0.0,
        clamp_high=30.0,
        note="The article's direction is followed; the evidence conflicts (Dai 2022), so the effect is small.",
    ),
    Factor(
        "compression-38",
        "Vertebral compression of 38.5 % or more before surgery",
        Kind.BINARY,
        1.5,
        "[33] compression of 38.5 % or more: more loss of restored height; more compression, more risk",
        Evidence.ASSUMPTION,
    ),
    Factor(
        "cement-volume-high",
        "Cement volume above 13.82 % of the vertebral body",
        Kind.BINARY,
        2.0,
        "[29] 245 patients: above 13.82 % the adjacent fracture risk rises significantly (no size stated); "
        "U-shaped dose-response [30]",
        Evidence.ASSUMPTION,
        group=Group.CEMENT,
        note="The low side of the U (too little cement) has no published threshold and is not scored.",
    ),
    Factor(
        "cement-leakage",
        "Cement leakage",
        Kind.CATEGORY,
        1.0,
        "[33] [34] leakage, especially into the disc, an independent risk factor",
        Evidence.META_ANALYSIS,
        categories=(
            Category("none", 1.0, "reference"),
            Category(
                "other",
                _NON_DISC_LEAK_OR,
                "leakage not into the disc: Dai 2022's any-leakage OR 2.05 (1.40-3.00) with the disc leaks' share "
                "(a third) taken out, so that leakage is counted once",
            ),
            Category("disc", 2.94, "Liu 2025 pooled adjusted OR 2.94 (1.64-5.28), leakage into the disc"),
        ),
        group=Group.CEMENT,
    ),
    Factor(
        "cement-both-endplates",
        "Cement touching both endplates",
        Kind.BINARY,
        _ENDPLATE_OR,
        "[31] fewer re-fractures with both endplates touched: re-collapse of the treated vertebra 5.2 % vs 16.5 % "
        "(PMC7427078, 137 patients), counted only for that share of new fractures (30 %, assumption)",
        Evidence.STUDY,
        group=Group.CEMENT,
        note="The crude OR 0.28 is for re-collapse of the treated level; most new fractures are at other levels.",
    ),
    Factor(
        "thoracolumbar-junction",
        "Treated level in T11-L2",
        Kind.BINARY,
        3.50,
        "[37] T11-L2 a high-risk zone for adjacent fracture; Liu 2025 pooled adjusted OR 3.50 (2.06-5.93)",
        Evidence.META_ANALYSIS,
        shrinkage=SHRINKAGE_WEAK,
        note="Not significant in an Asian pool (Zheng 2025): conflicting evidence, so shrunk like a single study.",
    ),
    Factor(
        "multiple-fractures",
        "Two or more fractured vertebrae at the first operation",
        Kind.BINARY,
        1.71,
        "[38] [39] risk rises with the number; Liu 2025 multiple vertebral fractures OR 1.71 (1.14-2.57)",
        Evidence.META_ANALYSIS,
    ),
    Factor(
        "kyphoplasty",
        "Kyphoplasty (PKP) rather than vertebroplasty (PVP)",
        Kind.BINARY,
        1.0,
        "[27] no consensus which has more re-fractures; Zheng 2025 not significant",
        Evidence.META_ANALYSIS,
    ),
    Factor(
        "early-surgery",
        "Surgery within 4 weeks of the fracture",
        Kind.BINARY,
        0.5,
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
        "[19] present in 72.5 % of OVCF patients; re-fracture risk 2.78 times that without",
        Evidence.ARTICLE,
        note="Nguyen 2025 pools OR 2.92 (14 studies); the article's 2.78 is followed.",
    ),
    Factor(
        "prior-vertebral-fracture",
        "Earlier osteoporotic vertebral fracture",
        Kind.BINARY,
        2.55,
        "[19] meta-analysis of more than 7,000 patients: risk 2.55 times (Liu 2025 pools 7.72 for any fracture "
        "history, a wide interval)",
        Evidence.ARTICLE,
    ),
    Factor(
        "prior-nonvertebral-fracture",
        "Earlier non-vertebral fragility fracture",
        Kind.BINARY,
        1.93,
        "[22] an independent risk factor after PVP; OR 1.93 (PMC11297947, 674 patients)",
        Evidence.STUDY,
    ),
    Factor(
        "type2-diabetes",
        "Type 2 diabetes",
        Kind.BINARY,
        1.5,
        "[3] [15] a risk factor even with normal or high BMD (no size stated); not significant in the Asian "
        "pool (Zheng 2025)",
        Evidence.ASSUMPTION,
    ),
    Factor(
        "sglt2-inhibitor",
        "SGLT-2 inhibitor around the fracture (type 2 diabetes)",
        Kind.BINARY,
        1.3,
        "[16] higher vertebral fracture risk in the six months after the first spinal fracture (no size stated)",
        Evidence.ASSUMPTION,
    ),
    Factor(
        "chronic-kidney-disease",
        "Chronic kidney disease",
        Kind.CATEGORY,
        1.0,
        "[17] [18] higher risk, highest in advanced CKD",
        Evidence.STUDY,
        categories=(
            Category("none", 1.0, "reference (stage 1-2 counts as none)"),
            Category("stage-3", 1.77, "assumption: half the log-odds of advanced CKD"),
            Category("stage-4-5", 3.12, "Qi 2025 (560 PVP) CKD aOR 3.12 (1.61-6.06)"),
        ),
    ),
    Factor(
        "glucocorticoids",
        "Systemic glucocorticoids",
        Kind.BINARY,
        3.94,
        "Liu 2025 pooled adjusted OR 3.94 (2.16-7.21) for steroid use",
        Evidence.META_ANALYSIS,
    ),
    Factor(
        "osteoporosis-treatment",
        "Anti-osteoporosis treatment",
        Kind.CATEGORY,
        1.0,
        "[23] [24] treatment lowers re-fracture risk; [8] [26] stopping denosumab raises it",
        Evidence.META_ANALYSIS,
        categories=(
            Category("none", 1.0, "reference"),
            Category(
                "treated",
                round(1 / 2.93, 3),
                "Liu 2025: no anti-osteoporosis treatment, pooled adjusted OR 2.93 (2.14-4.01)",
            ),
            Category(
                "denosumab-stopped",
                round(3.91 / 2.93, 3),
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
        "[38] a high ratio is associated with re-fracture; no threshold or size published",
        Evidence.NOT_SCORED,
    ),
    Factor(
        "paraspinal-fat-fraction",
        "Paraspinal muscle fat fraction",
        Kind.SHOWN,
        1.0,
        "[21] [22] fat infiltration associated with fracture severity and risk; no size published",
        Evidence.NOT_SCORED,
    ),
)

FACTOR_BY_CODE: Final = {factor.code: factor for factor in FACTORS}
SCORED: Final = tuple(factor for factor in FACTORS if factor.kind is not Kind.SHOWN)

# Inputs whose absence the care plan asks to fill: bone density by DXA and by CT.
KEY_INPUTS: Final = ("dxa-t-score", "vertebral-hu")
