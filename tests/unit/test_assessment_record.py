"""The compact stored assessment renders the very RiskAssessment that was built at assessment time (issue 15)."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from service.domain.assessment import assess
from service.domain.calibration import Calibration
from service.domain.facts import Fact, FactKind
from service.domain.risk_model import model_version
from service.fhir.assessment_record import compact_result, render_risk_assessment
from service.fhir.jsonio import dumps
from service.fhir.risk_assessment import build_risk_assessment


def _patient(rng: random.Random, pid: str) -> list[Fact]:
    op = date(2025, 1, 1) + timedelta(days=rng.randint(0, 400))
    level = rng.choice(["T11", "T12", "L1", "L2"])
    facts = [
        Fact(
            FactKind.VERTEBRAL_AUGMENTATION,
            effective_date=op,
            status="completed",
            attrs={"method": rng.choice(["PVP", "PKP"]), "levels": [level]},
            source=f"Procedure/{pid}-op",
        ),
        Fact(FactKind.BIRTH_DATE, effective_date=date(rng.randint(1930, 1965), 6, 1), source=f"Patient/{pid}"),
        Fact(FactKind.SEX, value_text=rng.choice(["female", "male"]), source=f"Patient/{pid}"),
    ]
    if rng.random() < 0.6:
        facts.append(
            Fact(
                FactKind.DXA_T_SCORE,
                value_num=round(rng.gauss(-2.7, 0.9), 1),
                effective_date=op - timedelta(days=20),
                status="final",
                attrs={"site": "lumbar-spine"},
                source=f"Observation/{pid}-t",
            )
        )
    if rng.random() < 0.6:
        facts.append(
            Fact(
                FactKind.VERTEBRAL_HU,
                value_num=rng.uniform(20, 140),
                effective_date=op - timedelta(days=2),
                attrs={"levels": [level]},
                source=f"Observation/{pid}-hu",
            )
        )
    if rng.random() < 0.5:
        facts.append(
            Fact(
                FactKind.CEMENT_VOLUME_RATIO,
                value_num=rng.uniform(5, 25),
                effective_date=op,
                attrs={"levels": [level]},
                source=f"Observation/{pid}-cv",
            )
        )
        facts.append(
            Fact(FactKind.CEMENT_LEAKAGE, value_num=float(rng.random() < 0.3), effective_date=op, source=f"Obs/{pid}-l")
        )
    if rng.random() < 0.3:
        facts.append(
            Fact(
                FactKind.SARCOPENIA_DIAGNOSIS,
                effective_date=op - timedelta(days=100),
                status="active",
                source=f"Condition/{pid}-s",
            )
        )
    if rng.random() < 0.3:
        facts.append(Fact(FactKind.COBB_ANGLE, value_num=abs(rng.gauss(8, 6)), effective_date=op, source=f"O/{pid}-c"))
    return facts


@pytest.mark.parametrize("calibrated", [False, True])
def test_the_rendered_resource_is_the_built_one_byte_for_byte(calibrated: bool) -> None:
    rng = random.Random(15)
    calibration = (
        Calibration(f"{model_version()}.cal.t", model_version(), "logistic", -0.4, 0.9, 500, 60) if calibrated else None
    )
    moments = [
        datetime(2026, 3, 1, 2, 30, 15, 123456, tzinfo=UTC),
        datetime(2026, 3, 1, 9, tzinfo=timezone(timedelta(hours=2))),
    ]
    checked = 0
    for n in range(60):
        pid = f"p-{n}"
        result = assess(
            pid, _patient(rng, pid), ["Patient", "Procedure", "Observation", "Condition"], moments[n % 2], calibration
        )
        assert result is not None
        built = build_risk_assessment(f"id-{n}", result)
        # As stored in jsonb and read back: plain JSON, no key order kept.
        stored = json.loads(json.dumps(json.loads(dumps(compact_result(result))), sort_keys=True))
        rendered = render_risk_assessment(f"id-{n}", pid, result.model_version, result.inputs_hash, stored)
        assert dumps(rendered) == dumps(built)
        checked += 1
    assert checked == 60
