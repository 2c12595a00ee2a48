"""The project's own CodeSystems, served at its FHIR base so an EHR can load them (docs/sources/contract.md,
'Names')."""

from __future__ import annotations

from typing import Any, Final

from service.domain import risk_parameters as RP
from service.domain.alert_types import ALERT_TYPES
from service.fhir import systems as S
from service.fhir.cds_hooks_cards import OVERRIDE_REASONS, OVERRIDE_SYSTEM
from service.fhir.levels import ALL_LEVELS
from service.fhir.terminology import MEASURES

__all__ = ["CODE_SYSTEMS", "code_system"]

VERSION: Final = "0.1.0"


def _code_system(cs_id: str, url: str, title: str, description: str, concepts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "id": cs_id,
        "url": url,
        "version": VERSION,
        "name": "".join(part.capitalize() for part in cs_id.split("-")),
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": "refracture",
        "description": description,
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "concept": concepts,
    }


def _region(level: str) -> str:
    return {"C": "cervical", "T": "thoracic", "L": "lumbar", "S": "sacral"}[level[0]]


CODE_SYSTEMS: Final[dict[str, dict[str, Any]]] = {
    "risk-factor": _code_system(
        "risk-factor",
        S.RISK_FACTOR,
        "refracture risk factors",
        "The factors of refracture's re-fracture model, for the explanations in RiskAssessment (see the model card).",
        [{"code": f.code, "display": f.label, "definition": f"{f.label}. Source: {f.source}"} for f in RP.FACTORS],
    ),
    "risk-model": _code_system(
        "risk-model",
        f"{S.CANONICAL_BASE}/CodeSystem/risk-model",
        "refracture risk models",
        "The models refracture assesses with, named in RiskAssessment.method (versions in Coding.version).",
        [
            {
                "code": RP.MODEL_NAME,
                "display": "refracture re-fracture risk after vertebral augmentation",
                "definition": "Probability of a new or recurrent vertebral fracture within 2 years after PVP/PKP "
                "for an osteoporotic vertebral compression fracture.",
            }
        ],
    ),
    "measure": _code_system(
        "measure",
        S.MEASURE,
        "refracture measures",
        "Imaging, surgical and clinical measures with no LOINC code that refracture's risk model reads.",
        [{"code": code, "display": code.replace("-", " "), "definition": text} for code, (_, text) in MEASURES.items()],
    ),
    "vertebral-level": _code_system(
        "vertebral-level",
        S.VERTEBRAL_LEVEL,
        "Vertebral levels",
        "Vertebral levels C1-C7, T1-T12, L1-L5 and S1, for bodySite.",
        [
            {
                "code": level,
                "display": f"{level} vertebra",
                "definition": f"The {_region(level)} vertebra {level}.",
            }
            for level in ALL_LEVELS
        ],
    ),
    "alert-type": _code_system(
        "alert-type",
        S.ALERT_TYPE,
        "refracture alerts",
        "Alerts raised after an osteoporotic vertebral compression fracture and its augmentation.",
        [
            {"code": code.value, "display": info.title, "definition": info.definition}
            for code, info in ALERT_TYPES.items()
        ],
    ),
    "cds-override-reason": _code_system(
        "cds-override-reason",
        OVERRIDE_SYSTEM,
        "refracture CDS Hooks override reasons",
        "Why a clinician overrode a refracture CDS Hooks card (Card.overrideReasons, sent back in feedback).",
        [{"code": code, "display": text, "definition": f"{text}."} for code, text in OVERRIDE_REASONS.items()],
    ),
}


def code_system(cs_id: str) -> dict[str, Any] | None:
    """A served CodeSystem by id."""
    return CODE_SYSTEMS.get(cs_id)
