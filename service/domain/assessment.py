"""One assessment: a patient's features as of a moment, the model's estimate, and a hash of what went in."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from service.domain.calibration import Calibration
from service.domain.facts import Fact
from service.domain.features import PatientFeatures, build_features
from service.domain.risk_model import RiskEstimate, estimate

__all__ = ["Assessment", "assess", "inputs_hash"]


@dataclass(frozen=True, slots=True)
class Assessment:
    """The model applied to one patient."""

    patient_id: str
    assessed_at: datetime
    features: PatientFeatures
    estimate: RiskEstimate
    inputs_hash: str
    model_version: str


def inputs_hash(features: PatientFeatures) -> str:
    """A digest of everything the estimate and its explanation depend on: the index, the inputs, their sources."""
    index = features.index
    payload = {
        "index": None
        if index is None
        else [index.day.isoformat(), list(index.levels), index.method, list(index.sources)],
        "inputs": {k: features.inputs[k] for k in sorted(features.inputs)},
        "sources": {k: list(v) for k, v in sorted(features.sources.items())},
        "details": {k: features.details[k] for k in sorted(features.details)},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def assess(
    patient_id: str,
    facts: Iterable[Fact],
    coverage: Iterable[str],
    as_of: datetime,
    calibration: Calibration | None = None,
) -> Assessment | None:
    """Assess one patient as of a moment.

    Args:
        patient_id: the EHR's Patient id.
        facts: the patient's stored facts.
        coverage: the resource types the patient's record holds.
        as_of: the assessment moment (facts recorded or dated later are ignored).
        calibration: the active local recalibration, if any; its version becomes the model version, so a new
            calibration makes every patient's assessment "changed" and a rescore re-assesses them.

    Returns:
        The assessment, or None when no completed augmentation is known (the model does not apply).
    """
    features = build_features(facts, coverage, as_of)
    if features.index is None:
        return None
    result = estimate(features.inputs, calibration)
    return Assessment(patient_id, as_of, features, result, inputs_hash(features), f"{result.model}/{result.version}")
