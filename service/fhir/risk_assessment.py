"""The RiskAssessment of an assessment, exactly as docs/sources/contract.md says, built as a dict (validated in
tests)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import date
from typing import Any, Final

from service.domain import risk_parameters as P
from service.domain.assessment import Assessment
from service.domain.risk_model import Contribution, RiskEstimate
from service.fhir import systems as S

__all__ = [
    "CONTRIBUTION_EXTENSION",
    "MISSING_EXTENSION",
    "RANGE_EXTENSION",
    "build_risk_assessment",
    "in_sentence",
    "percent",
    "range_text",
    "significant",
]

CONTRIBUTION_EXTENSION: Final = f"{S.CANONICAL_BASE}/StructureDefinition/risk-factor-contribution"
RANGE_EXTENSION: Final = f"{S.CANONICAL_BASE}/StructureDefinition/probability-range-unknown-inputs"
MISSING_EXTENSION: Final = f"{S.CANONICAL_BASE}/StructureDefinition/missing-input"
RISK_MODEL_SYSTEM: Final = f"{S.CANONICAL_BASE}/CodeSystem/risk-model"
_QUALITATIVE: Final = {"low": "Low likelihood", "moderate": "Moderate likelihood", "high": "High likelihood"}
OUTCOME_TEXT: Final = "New or recurrent vertebral fracture within 2 years after the vertebral augmentation"


def _decimal(value: float, places: int = 4) -> float:
    return round(value, places) + 0.0  # + 0.0 turns -0.0 into 0.0


def significant(value: float, figures: int = 2) -> float:
    """A probability to ``figures`` significant figures, never rounded to 0 (nor to 1): 0.000123 -> 0.00012.

    Two figures: the model is not more precise than that, and a clinician reads 0.15, not 0.1487."""
    if not value > 0:
        return 0.0
    rounded = float(f"{min(value, 1.0):.{figures}g}")
    return min(rounded, 1.0 - 10.0 ** -(figures + 1)) if value < 1.0 else 1.0


def _years_later(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _contribution_extension(item: Contribution) -> dict[str, Any]:
    value = str(item.value).lower() if isinstance(item.value, bool) else str(item.value)
    return {
        "url": CONTRIBUTION_EXTENSION,
        "extension": [
            {"url": "factor", "valueCoding": {"system": S.RISK_FACTOR, "code": item.code}},
            {"url": "value", "valueString": value},
            {"url": "logOdds", "valueDecimal": _decimal(item.log_odds)},
            {"url": "oddsRatio", "valueDecimal": _decimal(item.odds_ratio)},
        ],
    }


def percent(value: float) -> str:
    """A probability as a clinician reads it: whole percent, two significant figures below 10 %, never 0 %."""
    if value <= 0.0:
        return "0 %"
    if value < 0.001:
        return "under 0.1 %"
    if value < 0.095:
        return f"{significant(value) * 100:.2g} %"
    if value > 0.995:
        return "over 99 %"
    return f"{value * 100:.0f} %"


def _describe(item: Contribution, details: Mapping[str, str]) -> str:
    value = {True: "yes", False: "no"}.get(item.value, str(item.value)) if isinstance(item.value, bool) else None
    detail = details.get(item.code)
    shown = ", ".join(part for part in (value, detail) if part) or str(item.value)
    return f"{item.label}: {shown} ×{item.odds_ratio:.2f}"


def _top_factors(assessment: Assessment) -> str:
    raising = sorted(
        (c for c in assessment.estimate.contributions if c.known and c.log_odds >= 0.01), key=lambda c: -c.log_odds
    )[:3]
    if not raising:
        return ""
    return "Main factors raising it: " + "; ".join(c.label for c in raising) + ". "


def explanation(assessment: Assessment) -> str:
    """The estimate and its reasons in plain words (RiskAssessment.note and the narrative)."""
    result = assessment.estimate
    scored = [c for c in result.contributions if c.known and abs(c.log_odds) >= 0.01]
    raising = sorted((c for c in scored if c.log_odds > 0), key=lambda c: -c.log_odds)
    lowering = sorted((c for c in scored if c.log_odds < 0), key=lambda c: c.log_odds)
    details = assessment.features.details
    lines = [
        f"Estimated risk of a {OUTCOME_TEXT[0].lower()}{OUTCOME_TEXT[1:]}: {percent(result.probability)} "
        f"({result.band}); the population baseline is {percent(P.BASELINE_RISK)}.",
    ]
    if result.missing:
        lines.append(range_text(result) + ".")
    if result.bounded is not None:
        lines.append(
            f"The model gives {'less' if result.bounded == 'floor' else 'more'}; shown at its clinical "
            f"{result.bounded} until the hospital's own outcomes recalibrate it."
        )
    if raising:
        lines.append("Raising it: " + "; ".join(_describe(c, details) for c in raising) + ".")
    if lowering:
        lines.append("Lowering it: " + "; ".join(_describe(c, details) for c in lowering) + ".")
    if result.missing:
        labels = [P.FACTOR_BY_CODE[code].label for code in result.missing]
        lines.append("Not in the record (averaged over a reference cohort): " + "; ".join(labels) + ".")
    if result.calibration is not None:
        lines.append(_calibration_text(result) + ".")
    lines.append(
        "Multipliers (×) are odds ratios against a patient at population values. Decision support, not a diagnosis."
    )
    return " ".join(lines)


def in_sentence(label: str) -> str:
    """A factor's label inside a sentence: "Sarcopenia" -> "sarcopenia", but "CT Hounsfield units" stays."""
    return label if label[:2].isupper() else label[:1].lower() + label[1:]


def range_text(result: RiskEstimate) -> str:
    """The range over the unknown inputs and what would narrow it, in plain words (note, page and CDS card)."""
    text = (
        f"With {len(result.missing)} input{'s' if len(result.missing) != 1 else ''} unknown, 8 in 10 patients like "
        f"this one lie between {percent(result.low)} and {percent(result.high)}"
    )
    if result.narrowing:
        labels = [in_sentence(P.FACTOR_BY_CODE[code].label) for code in result.narrowing]
        text += "; knowing " + " or ".join(labels) + " would narrow it most"
    return text


def _calibration_text(result: RiskEstimate) -> str:
    """Which local recalibration made the figure (the literature model alone says nothing here)."""
    cal = result.calibration
    assert cal is not None
    return (
        f"Recalibrated to this hospital's outcomes ({cal.version}: log-odds {cal.intercept:+.3f} + "
        f"{cal.slope:.3f} × the literature model's, fitted on {cal.n} patients with {cal.events} events)"
    )


def build_risk_assessment(assessment_id: str, assessment: Assessment) -> dict[str, Any]:
    """The RiskAssessment resource for a stored assessment.

    Args:
        assessment_id: the assessment's id (an opaque UUID), used as resource id and identifier.
        assessment: the assessment.

    Returns:
        A FHIR R4 RiskAssessment as a dict; probabilityDecimal is a fraction between 0 and 1 (docs/sources/contract.md).
    """
    result = assessment.estimate
    index = assessment.features.index
    assert index is not None
    basis = sorted({ref for refs in assessment.features.sources.values() for ref in refs} | set(index.sources))
    prediction: dict[str, Any] = {
        "outcome": {
            "coding": [{"system": S.SNOMED, "code": "240198002", "display": "Osteoporotic vertebral collapse"}],
            "text": OUTCOME_TEXT,
        },
        # Two significant figures, never 0: ras-2 holds (a decimal <= 1, filled).
        "probabilityDecimal": significant(result.probability),
        "qualitativeRisk": {
            "coding": [{"system": S.RISK_PROBABILITY, "code": result.band, "display": _QUALITATIVE[result.band]}],
        },
        "whenPeriod": {"start": index.day.isoformat(), "end": _years_later(index.day, P.HORIZON_YEARS).isoformat()},
        "extension": [
            {
                "url": RANGE_EXTENSION,
                # low and high: the 10th and 90th percentiles of the risk with the unknown inputs drawn from the
                # reference cohort; narrowedBy: the unknown inputs that would narrow the range most.
                "extension": [
                    {"url": "low", "valueDecimal": significant(result.low)},
                    {"url": "high", "valueDecimal": significant(result.high)},
                ]
                + [
                    {"url": "narrowedBy", "valueCoding": {"system": S.RISK_FACTOR, "code": code}}
                    for code in result.narrowing
                ],
            }
        ],
    }
    words = explanation(assessment)
    summary = (
        f"Re-fracture risk within {P.HORIZON_YEARS} years after the vertebral augmentation of "
        f"{index.day.isoformat()}: {percent(result.probability)} ({result.band}). {_top_factors(assessment)}"
        "The note explains every factor. Decision support, not a diagnosis."
    )
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": assessment_id,
        # A short narrative, as dom-6 asks, for EHRs that show only the narrative; the note has the full text.
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{html.escape(summary)}</p></div>',
        },
        "identifier": [{"system": f"{S.SID_BASE}/risk-assessment", "value": assessment_id}],
        "status": "final",
        "subject": {"reference": f"Patient/{assessment.patient_id}"},
        "occurrenceDateTime": assessment.assessed_at.isoformat(timespec="seconds"),
        "method": {
            "coding": [
                {
                    "system": RISK_MODEL_SYSTEM,
                    "code": result.model,
                    "version": result.version,
                    "display": "refracture re-fracture risk after vertebral augmentation",
                }
            ],
            "text": f"{result.model} version {result.version}"
            + (f"; {_calibration_text(result)}" if result.calibration is not None else ""),
        },
        "code": {"text": "Re-fracture risk after vertebral augmentation"},
        "basis": [{"reference": ref} for ref in basis] or [{"reference": f"Patient/{assessment.patient_id}"}],
        "prediction": [prediction],
        "note": [{"text": words}],
        # Known factors carry their contribution; unknown ones contribute nothing and are listed as missing.
        "extension": [_contribution_extension(c) for c in result.contributions if c.known]
        + [
            {"url": MISSING_EXTENSION, "valueCoding": {"system": S.RISK_FACTOR, "code": code}}
            for code in result.missing
        ],
    }
    return resource
