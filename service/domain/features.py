"""The model's inputs from a patient's facts as they were known at one moment, each with its source resources.

Only facts recorded by ``as_of`` and dated no later than it are used. A fact the record does not hold leaves its
input unknown (None), never "absent": a comorbidity counts as absent only when the record has Conditions at all,
a drug only when it has medication resources at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Final

from service.domain.drugs import Drug
from service.domain.exposure import treatment_status
from service.domain.facts import Fact, FactKind
from service.domain.glucocorticoids import systemic_exposure
from service.domain.medication_timeline import events_of, starts
from service.domain.risk_model import InputValue
from service.domain.spine import POSITION, adjacent_levels

__all__ = ["IndexEvent", "PatientFeatures", "build_features"]

# Thresholds the evidence states (docs/sources/evidence.md; seed refs in brackets).
HU_RATIO_THRESHOLD: Final = 15.18  # [12]
ADJACENT_HU_THRESHOLD: Final = 66.9  # [12]
COBB_THRESHOLD_DEG: Final = 10.0  # [4]
COMPRESSION_THRESHOLD_PCT: Final = 38.5  # [33]
CEMENT_RATIO_THRESHOLD_PCT: Final = 13.82  # [29]
EARLY_SURGERY_DAYS: Final = 28  # [40] "early"; taken as within 4 weeks
THORACOLUMBAR: Final = frozenset({"T11", "T12", "L1", "L2"})  # [37]
# A trabecular HU above this is cement (PMMA reads about 1,000-2,000 HU), not bone: osteoporotic and even normal
# trabecular bone lies far below it (normal lumbar trabecular bone about 150-250 HU; Pickhardt 2013, L1 HU
# thresholds). Such a value is no bone measure: the input is left unknown, never clamped into the model.
CEMENT_HU: Final = 300.0

# How far from the operation a measure still describes it.
_DXA_LOOKBACK: Final = timedelta(days=730)
_PREOP_LOOKBACK: Final = timedelta(days=365)
_INDEX_FRACTURE_WINDOW: Final = timedelta(days=365)
_PRIOR_FRACTURE_GAP: Final = timedelta(days=90)
_STEROID_LOOKBACK: Final = timedelta(days=365)
_SGLT2_WINDOW: Final = timedelta(days=183)
_OPERATION_WINDOW: Final = timedelta(days=7)  # post-operative imaging of the cement


@dataclass(frozen=True, slots=True)
class IndexEvent:
    """The augmentation the 2-year horizon counts from."""

    day: date
    levels: tuple[str, ...]
    method: str | None
    sources: tuple[str, ...]
    at: datetime | None = None  # the operation's time, when the record gives a time of day


@dataclass(slots=True)
class PatientFeatures:
    """Inputs by factor code, the resources behind each, and a plain detail for the clinician."""

    index: IndexEvent | None
    inputs: dict[str, InputValue] = field(default_factory=dict)
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    # Why the model does not apply although an augmentation is known ("malignancy": out of the model's scope).
    excluded: str | None = None

    def set(self, code: str, value: InputValue, facts: Iterable[Fact] = (), detail: str | None = None) -> None:
        """Record one input with the facts it came from."""
        self.inputs[code] = value
        self.sources[code] = tuple(sorted({f.source for f in facts if f.source}))
        if detail:
            self.details[code] = detail


def _known(facts: Iterable[Fact], as_of: datetime) -> list[Fact]:
    day = as_of.date()
    return [
        f
        for f in facts
        if (f.recorded_at is None or f.recorded_at <= as_of) and (f.effective_date is None or f.effective_date <= day)
    ]


class _Facts(list[Fact]):
    """The patient's facts, grouped by kind once (the builders ask for kinds dozens of times)."""

    def __init__(self, facts: Iterable[Fact]) -> None:
        super().__init__(facts)
        self.by_kind: dict[FactKind, list[Fact]] = {}
        for fact in self:
            self.by_kind.setdefault(fact.kind, []).append(fact)


def _of(facts: Sequence[Fact], *kinds: FactKind) -> list[Fact]:
    if isinstance(facts, _Facts):
        if len(kinds) == 1:
            return facts.by_kind.get(kinds[0], [])
        return [f for kind in kinds for f in facts.by_kind.get(kind, [])]
    return [f for f in facts if f.kind in kinds]


def _levels(fact: Fact) -> tuple[str, ...]:
    levels = fact.attrs.get("levels")
    return tuple(str(x) for x in levels) if isinstance(levels, list) else ()


def _latest(facts: Iterable[Fact]) -> Fact | None:
    dated = [f for f in facts if f.effective_date is not None]
    return max(dated, key=lambda f: (f.effective_date, f.source or "")) if dated else None


def _index_event(facts: Sequence[Fact]) -> IndexEvent | None:
    done = [
        f
        for f in _of(facts, FactKind.VERTEBRAL_AUGMENTATION)
        if f.status == "completed" and f.effective_date is not None
    ]
    if not done:
        return None
    day = max(f.effective_date for f in done if f.effective_date)
    same_day = [f for f in done if f.effective_date == day]
    levels = sorted({lvl for f in same_day for lvl in _levels(f)}, key=lambda lvl: POSITION.get(lvl, 99))
    methods = {str(f.attrs["method"]) for f in same_day if f.attrs.get("method")}
    times = [f.effective_at for f in same_day if f.attrs.get("timed") and f.effective_at is not None]
    return IndexEvent(
        day,
        tuple(levels),
        methods.pop() if len(methods) == 1 else None,
        tuple(sorted({f.source for f in same_day if f.source})),
        min(times) if times else None,
    )


def _before_operation(fact: Fact, index: IndexEvent) -> bool | None:
    """Whether a measure was taken before the operation: True, False, or None on its day without both times.

    A CT or DXA dated the day of surgery may be the pre-operative scan or the post-operative check of the cement;
    only the times of day tell them apart.
    """
    day = fact.effective_date
    if day is None:
        return None
    if day != index.day:
        return day < index.day
    if index.at is not None and fact.attrs.get("timed") and fact.effective_at is not None:
        return fact.effective_at < index.at
    return None


def build_features(facts: Iterable[Fact], coverage: Iterable[str], as_of: datetime) -> PatientFeatures:
    """The inputs of the risk model for one patient.

    Args:
        facts: the patient's facts (with source and recorded_at).
        coverage: the resource types the patient's record holds at all (e.g. {"Condition", "MedicationRequest"}).
        as_of: the assessment moment; later facts are ignored.

    Returns:
        The features; ``index`` is None when no completed augmentation is known (the model does not apply).
    """
    known = _Facts(_known(facts, as_of))
    index = _index_event(known)
    if index is not None and _of(known, FactKind.MALIGNANCY):
        # Augmentation for myeloma or metastasis: outside the model's scope (model card; docs/sources/alerts.md 'Index
        # event').
        return PatientFeatures(None, excluded="malignancy")
    features = PatientFeatures(index)
    if index is None:
        return features
    types = frozenset(coverage)
    has_conditions = "Condition" in types
    has_medications = bool(
        types & {"MedicationAdministration", "MedicationDispense", "MedicationStatement", "MedicationRequest"}
    )
    _demographics(features, known, index)
    _bone_density(features, known, index)
    _hounsfield(features, known, index)
    _alignment_and_cement(features, known, index)
    _fracture_history(features, known, index, has_conditions)
    _comorbidities(features, known, index, has_conditions, has_medications, as_of)
    _treatment(features, known, index, has_medications, as_of)
    _shown_only(features, known)
    return features


def _demographics(features: PatientFeatures, facts: Sequence[Fact], index: IndexEvent) -> None:
    birth = _latest(_of(facts, FactKind.BIRTH_DATE))
    if birth is not None and birth.effective_date is not None:
        born = birth.effective_date
        age = index.day.year - born.year - ((index.day.month, index.day.day) < (born.month, born.day))
        features.set("age", age, [birth], f"{age} years")
    else:
        features.set("age", None)
    sex = _latest(_of(facts, FactKind.SEX)) or next(iter(_of(facts, FactKind.SEX)), None)
    if sex is not None and sex.value_text in ("female", "male"):
        features.set("female-sex", sex.value_text == "female", [sex], sex.value_text)
    else:
        features.set("female-sex", None)
    features.set("kyphoplasty", None if index.method is None else index.method == "PKP", [], index.method or None)


def _bone_density(features: PatientFeatures, facts: Sequence[Fact], index: IndexEvent) -> None:
    # The baseline is a DXA from the 2 years before the operation: a later one measures the cemented spine (and
    # any treatment since), not the bone the operation was done on. A DXA on the day itself counts unless its time
    # says it came after.
    window_start = index.day - _DXA_LOOKBACK
    baseline = [
        f
        for f in _of(facts, FactKind.DXA_T_SCORE)
        if f.value_num is not None
        and f.effective_date is not None
        and window_start <= f.effective_date <= index.day
        and _before_operation(f, index) is not False
    ]
    scores = [f for f in baseline if f.attrs.get("site") != "radius-ulna"]
    if not scores:
        # The forearm counts only when no central site was measured.
        scores = baseline
    if scores:
        lowest = min(scores, key=lambda f: f.value_num or 0.0)
        detail = f"{lowest.value_num:.1f} ({lowest.attrs.get('site', 'site not stated')}, {lowest.effective_date})"
        features.set("dxa-t-score", lowest.value_num, [lowest], detail)
    else:
        features.set("dxa-t-score", None)


def _dated(facts: Iterable[Fact]) -> list[tuple[date, Fact]]:
    """Facts with a date, paired with it (facts without one cannot be placed in time)."""
    return [(f.effective_date, f) for f in facts if f.effective_date is not None]


def _hounsfield(features: PatientFeatures, facts: Sequence[Fact], index: IndexEvent) -> None:
    hu = [(day, f) for day, f in _dated(_of(facts, FactKind.VERTEBRAL_HU)) if f.value_num is not None]
    # Before the operation only: a CT on its day counts when both times show it came first; without times it is
    # ambiguous (often the post-operative CT of the cement) and left out.
    preop = [f for day, f in hu if index.day - _PREOP_LOOKBACK <= day and _before_operation(f, index) is True]
    treated = set(index.levels)
    at_level = [f for f in preop if treated & set(_levels(f))] if treated else preop
    at_treated = [f for f in at_level if (f.value_num or 0.0) <= CEMENT_HU]
    cement = [f for f in at_level if (f.value_num or 0.0) > CEMENT_HU]
    if cement and not at_treated:
        highest = max(cement, key=lambda f: f.value_num or 0.0)
        features.set("vertebral-hu", None, [highest], f"{highest.value_num:.0f} HU read as cement, not bone")
    elif at_treated:
        lowest = min(at_treated, key=lambda f: f.value_num or 0.0)
        features.set(
            "vertebral-hu",
            lowest.value_num,
            [lowest],
            f"{lowest.value_num:.0f} HU at {', '.join(_levels(lowest)) or 'a level not stated'}",
        )
    else:
        features.set("vertebral-hu", None)
    neighbours = adjacent_levels(index.levels)
    adjacent = [
        f
        for day, f in hu
        if neighbours & set(_levels(f)) and day >= index.day - _PREOP_LOOKBACK and (f.value_num or 0.0) <= CEMENT_HU
    ]
    # The cemented vertebra after the operation: a later day, or the same day with both times showing it after.
    augmented = [f for _, f in hu if treated & set(_levels(f)) and _before_operation(f, index) is False]
    if adjacent and augmented:
        adjacent_hu = min(adjacent, key=lambda f: f.value_num or 0.0)
        augmented_hu = max(augmented, key=lambda f: f.value_num or 0.0)
        ratio = (augmented_hu.value_num or 0.0) / max(adjacent_hu.value_num or 0.0, 1.0)
        rule = ratio > HU_RATIO_THRESHOLD and (adjacent_hu.value_num or 0.0) < ADJACENT_HU_THRESHOLD
        features.set(
            "hu-gradient",
            rule,
            [adjacent_hu, augmented_hu],
            f"ratio {ratio:.1f}, adjacent {adjacent_hu.value_num:.0f} HU",
        )
    else:
        features.set("hu-gradient", None)


def _operation_facts(facts: Sequence[Fact], kind: FactKind, index: IndexEvent) -> list[Fact]:
    """Measures of the index operation: naming it in partOf, or dated on its day (or up to a week after)."""
    out = []
    for fact in _of(facts, kind):
        part_of = fact.attrs.get("part_of")
        names_it = isinstance(part_of, list) and bool(set(part_of) & set(index.sources))
        day = fact.effective_date
        if names_it or (day is not None and index.day <= day <= index.day + _OPERATION_WINDOW):
            out.append(fact)
    return out


def _alignment_and_cement(features: PatientFeatures, facts: Sequence[Fact], index: IndexEvent) -> None:
    scoliosis = [f for f in _of(facts, FactKind.SCOLIOSIS) if f.status not in ("inactive", "resolved")]
    # Only a coronal Cobb angle measures scoliosis; a sagittal one (kyphosis) or one of unknown plane does not
    # (SNOMED 285285000 names no plane: normalise reads it from the words around it).
    cobb = _latest(
        f for f in _of(facts, FactKind.COBB_ANGLE) if f.value_num is not None and f.attrs.get("plane") == "coronal"
    )
    if cobb is not None:
        features.set(
            "cobb-over-10", (cobb.value_num or 0.0) > COBB_THRESHOLD_DEG, [cobb], f"{cobb.value_num:.0f} degrees"
        )
    elif scoliosis:
        features.set("cobb-over-10", True, scoliosis, "scoliosis diagnosed")
    else:
        features.set("cobb-over-10", None)
    corrections = _operation_facts(facts, FactKind.KYPHOSIS_CORRECTION, index)
    correction = _latest(f for f in corrections if f.value_num is not None)
    features.set(
        "kyphosis-correction",
        correction.value_num if correction else None,
        [correction] if correction else [],
        f"{correction.value_num:.0f} degrees" if correction else None,
    )
    compression = _latest(
        f
        for f in _of(facts, FactKind.VERTEBRAL_COMPRESSION_RATIO)
        if f.value_num is not None and f.effective_date is not None and f.effective_date <= index.day
    )
    features.set(
        "compression-38",
        None if compression is None else (compression.value_num or 0.0) >= COMPRESSION_THRESHOLD_PCT,
        [compression] if compression else [],
        f"{compression.value_num:.0f} %" if compression else None,
    )
    ratios = [f for f in _operation_facts(facts, FactKind.CEMENT_VOLUME_RATIO, index) if f.value_num is not None]
    if ratios:
        largest = max(ratios, key=lambda f: f.value_num or 0.0)
        features.set(
            "cement-volume-high",
            (largest.value_num or 0.0) > CEMENT_RATIO_THRESHOLD_PCT,
            [largest],
            f"{largest.value_num:.1f} %",
        )
    else:
        features.set("cement-volume-high", None)
    leaks = [f for f in _operation_facts(facts, FactKind.CEMENT_LEAKAGE, index) if f.value_num is not None]
    if leaks:
        leaked = [f for f in leaks if (f.value_num or 0.0) > 0]
        disc = [f for f in leaked if "disc" in (f.value_text or "").lower()]
        category = "disc" if disc else "other" if leaked else "none"
        features.set("cement-leakage", category, leaks, category)
    else:
        features.set("cement-leakage", None)
    contact = [f for f in _operation_facts(facts, FactKind.CEMENT_ENDPLATE_CONTACT, index) if f.value_num is not None]
    if contact:
        fewest = min(contact, key=lambda f: f.value_num or 0.0)
        features.set(
            "cement-both-endplates", (fewest.value_num or 0.0) >= 2, [fewest], f"{fewest.value_num:.0f} endplate(s)"
        )
    else:
        features.set("cement-both-endplates", None)
    if index.levels:
        features.set("thoracolumbar-junction", bool(THORACOLUMBAR & set(index.levels)), [], ", ".join(index.levels))
    else:
        features.set("thoracolumbar-junction", None)


def _fracture_history(
    features: PatientFeatures, facts: Sequence[Fact], index: IndexEvent, has_conditions: bool
) -> None:
    vertebral = _dated(_of(facts, FactKind.VERTEBRAL_FRACTURE))
    index_fractures = [f for day, f in vertebral if index.day - _INDEX_FRACTURE_WINDOW <= day <= index.day]
    onset = max((f.effective_date for f in index_fractures if f.effective_date), default=None)
    if onset is not None:
        days = (index.day - onset).days
        fracture = [f for f in index_fractures if f.effective_date == onset]
        features.set("early-surgery", days <= EARLY_SURGERY_DAYS, fracture, f"{days} days after the fracture")
    else:
        features.set("early-surgery", None)
    fractured_levels = set(index.levels) | {
        lvl
        for f in index_fractures
        if onset and f.effective_date and f.effective_date >= onset - _PRIOR_FRACTURE_GAP
        for lvl in _levels(f)
    }
    if fractured_levels:
        features.set(
            "multiple-fractures", len(fractured_levels) >= 2, index_fractures, f"{len(fractured_levels)} vertebra(e)"
        )
    else:
        features.set("multiple-fractures", None)
    episode_start = (onset or index.day) - _PRIOR_FRACTURE_GAP
    # A fracture without onset has no date; recorded before this episode began, it must be an earlier one.
    prior_vertebral = [f for day, f in vertebral if day < episode_start] + [
        f
        for f in _of(facts, FactKind.VERTEBRAL_FRACTURE)
        if f.effective_date is None and (_recorded(f) or episode_start) < episode_start
    ]
    if prior_vertebral:
        features.set("prior-vertebral-fracture", True, prior_vertebral, f"{prior_vertebral[0].effective_date}")
    else:
        features.set("prior-vertebral-fracture", False if has_conditions else None)
    other = [
        f
        for f in _of(facts, FactKind.NON_VERTEBRAL_FRACTURE, FactKind.OSTEOPOROTIC_FRACTURE, FactKind.FRACTURE_HISTORY)
        if (f.effective_date or _recorded(f) or date.min) < episode_start or f.kind is FactKind.FRACTURE_HISTORY
    ]
    if other:
        features.set("prior-nonvertebral-fracture", True, other)
    else:
        features.set("prior-nonvertebral-fracture", False if has_conditions else None)


def _recorded(fact: Fact) -> date | None:
    value = fact.attrs.get("recorded_date")
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _active(condition: Fact) -> bool:
    return condition.status not in ("inactive", "resolved", "remission")


def _comorbidities(
    features: PatientFeatures,
    facts: Sequence[Fact],
    index: IndexEvent,
    has_conditions: bool,
    has_medications: bool,
    as_of: datetime,
) -> None:
    sarcopenia = [f for f in _of(facts, FactKind.SARCOPENIA_DIAGNOSIS) if _active(f)]
    finding = _latest(f for f in _of(facts, FactKind.SARCOPENIA_FINDING) if f.value_num is not None)
    if sarcopenia:
        features.set("sarcopenia", True, sarcopenia, "diagnosed")
    elif finding is not None:
        features.set("sarcopenia", bool(finding.value_num), [finding], "assessed")
    else:
        # Sarcopenia is rarely coded: no diagnosis is not evidence of none.
        features.set("sarcopenia", None)
    diabetes = _of(facts, FactKind.TYPE2_DIABETES)
    features.set("type2-diabetes", True if diabetes else (False if has_conditions else None), diabetes)
    events = events_of(facts)
    sglt2 = [
        e
        for e in starts(events, [Drug.SGLT2_INHIBITOR])
        if index.day - _SGLT2_WINDOW <= e.day <= index.day + _SGLT2_WINDOW
    ]
    if sglt2:
        features.set("sglt2-inhibitor", True, [], f"{sglt2[-1].drug.value} {sglt2[-1].day}")
        features.sources["sglt2-inhibitor"] = tuple(sorted({e.source for e in sglt2 if e.source}))
    elif has_conditions and not diabetes:
        features.set("sglt2-inhibitor", False)  # the factor is about SGLT-2 inhibitors in type 2 diabetes
    else:
        features.set("sglt2-inhibitor", False if has_medications else None)
    _kidney(features, facts)
    coded = [f for f in _of(facts, FactKind.GLUCOCORTICOID_LONG_TERM) if _active(f)]
    exposure = systemic_exposure(events, bool(coded), index.day - _STEROID_LOOKBACK, as_of.date())
    if exposure.value is False and not has_medications:
        features.set("glucocorticoids", None)
    else:
        features.set("glucocorticoids", exposure.value, coded, exposure.detail)
        features.sources["glucocorticoids"] = tuple(
            sorted({e.source for e in exposure.events if e.source} | {f.source for f in coded if f.source})
        )


def _kidney(features: PatientFeatures, facts: Sequence[Fact]) -> None:
    egfr = _latest(f for f in _of(facts, FactKind.EGFR) if f.value_num is not None)
    if egfr is not None:
        value = egfr.value_num or 0.0
        category = "stage-4-5" if value < 30 else "stage-3" if value < 60 else "none"
        features.set("chronic-kidney-disease", category, [egfr], f"eGFR {value:.0f}")
        return
    ckd = [f for f in _of(facts, FactKind.CHRONIC_KIDNEY_DISEASE) if _active(f)]
    if ckd:
        stage = max(int(f.attrs.get("stage", 3)) for f in ckd)
        category = "stage-4-5" if stage >= 4 else "stage-3" if stage == 3 else "none"
        features.set("chronic-kidney-disease", category, ckd, f"stage {stage}")
    else:
        features.set("chronic-kidney-disease", None)


def _treatment(
    features: PatientFeatures, facts: Sequence[Fact], index: IndexEvent, has_medications: bool, as_of: datetime
) -> None:
    # The same test of "treated" as the alert rules (exposure.py): a drug active at the index operation or started
    # since, and denosumab stopped by the alerts' own threshold.
    status, events = treatment_status(events_of(facts), index.day, as_of.date())
    if status == "none" and not has_medications:
        features.set("osteoporosis-treatment", None)
        return
    newest = events[-1] if events else None
    detail = {
        "denosumab-stopped": f"denosumab stopped or more than 16 weeks late (last {newest.day if newest else '?'})",
        "treated": f"{newest.drug.value} {newest.day}" if newest else "treated",
        "none": "no anti-osteoporosis drug at or since the operation",
    }[status]
    features.set("osteoporosis-treatment", status, [], detail)
    features.sources["osteoporosis-treatment"] = tuple(sorted({e.source for e in events if e.source}))


def _shown_only(features: PatientFeatures, facts: Sequence[Fact]) -> None:
    ratio = _latest(f for f in _of(facts, FactKind.P1NP_CTX_RATIO) if f.value_num is not None)
    if ratio is not None:
        features.set("p1np-ctx-ratio", ratio.value_num, [ratio], f"{ratio.value_num:.0f} (reported)")
    else:
        # The ratio of a P1NP and a beta-CTX drawn the same day, both in ug/L.
        p1np = _latest(f for f in _of(facts, FactKind.P1NP) if f.value_num)
        ctx = [
            f for f in _of(facts, FactKind.BETA_CTX) if f.value_num and p1np and f.effective_date == p1np.effective_date
        ]
        if p1np is not None and ctx:
            value = (p1np.value_num or 0.0) / (ctx[0].value_num or 1.0)
            features.set("p1np-ctx-ratio", round(value, 1), [p1np, ctx[0]], f"{value:.0f} ({p1np.effective_date})")
        else:
            features.set("p1np-ctx-ratio", None)
    fat = _latest(f for f in _of(facts, FactKind.PARASPINAL_FAT_FRACTION) if f.value_num is not None)
    features.set(
        "paraspinal-fat-fraction",
        fat.value_num if fat else None,
        [fat] if fat else [],
        f"{fat.value_num:.0f} %" if fat else None,
    )
