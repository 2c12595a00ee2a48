"""The stored form of an assessment: its numbers and factors, compact, and the RiskAssessment rendered from them.

An assessment is stored as a few hundred bytes of JSON and its RiskAssessment (~10 kB of JSON) is built when it is
read or delivered: building and storing that resource for every patient was most of a rescore's time (issue 15,
docs/performance.md). Rendering gives the very resource ``build_risk_assessment`` gave at assessment time: every
number is kept at full precision, and the factors in the model's order (jsonb keeps no key order, so they are a
list). Rows stored before this form keep their resource as stored (migration 0022).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Final

from service.domain import risk_parameters as P
from service.domain.assessment import Assessment
from service.domain.calibration import Calibration
from service.domain.features import IndexEvent, PatientFeatures
from service.domain.risk_model import Contribution, RiskEstimate
from service.fhir.risk_assessment import build_risk_assessment

__all__ = ["RENDER_KEY", "compact_result", "render_risk_assessment"]

# The key of the rendering's inputs inside the assessment's stored result (the rest is what lists and charts use).
RENDER_KEY: Final = "render"


def compact_result(assessment: Assessment) -> dict[str, Any]:
    """The assessment's stored result: what lists and charts read, and what the RiskAssessment is rendered from."""
    estimate = assessment.estimate
    features = assessment.features
    index = features.index
    assert index is not None
    calibration = estimate.calibration
    return {
        # Compact, for lists and charts (the worklist's patient page, CDS cards, the care plan).
        "contributions": {c.code: round(c.log_odds, 4) for c in estimate.contributions if c.known},
        "inputs": {c.code: c.value for c in estimate.contributions if c.known},
        "missing": list(estimate.missing),
        "sources": {k: list(v) for k, v in features.sources.items() if v},
        "details": features.details,
        "index": {
            "day": index.day.isoformat(),
            "levels": list(index.levels),
            "method": index.method,
            "sources": list(index.sources),
        },
        RENDER_KEY: {
            # As written in the resource: the clock's own offset, which a timestamptz read back would not keep.
            "occurrence": assessment.assessed_at.isoformat(timespec="seconds"),
            "model": estimate.model,
            "version": estimate.version,
            "probability": estimate.probability,
            "low": estimate.low,
            "high": estimate.high,
            "band": estimate.band,
            "log_odds": estimate.log_odds,
            "factors": [[c.code, c.value, c.log_odds] for c in estimate.contributions if c.known],
            "narrowing": list(estimate.narrowing),
            "bounded": estimate.bounded,
            "calibration": None
            if calibration is None
            else {
                "version": calibration.version,
                "base_version": calibration.base_version,
                "method": calibration.method,
                "intercept": calibration.intercept,
                "slope": calibration.slope,
                "n": calibration.n,
                "events": calibration.events,
            },
        },
    }


def render_risk_assessment(
    assessment_id: str, patient_id: str, model_version: str, inputs_hash: str, result: dict[str, Any]
) -> dict[str, Any]:
    """The RiskAssessment of a stored assessment, from its compact result (``compact_result``)."""
    data = result[RENDER_KEY]
    index = result["index"]
    cal = data["calibration"]
    estimate = RiskEstimate(
        probability=data["probability"],
        low=data["low"],
        high=data["high"],
        band=data["band"],
        contributions=tuple(
            Contribution(code, P.FACTOR_BY_CODE[code].label, value, log_odds, True)
            for code, value, log_odds in data["factors"]
        ),
        missing=tuple(result["missing"]),
        model=data["model"],
        version=data["version"],
        calibration=None
        if cal is None
        else Calibration(
            cal["version"], cal["base_version"], cal["method"], cal["intercept"], cal["slope"], cal["n"], cal["events"]
        ),
        log_odds=data["log_odds"],
        narrowing=tuple(data["narrowing"]),
        bounded=data["bounded"],
    )
    features = PatientFeatures(
        IndexEvent(
            date.fromisoformat(index["day"]),
            tuple(index["levels"]),
            index["method"],
            tuple(index["sources"]),
        ),
        inputs={code: value for code, value, _ in data["factors"]},
        sources={k: tuple(v) for k, v in result["sources"].items()},
        details=dict(result["details"]),
    )
    assessment = Assessment(
        patient_id, datetime.fromisoformat(data["occurrence"]), features, estimate, inputs_hash, model_version
    )
    return build_risk_assessment(assessment_id, assessment)
