"""Clinical facts: what the EHR's resources say about a patient, typed and in canonical units."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any


class FactKind(StrEnum):
    """What a fact is about. Measure names follow the project's `measure` CodeSystem (docs/sources/contract.md)."""

    # Patient
    BIRTH_DATE = "birth-date"
    SEX = "sex"
    DECEASED = "deceased"
    # Bone density
    DXA_T_SCORE = "dxa-t-score"
    DXA_Z_SCORE = "dxa-z-score"
    DXA_BMD = "dxa-bmd"
    # Imaging and surgical measures
    VERTEBRAL_HU = "vertebral-hu"
    CEMENT_VOLUME_RATIO = "cement-volume-ratio"
    CEMENT_LEAKAGE = "cement-leakage"
    CEMENT_ENDPLATE_CONTACT = "cement-endplate-contact"
    VERTEBRAL_COMPRESSION_RATIO = "vertebral-compression-ratio"
    COBB_ANGLE = "cobb-angle"
    KYPHOSIS_CORRECTION = "kyphosis-correction"
    PARASPINAL_FAT_FRACTION = "paraspinal-fat-fraction"
    SARCOPENIA_FINDING = "sarcopenia"
    # Laboratory and body measures
    P1NP = "p1np"
    BETA_CTX = "beta-ctx"
    P1NP_CTX_RATIO = "p1np-ctx-ratio"
    EGFR = "egfr"
    CREATININE = "creatinine"
    HBA1C = "hba1c"
    VITAMIN_D = "vitamin-d"
    CALCIUM = "calcium"
    BODY_WEIGHT = "body-weight"
    BODY_HEIGHT = "body-height"
    BMI = "bmi"
    # Procedures
    VERTEBRAL_AUGMENTATION = "vertebral-augmentation"
    BONE_DENSITY_SCAN = "bone-density-scan"
    # Conditions
    VERTEBRAL_FRACTURE = "vertebral-fracture"
    OSTEOPOROTIC_FRACTURE = "osteoporotic-fracture"  # fragility fracture, site not coded
    NON_VERTEBRAL_FRACTURE = "non-vertebral-fracture"
    FRACTURE_HISTORY = "fracture-history"
    OSTEOPOROSIS = "osteoporosis"
    TYPE2_DIABETES = "type2-diabetes"
    CHRONIC_KIDNEY_DISEASE = "chronic-kidney-disease"
    SARCOPENIA_DIAGNOSIS = "sarcopenia-diagnosis"
    FALLS = "falls"
    SCOLIOSIS = "scoliosis"
    GLUCOCORTICOID_LONG_TERM = "glucocorticoid-long-term-use"
    # Myeloma, bone metastasis or a neoplastic pathological fracture: the fracture is not osteoporotic
    # (docs/sources/alerts.md, 'Index event'); attrs["type"] says which.
    MALIGNANCY = "malignancy"
    # Medicines (the drug is in attrs["drug"])
    MEDICATION = "medication"


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing the record says about a patient.

    Numeric values are in the canonical unit of their kind (``unit``); ``effective_date`` is the calendar
    date as the EHR wrote it, which is what day-counting rules need; ``attrs`` carries the qualifiers
    (site, vertebral levels, drug, dose, status, …). Facts read back from storage also know their source
    resource and when refracture learned them, so an assessment "as of" a moment uses only what was known then.
    """

    kind: FactKind
    value_num: float | None = None
    value_text: str | None = None
    unit: str | None = None
    effective_date: date | None = None
    effective_at: datetime | None = None
    end_date: date | None = None
    status: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None  # the resource it came from, "Type/id", once stored
    recorded_at: datetime | None = None  # when refracture learned it, once stored
