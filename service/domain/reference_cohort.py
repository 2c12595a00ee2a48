"""A synthetic reference cohort of patients after PVP/PKP for an osteoporotic vertebral compression fracture (pure,
seeded): what the risk model is centred and calibrated on, what it averages an unknown input over, and what the
model card's figures are computed on.

Every member has every scored input known. Prevalences and distributions are the ones the evidence reports for
PVP/PKP cohorts where it reports them (docs/sources/evidence.md, docs/sources/clinical.md), otherwise a stated
assumption; a few inputs are drawn jointly where they are known to go together (CT HU and DXA T-score measure the
same bone; the stiffness gradient needs a low adjacent HU; SGLT-2 inhibitors are taken in type 2 diabetes; chronic
kidney disease rises with age). The same seed always gives the same cohort, so the model's intercept, its ranges and
the model card are reproducible.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cache
from typing import Final

__all__ = ["COHORT_SEED", "COHORT_SIZE", "DISTRIBUTIONS", "Distribution", "reference_cohort"]

COHORT_SEED: Final = 20261205
# Large enough for stable subgroup means in the model card, small enough that averaging a patient's unknown inputs
# over every member stays well under a millisecond per assessment.
COHORT_SIZE: Final = 800


@dataclass(frozen=True, slots=True)
class Distribution:
    """How one input is distributed in the reference cohort, and where that comes from (shown in the model card)."""

    code: str
    description: str
    source: str


DISTRIBUTIONS: Final[tuple[Distribution, ...]] = (
    Distribution(
        "age",
        "normal, mean 72, SD 8, within 55-95 years",
        "PVP/PKP cohorts in docs/sources/clinical.md §a3 (assumption)",
    ),
    Distribution("female-sex", "78 % women", "OVCF is mostly a disease of older women (assumption)"),
    Distribution(
        "dxa-t-score",
        "mean -2.8, SD 0.9 (within -5 to +1), correlated 0.5 with vertebral HU",
        "Dai 2022 (refracture WMD -0.38 around an osteoporotic mean); the correlation is an assumption",
    ),
    Distribution(
        "vertebral-hu",
        "mean 75, SD 25 (within 15-200 HU)",
        "PMC11297947 and Sci Rep 2025: about 46 HU with and 76-80 HU without re-fracture",
    ),
    Distribution(
        "hu-gradient",
        "25 % when the treated vertebra's HU is below 70, 5 % otherwise (about 12 % overall)",
        "[12] the rule needs an adjacent HU below 66.9 (assumption)",
    ),
    Distribution("cobb-over-10", "15 %", "degenerative scoliosis in older adults (assumption)"),
    Distribution("kyphosis-correction", "normal, mean 5, SD 4 degrees, at least 0", "assumption"),
    Distribution("compression-38", "40 %", "assumption"),
    Distribution("cement-volume-high", "35 %", "[29] 245 patients (assumption for the share above 13.82 %)"),
    Distribution("cement-leakage", "none 70 %, other 20 %, disc 10 %", "leakage is common after PVP (assumption)"),
    Distribution("cement-both-endplates", "50 %", "[31] PMC7427078 (assumption for the share)"),
    Distribution(
        "thoracolumbar-junction",
        "55 %",
        "T11-L2 is the commonest OVCF site; about half of treated levels (assumption)",
    ),
    Distribution("multiple-fractures", "25 %", "VERTOS II baseline number of VCFs (assumption for the share)"),
    Distribution("kyphoplasty", "45 %", "Chen 2019: 240 PKP of 650"),
    Distribution("early-surgery", "45 %", "assumption"),
    Distribution("sarcopenia", "72.5 %, more often with age", "[19] 72.5 % of OVCF patients"),
    Distribution("prior-vertebral-fracture", "20 %", "assumption (a prevalent fracture before the index one)"),
    Distribution("prior-nonvertebral-fracture", "15 %", "assumption"),
    Distribution("type2-diabetes", "20 %", "assumption"),
    Distribution("sglt2-inhibitor", "15 % of patients with type 2 diabetes (3 % overall)", "assumption"),
    Distribution(
        "chronic-kidney-disease",
        "stage 3: 25 %, stage 4-5: 4 %, more often with age",
        "assumption (eGFR below 60 is common after 70)",
    ),
    Distribution("glucocorticoids", "6 %", "assumption"),
    Distribution(
        "osteoporosis-treatment",
        "none 78 %, treated 20 %, denosumab stopped 2 %",
        "treatment gap: 10.1 % after a VCF, 27.7 % after any fragility fracture (docs/sources/clinical.md §a2)",
    ),
)

Member = dict[str, float | bool | str]


class _Draws:
    """Reproducible uniform and normal draws from a counter hashed with the seed: the same numbers on every machine
    and Python version, and no state outside the object (the domain stays pure)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._counter = 0

    def random(self) -> float:
        """A uniform draw in [0, 1)."""
        self._counter += 1
        digest = hashlib.sha256(f"{self._seed}:{self._counter}".encode()).digest()
        return int.from_bytes(digest[:7], "big") / 2**56

    def gauss(self, mean: float = 0.0, sd: float = 1.0) -> float:
        """A normal draw (Box-Muller)."""
        u = 1.0 - self.random()  # in (0, 1]: the log is finite
        return mean + sd * math.sqrt(-2.0 * math.log(u)) * math.cos(2.0 * math.pi * self.random())


def _normal(rng: _Draws, mean: float, sd: float, low: float, high: float) -> float:
    return min(max(rng.gauss(mean, sd), low), high)


def _member(rng: _Draws) -> Member:
    age = round(_normal(rng, 72.0, 8.0, 55.0, 95.0))
    # Bone quality: one latent z; HU and T-score each correlate 0.5 with the other through it.
    bone = rng.gauss(0.0, 1.0)
    root = math.sqrt(0.5)
    hu = 75.0 + 25.0 * (root * bone + root * rng.gauss(0.0, 1.0))
    hu = round(min(max(hu, 15.0), 200.0))
    t_score = -2.8 + 0.9 * (root * bone + root * rng.gauss(0.0, 1.0))
    t_score = round(min(max(t_score, -5.0), 1.0), 1)
    diabetes = rng.random() < 0.20
    older = age >= 75
    kidney_draw = rng.random()
    stage4 = 0.06 if older else 0.025
    stage3 = 0.33 if older else 0.19
    kidney = "stage-4-5" if kidney_draw < stage4 else "stage-3" if kidney_draw < stage4 + stage3 else "none"
    leak = rng.random()
    treatment_draw = rng.random()
    return {
        "age": age,
        "female-sex": rng.random() < 0.78,
        "dxa-t-score": t_score,
        "vertebral-hu": float(hu),
        "hu-gradient": rng.random() < (0.25 if hu < 70 else 0.05),
        "cobb-over-10": rng.random() < 0.15,
        "kyphosis-correction": round(_normal(rng, 5.0, 4.0, 0.0, 30.0)),
        "compression-38": rng.random() < 0.40,
        "cement-volume-high": rng.random() < 0.35,
        "cement-leakage": "disc" if leak < 0.10 else "other" if leak < 0.30 else "none",
        "cement-both-endplates": rng.random() < 0.50,
        "thoracolumbar-junction": rng.random() < 0.55,
        "multiple-fractures": rng.random() < 0.25,
        "kyphoplasty": rng.random() < 0.45,
        "early-surgery": rng.random() < 0.45,
        "sarcopenia": rng.random() < (0.80 if older else 0.66),
        "prior-vertebral-fracture": rng.random() < 0.20,
        "prior-nonvertebral-fracture": rng.random() < 0.15,
        "type2-diabetes": diabetes,
        "sglt2-inhibitor": diabetes and rng.random() < 0.15,
        "chronic-kidney-disease": kidney,
        "glucocorticoids": rng.random() < 0.06,
        "osteoporosis-treatment": "none"
        if treatment_draw < 0.78
        else "treated"
        if treatment_draw < 0.98
        else "denosumab-stopped",
    }


@cache
def reference_cohort(size: int = COHORT_SIZE, seed: int = COHORT_SEED) -> tuple[Member, ...]:
    """The reference cohort: ``size`` members, the same for the same seed."""
    rng = _Draws(seed)
    return tuple(_member(rng) for _ in range(size))
