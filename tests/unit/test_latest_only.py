"""What the pipeline reads of measurement series (service/domain/latest_only.py): from the cut facts the features,
the renal check and the alert rules give what they give from the whole record, for long generated series with ties
on the latest day, future-dated, late-recorded, valueless and undated facts, in time zones either side of UTC; and no
code outside the FHIR mapping names a kind that is not read."""

from __future__ import annotations

import ast
import random
from datetime import UTC, date, datetime, timedelta

import pytest

from service.domain.alert_rules import AlertConfig, evaluate, index_episode, resolution_of
from service.domain.alert_types import AlertType
from service.domain.facts import Fact, FactKind
from service.domain.features import build_features
from service.domain.latest_only import LATEST_ONLY_KINDS, UNREAD_KINDS, AsOf, for_assessment
from service.domain.safety import renal_check
from tests.support.paths import ROOT

NOW = datetime(2026, 12, 6, 0, 30, tzinfo=UTC)  # half past midnight: the hospital's day may be yesterday
OP = date(2026, 3, 10)
COVERAGE = {"Patient", "Procedure", "Condition", "Observation", "MedicationAdministration"}


def clinical_record() -> list[Fact]:
    """A patient the model applies to, with an index fracture, a DXA, denosumab and CKD stage 3."""
    known = datetime(2026, 3, 11, tzinfo=UTC)
    return [
        Fact(FactKind.BIRTH_DATE, effective_date=date(1944, 5, 2), source="Patient/p", recorded_at=known),
        Fact(FactKind.SEX, value_text="female", source="Patient/p", recorded_at=known),
        Fact(
            FactKind.VERTEBRAL_AUGMENTATION,
            effective_date=OP,
            status="completed",
            attrs={"method": "PKP", "levels": ["L1"]},
            source="Procedure/op",
            recorded_at=known,
        ),
        Fact(
            FactKind.VERTEBRAL_FRACTURE,
            effective_date=OP - timedelta(days=20),
            status="active",
            attrs={"levels": ["L1"], "osteoporotic": True},
            source="Condition/fx",
            recorded_at=known,
        ),
        Fact(FactKind.DXA_T_SCORE, value_num=-2.9, effective_date=OP - timedelta(days=40), source="Observation/dxa"),
        Fact(
            FactKind.CHRONIC_KIDNEY_DISEASE,
            status="active",
            attrs={"stage": 3},
            effective_date=date(2020, 1, 1),
            source="Condition/ckd",
        ),
        Fact(
            FactKind.MEDICATION,
            effective_date=OP + timedelta(days=30),
            status="completed",
            attrs={"drug": "denosumab-60mg", "event": "administration"},
            source="MedicationAdministration/dmab",
        ),
    ]


def series(rng: random.Random, kind: FactKind, count: int, latest: date) -> list[Fact]:
    """A long series: mostly valued facts known in time, a few days with several facts (ties broken by source),
    and among them facts dated in the future, recorded after NOW, without a value, or without a date."""
    out: list[Fact] = []
    days = [latest - timedelta(days=rng.randrange(0, 3650)) for _ in range(count)]
    days += [latest] * 3 + [latest + timedelta(days=1)] * 2  # ties on the latest days
    for n, day in enumerate(days):
        roll = rng.random()
        recorded = NOW - timedelta(minutes=rng.randrange(1, 10_000))
        value: float | None = round(rng.uniform(10, 100), 1)
        dated: date | None = day
        if roll < 0.05:
            recorded = NOW + timedelta(minutes=rng.randrange(1, 500))  # learned after the moment
        elif roll < 0.10:
            value = None
        elif roll < 0.12:
            dated = None
        elif roll < 0.17:
            dated = latest + timedelta(days=rng.randrange(1, 400))  # dated in the future
        out.append(
            Fact(
                kind,
                value_num=value,
                unit="u",
                effective_date=dated,
                source=f"Observation/{kind.value}-{rng.randrange(10**6):06d}-{n}",
                recorded_at=recorded,
            )
        )
    # The newest day's value learned late: the renal check (which does not look at the recording time) takes it,
    # the features (which do) the one before.
    out.append(
        Fact(
            kind,
            value_num=20.0,
            effective_date=latest,
            source=f"Observation/{kind.value}-late",
            recorded_at=NOW + timedelta(seconds=1),
        )
    )
    rng.shuffle(out)
    return out


# Used only as their latest value, but read whole (single findings, not series): series of them all the same.
SHOWN = (FactKind.SARCOPENIA_FINDING, FactKind.PARASPINAL_FAT_FRACTION, FactKind.P1NP_CTX_RATIO)


def patient(seed: int, today: date) -> list[Fact]:
    rng = random.Random(seed)
    facts = clinical_record()
    for kind in sorted(LATEST_ONLY_KINDS | UNREAD_KINDS | set(SHOWN)):
        count = 4000 if kind is FactKind.EGFR else 200
        facts += series(rng, kind, count, today - timedelta(days=rng.choice([0, 0, 1, 5])))
    rng.shuffle(facts)
    return facts


@pytest.mark.parametrize("offset", [-1, 0, 1], ids=["west-of-utc", "utc", "east-of-utc"])
@pytest.mark.parametrize("seed", range(4))
def test_the_cut_facts_give_the_same_features_renal_check_and_alerts(seed: int, offset: int) -> None:
    today = NOW.date() + timedelta(days=offset)  # the hospital's day: a day either side of the moment's date
    facts = patient(seed, today)
    cut = for_assessment(facts, AsOf.at(NOW, today))
    assert len(cut) < len(facts) / 5
    assert not {f.kind for f in cut} & UNREAD_KINDS
    assert build_features(cut, COVERAGE, NOW) == build_features(facts, COVERAGE, NOW)
    assert renal_check(cut, today) == renal_check(facts, today)
    config = AlertConfig()
    assert evaluate(cut, today, config) == evaluate(facts, today, config)
    assert index_episode(cut, today) == index_episode(facts, today)
    for code in AlertType:
        assert resolution_of(code, cut, today, config) == resolution_of(code, facts, today, config)


@pytest.mark.parametrize("seed", range(6))
def test_every_latest_as_of_a_day_between_the_first_and_the_last_is_kept(seed: int) -> None:
    # The claim itself, for any consumer of the shape "the latest with a value dated by X", whether or not it looks
    # at the recording time and however far back it looks.
    rng = random.Random(seed)
    today = NOW.date()
    facts = series(rng, FactKind.EGFR, 3000, today)
    as_of = AsOf.at(NOW, today - timedelta(days=1), today + timedelta(days=1))
    cut = for_assessment(facts, as_of)

    def latest(of: list[Fact], day: date, recorded: bool, since: date) -> Fact | None:
        dated = [
            f
            for f in of
            if f.value_num is not None
            and f.effective_date is not None
            and since <= f.effective_date <= day
            and (not recorded or f.recorded_at is None or f.recorded_at <= NOW)
        ]
        return max(dated, key=lambda f: (f.effective_date, f.source or "")) if dated else None

    for x in (as_of.first_day, NOW.date(), as_of.last_day):
        for recorded in (True, False):
            for since in (date.min, x - timedelta(days=3), x - timedelta(days=365)):
                assert latest(cut, x, recorded, since) == latest(facts, x, recorded, since)


def test_a_long_series_is_cut_to_its_latest_day_and_other_kinds_are_kept_whole() -> None:
    today = NOW.date()
    old = [
        Fact(
            FactKind.EGFR,
            value_num=50.0,
            effective_date=today - timedelta(days=n),
            source=f"Observation/e{n}",
            recorded_at=NOW - timedelta(days=n),
        )
        for n in range(1, 20_001)
    ]
    same_day = [
        Fact(FactKind.EGFR, value_num=v, effective_date=today - timedelta(days=1), source=f"Observation/t{v}")
        for v in (40.0, 45.0)
    ]
    hu = [Fact(FactKind.VERTEBRAL_HU, value_num=80.0 + n, effective_date=OP - timedelta(days=n)) for n in range(50)]
    cut = for_assessment([*old, *same_day, *hu], AsOf.at(NOW, today))
    assert [f.source for f in cut if f.kind is FactKind.EGFR] == [
        "Observation/e1",
        "Observation/t40.0",
        "Observation/t45.0",
    ]
    assert [f for f in cut if f.kind is FactKind.VERTEBRAL_HU] == hu


def test_as_of_spans_the_moments_date_and_the_days_given() -> None:
    assert AsOf.at(NOW) == AsOf(NOW, NOW.date(), NOW.date())
    yesterday = NOW.date() - timedelta(days=1)
    assert AsOf.at(NOW, yesterday) == AsOf(NOW, yesterday, NOW.date())


def test_a_value_learned_after_the_moment_does_not_hide_the_one_the_assessment_uses() -> None:
    # The day to cut from counts only values known by the moment: the renal check takes the newer value learned
    # late (it does not look at the recording time), the features the older one; both must stay.
    today = NOW.date()

    def egfr(value: float, days_ago: int, name: str, recorded_at: datetime) -> Fact:
        return Fact(
            FactKind.EGFR,
            value_num=value,
            effective_date=today - timedelta(days=days_ago),
            source=f"Observation/{name}",
            recorded_at=recorded_at,
        )

    known = egfr(50.0, 3, "k", NOW - timedelta(days=2))
    late = egfr(20.0, 1, "l", NOW + timedelta(minutes=1))
    older = egfr(25.0, 9, "o", NOW - timedelta(days=8))
    facts = [*clinical_record(), older, known, late]
    cut = for_assessment(facts, AsOf.at(NOW, today))
    assert [f for f in cut if f.kind is FactKind.EGFR] == [known, late]
    features = build_features(cut, COVERAGE, NOW)
    assert features.details["chronic-kidney-disease"] == "eGFR 50"
    assert features == build_features(facts, COVERAGE, NOW)
    assert renal_check(cut, today) == renal_check(facts, today)
    assert renal_check(cut, today).evidence == ("Observation/l",)


def test_a_series_with_no_value_known_by_the_moment_is_kept_whole() -> None:
    today = NOW.date()
    late = [
        Fact(FactKind.EGFR, value_num=40.0 + n, effective_date=today - timedelta(days=n), source=f"Observation/l{n}",
             recorded_at=NOW + timedelta(hours=1))
        for n in range(30)
    ]  # fmt: skip
    valueless = Fact(FactKind.EGFR, effective_date=today - timedelta(days=40), source="Observation/v")
    future = Fact(FactKind.EGFR, value_num=10.0, effective_date=today + timedelta(days=3), source="Observation/f")
    cut = for_assessment([*late, valueless, future, *clinical_record()], AsOf.at(NOW, today))
    assert [f for f in cut if f.kind is FactKind.EGFR] == [*late, valueless]
    assert renal_check(cut, today) == renal_check([*late, valueless, future], today)


# Where a kind's name may appear without the kind being used: its definition, the FHIR mapping and units, and here.
_NAMING_ALLOWED = {"facts.py", "terminology.py", "units.py", "latest_only.py"}


def test_no_code_outside_the_fhir_mapping_names_a_kind_that_is_not_read() -> None:
    # A consumer of one of them would see nothing of it in the pipeline: it must take the kind out of UNREAD_KINDS.
    names = {kind.name for kind in UNREAD_KINDS}
    values = {kind.value for kind in UNREAD_KINDS}
    found = []
    for path in sorted([*(ROOT / "service").rglob("*.py"), *(ROOT / "workers").rglob("*.py")]):
        if path.name in _NAMING_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.attr}")
            if isinstance(node, ast.Constant) and node.value in values:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert found == []
