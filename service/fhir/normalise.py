"""Resources to clinical facts: the typed, unit-converted things the risk model and the alert rules read."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Final

from service.domain.facts import Fact, FactKind
from service.fhir import systems as S
from service.fhir import units
from service.fhir.dates import FhirTime, parse_time, period_start, time_of
from service.fhir.levels import levels_of
from service.fhir.medications import classify
from service.fhir.references import patient_of, split_reference
from service.fhir.terminology import Concept, Terminology

__all__ = ["MedicationResolver", "Normalised", "Normaliser", "UnrecognisedCode"]

MedicationResolver = Callable[[str], dict[str, Any] | None]

_FEMORAL_NECK: Final = "29627003"  # SNOMED "Structure of neck of femur": the neck has no DXA LOINC of its own
_DROPPED_OBSERVATION: Final = frozenset({"entered-in-error", "cancelled"})
_DROPPED_VERIFICATION: Final = frozenset({"refuted", "entered-in-error"})
# Unrecognised codes are counted under a B-tree key (system, code), whose entries PostgreSQL caps at about 2.7 kB:
# a longer pair would fail the whole ingest. No terminology's codes are this long, so such a coding is not counted.
_MAX_COUNTED_CODE: Final = 512


@dataclass(frozen=True, slots=True)
class UnrecognisedCode:
    """A coding refracture did not recognise: stored with its resource and counted, never an error."""

    resource_type: str
    system: str
    code: str
    display: str | None


@dataclass(slots=True)
class Normalised:
    """What one resource contributes: its patient, its facts, the codes not recognised, what it depends on."""

    patient_id: str | None
    facts: list[Fact] = field(default_factory=list)
    unrecognised: list[UnrecognisedCode] = field(default_factory=list)
    medication_ref: str | None = None


class Normaliser:
    """Turns one stored resource into facts (pure: the Medication lookup is passed in)."""

    def __init__(self, terminology: Terminology) -> None:
        self._terms = terminology

    def normalise(self, resource: dict[str, Any], resolve_medication: MedicationResolver) -> Normalised:
        """Facts of one resource.

        Args:
            resource: a validated resource of an accepted input type.
            resolve_medication: finds a referenced Medication ("Medication/id") when one is needed.

        Returns:
            The patient, facts, unrecognised codes and the Medication the facts depend on.
        """
        resource_type = resource.get("resourceType")
        out = Normalised(patient_of(resource))
        if resource_type == "Patient":
            self._patient(resource, out)
        elif resource_type == "Observation":
            self._observation(resource, out)
        elif resource_type == "Procedure":
            self._procedure(resource, out)
        elif resource_type == "Condition":
            self._condition(resource, out)
        elif resource_type in (
            "MedicationAdministration",
            "MedicationDispense",
            "MedicationStatement",
            "MedicationRequest",
        ):
            self._medication_use(resource, out, resolve_medication)
        return out

    # --- Patient ---------------------------------------------------------------------------------------
    @staticmethod
    def _patient(resource: dict[str, Any], out: Normalised) -> None:
        birth = parse_time(resource.get("birthDate"))
        if birth is not None:
            out.facts.append(Fact(FactKind.BIRTH_DATE, effective_date=birth.day, effective_at=birth.at))
        gender = resource.get("gender")
        if isinstance(gender, str):
            out.facts.append(Fact(FactKind.SEX, value_text=gender))
        died = parse_time(resource.get("deceasedDateTime"))
        if died is not None or resource.get("deceasedBoolean") is True:
            out.facts.append(
                Fact(
                    FactKind.DECEASED,
                    effective_date=died.day if died else None,
                    effective_at=died.at if died else None,
                )
            )

    # --- Observation -----------------------------------------------------------------------------------
    def _observation(self, resource: dict[str, Any], out: Normalised) -> None:
        status = resource.get("status")
        if status in _DROPPED_OBSERVATION:
            return
        when = time_of(resource, "effective") or parse_time(resource.get("issued"))
        site_attrs = self._site_attrs(resource.get("bodySite"))
        if _timed(resource, "effective"):
            site_attrs["timed"] = True
        part_of = [r.get("reference") for r in resource.get("partOf") or [] if isinstance(r, dict)]
        parts: list[tuple[dict[str, Any], dict[str, Any]]] = [(resource.get("code") or {}, resource)]
        parts += [
            (component.get("code") or {}, component)
            for component in resource.get("component") or []
            if isinstance(component, dict)
        ]
        for code, holder in parts:
            concept = self._terms.first_concept(code.get("coding") or [])
            if concept is None:
                self._unrecognised("Observation", code, out)
                continue
            fact = _measure_fact(concept, holder, when, str(status), site_attrs, part_of)
            if fact is not None and fact.kind is FactKind.COBB_ANGLE and "plane" not in fact.attrs:
                plane = _cobb_plane(resource, holder)
                if plane is not None:
                    fact = replace(fact, attrs={**fact.attrs, "plane": plane})
            if fact is not None:
                out.facts.append(fact)

    @staticmethod
    def _site_attrs(body_site: Any) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        levels = levels_of(body_site)
        if levels:
            attrs["levels"] = levels
        if isinstance(body_site, dict):
            for coding in body_site.get("coding") or []:
                if isinstance(coding, dict) and coding.get("code") == _FEMORAL_NECK:
                    attrs["site"] = "femoral-neck"
        return attrs

    # --- Procedure -------------------------------------------------------------------------------------
    def _procedure(self, resource: dict[str, Any], out: Normalised) -> None:
        status = resource.get("status")
        if status == "entered-in-error":
            return
        code = resource.get("code") or {}
        concept = self._terms.first_concept(code.get("coding") or [])
        if concept is None:
            self._unrecognised("Procedure", code, out)
            return
        when = time_of(resource, "performed")
        attrs = dict(concept.attrs)
        levels = levels_of(resource.get("bodySite"))
        if levels:
            attrs["levels"] = levels
        if _timed(resource, "performed"):
            attrs["timed"] = True
        out.facts.append(
            Fact(
                concept.kind,
                status=str(status),
                effective_date=when.day if when else None,
                effective_at=when.at if when else None,
                attrs=attrs,
            )
        )

    # --- Condition -------------------------------------------------------------------------------------
    def _condition(self, resource: dict[str, Any], out: Normalised) -> None:
        verification = _first_code(resource.get("verificationStatus"))
        if verification in _DROPPED_VERIFICATION:
            return
        code = resource.get("code") or {}
        concept = self._terms.first_concept(code.get("coding") or [])
        if concept is None:
            self._unrecognised("Condition", code, out)
            return
        recorded = parse_time(resource.get("recordedDate"))
        onset = time_of(resource, "onset")
        if onset is None and concept.kind not in _FRACTURES:
            # A comorbidity recorded on a day was known by then; a fracture's date is its onset only
            # (docs/sources/alerts.md: never recordedDate), so a fracture without onset has an unknown date.
            onset = recorded
        abated = time_of(resource, "abatement")
        attrs = dict(concept.attrs)
        if recorded is not None:
            attrs["recorded_date"] = recorded.day.isoformat()
        encounter = _encounter(code)
        if encounter is not None:
            attrs["encounter"] = encounter
        levels = levels_of(resource.get("bodySite"))
        if levels:
            attrs["levels"] = levels
        if verification:
            attrs["verification"] = verification
        out.facts.append(
            Fact(
                concept.kind,
                status=_first_code(resource.get("clinicalStatus")),
                effective_date=onset.day if onset else None,
                effective_at=onset.at if onset else None,
                end_date=abated.day if abated else None,
                attrs=attrs,
            )
        )

    # --- Medicines -------------------------------------------------------------------------------------
    def _medication_use(
        self, resource: dict[str, Any], out: Normalised, resolve_medication: MedicationResolver
    ) -> None:
        status = resource.get("status")
        if status == "entered-in-error":
            return
        resource_type = str(resource["resourceType"])
        concepts: list[dict[str, Any]] = []
        ingredients: list[dict[str, Any]] = []
        if isinstance(resource.get("medicationCodeableConcept"), dict):
            concepts.append(resource["medicationCodeableConcept"])
        medication = self._referenced_medication(resource, out, resolve_medication)
        if medication is not None:
            if isinstance(medication.get("code"), dict):
                concepts.append(medication["code"])
            for item in medication.get("ingredient") or []:
                if isinstance(item, dict):
                    ingredients.append(item)
                    if isinstance(item.get("itemCodeableConcept"), dict):
                        concepts.append(item["itemCodeableConcept"])
        dose = _dose(resource)
        match = classify(concepts, ingredients, dose, self._terms.local_target)
        if match is None:
            for concept in concepts:
                self._unrecognised(resource_type, concept, out)
            return
        when, end = _medication_time(resource)
        attrs: dict[str, Any] = {"drug": match.drug.value, "event": _EVENTS[resource_type]}
        if match.dose_mg is not None:
            attrs["dose_mg"] = match.dose_mg
        if match.ingredient is not None:
            attrs["ingredient"] = match.ingredient
        attrs.update(_medication_extras(resource))
        out.facts.append(
            Fact(
                FactKind.MEDICATION,
                status=str(status),
                effective_date=when.day if when else None,
                effective_at=when.at if when else None,
                end_date=end.day if end else None,
                attrs=attrs,
            )
        )

    @staticmethod
    def _referenced_medication(
        resource: dict[str, Any], out: Normalised, resolve_medication: MedicationResolver
    ) -> dict[str, Any] | None:
        ref = resource.get("medicationReference")
        reference = ref.get("reference") if isinstance(ref, dict) else None
        if not isinstance(reference, str):
            return None
        if reference.startswith("#"):
            for contained in resource.get("contained") or []:
                if isinstance(contained, dict) and contained.get("id") == reference[1:]:
                    return contained
            return None
        parsed = split_reference(reference)
        if parsed is None or parsed[0] != "Medication":
            return None
        out.medication_ref = f"Medication/{parsed[1]}"
        return resolve_medication(out.medication_ref)

    @staticmethod
    def _unrecognised(resource_type: str, concept: Any, out: Normalised) -> None:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings or []:
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                system = str(coding.get("system") or "")
                if len(system) + len(coding["code"]) > _MAX_COUNTED_CODE:
                    continue
                display = coding.get("display")
                out.unrecognised.append(
                    UnrecognisedCode(
                        resource_type,
                        system,
                        coding["code"],
                        display if isinstance(display, str) else None,
                    )
                )


_EVENTS: Final = {
    "MedicationAdministration": "administration",
    "MedicationDispense": "dispense",
    "MedicationStatement": "statement",
    "MedicationRequest": "request",
}

_PERIOD_DAYS: Final = {
    "s": 1 / 86400,
    "min": 1 / 1440,
    "h": 1 / 24,
    "d": 1.0,
    "wk": 7.0,
    "mo": 30.4375,
    "a": 365.25,
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return float(value)


_FRACTURES: Final = frozenset(
    {
        FactKind.VERTEBRAL_FRACTURE,
        FactKind.NON_VERTEBRAL_FRACTURE,
        FactKind.OSTEOPOROTIC_FRACTURE,
        FactKind.FRACTURE_HISTORY,
    }
)
# ICD-10-CM fracture codes' 7th character: A/B initial encounter, D/G/K/P (and for open fractures E/F/H/J/M/N/Q/R)
# subsequent encounter, S sequela (ICD-10-CM tabular, chapter 13 and 19 instructions; docs/sources/codes.md §3).
_SEVENTH: Final = {"A": "initial", "B": "initial", "S": "sequela", **dict.fromkeys("DEFGHJKMNPQR", "subsequent")}
_COBB_SAGITTAL: Final = re.compile(r"kyphos|kyphotic|sagittal|lordo", re.IGNORECASE)
_COBB_CORONAL: Final = re.compile(r"scolio|coronal|frontal", re.IGNORECASE)


def _timed(resource: dict[str, Any], prefix: str) -> bool:
    """Whether the element's time of day is given (a dateTime with a time), not only its date."""
    values = [resource.get(f"{prefix}DateTime"), resource.get(f"{prefix}Instant")]
    period = resource.get(f"{prefix}Period")
    if isinstance(period, dict):
        values.append(period.get("start"))
    return any(isinstance(v, str) and "T" in v for v in values)


def _encounter(code: Any) -> str | None:
    """initial | subsequent | sequela, from an ICD-10-CM fracture code's 7th character; None otherwise."""
    codings = code.get("coding") if isinstance(code, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        if not isinstance(coding, dict) or coding.get("system") != S.ICD10CM:
            continue
        value = str(coding.get("code") or "").replace(".", "").upper()
        if len(value) == 7 and value[0] in "MS":
            return _SEVENTH.get(value[6])
    return None


def _words(concept: Any) -> list[str]:
    if not isinstance(concept, dict):
        return []
    words = [concept["text"]] if isinstance(concept.get("text"), str) else []
    return words + [
        c["display"] for c in concept.get("coding") or [] if isinstance(c, dict) and isinstance(c.get("display"), str)
    ]


def _cobb_plane(resource: dict[str, Any], holder: dict[str, Any]) -> str | None:
    """coronal | sagittal from the words around a Cobb angle; SNOMED 285285000 itself carries no plane."""
    words = _words(holder.get("code")) + _words(resource.get("code")) + _words(resource.get("method"))
    words += _words(resource.get("bodySite"))
    words += [n["text"] for n in resource.get("note") or [] if isinstance(n, dict) and isinstance(n.get("text"), str)]
    text = " ".join(words)
    sagittal, coronal = bool(_COBB_SAGITTAL.search(text)), bool(_COBB_CORONAL.search(text))
    if sagittal == coronal:
        return None  # neither, or both: the plane is unknown
    return "sagittal" if sagittal else "coronal"


def _first_code(concept: Any) -> str | None:
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            return str(coding["code"])
    return None


def _measure_fact(
    concept: Concept,
    holder: dict[str, Any],
    when: FhirTime | None,
    status: str,
    site_attrs: dict[str, Any],
    part_of: list[Any],
) -> Fact | None:
    attrs: dict[str, Any] = {**concept.attrs, **site_attrs}
    if part_of:
        attrs["part_of"] = [p for p in part_of if isinstance(p, str)]
    value_num: float | None = None
    value_text: str | None = None
    unit: str | None = None
    quantity = holder.get("valueQuantity")
    if isinstance(quantity, dict) and _number(quantity.get("value")) is not None:
        raw = _number(quantity.get("value"))
        if concept.unit_family is None or raw is None:
            return None
        # The UCUM code first, then the unit as displayed: HL7's own BMD example codes 'g/cm-2' (g·cm², wrong)
        # but displays 'g/cm²' (right).
        sent: list[str | None] = [u for u in (quantity.get("code"), quantity.get("unit")) if isinstance(u, str)]
        sent = sent or [None]
        for sent_unit in sent:
            value_num = units.convert(raw, sent_unit, concept.unit_family)
            if value_num is not None:
                unit = units.family(concept.unit_family).canonical
                break
        else:
            # Keep what was sent, flagged, so a unit problem is visible instead of a silently wrong number.
            attrs["unit_problem"] = f"{raw} {sent[0] or '(no unit)'}"
    elif isinstance(holder.get("valueBoolean"), bool):
        value_num = 1.0 if holder["valueBoolean"] else 0.0
        value_text = "true" if holder["valueBoolean"] else "false"
    elif _number(holder.get("valueInteger")) is not None:
        value_num = _number(holder.get("valueInteger"))
        unit = units.family(concept.unit_family).canonical if concept.unit_family else None
    elif isinstance(holder.get("valueCodeableConcept"), dict):
        coded = holder["valueCodeableConcept"]
        value_text = coded.get("text") if isinstance(coded.get("text"), str) else _first_code(coded)
        # A coded finding (e.g. where cement leaked) means the finding is present.
        value_num = 1.0
    elif isinstance(holder.get("valueString"), str):
        value_text = holder["valueString"]
    else:
        return None
    return Fact(
        concept.kind,
        value_num=value_num,
        value_text=value_text,
        unit=unit,
        effective_date=when.day if when else None,
        effective_at=when.at if when else None,
        status=status,
        attrs=attrs,
    )


def _dose(resource: dict[str, Any]) -> dict[str, Any] | None:
    dosage = resource.get("dosage")
    if isinstance(dosage, dict) and isinstance(dosage.get("dose"), dict):
        return dict(dosage["dose"])  # MedicationAdministration
    instructions = resource.get("dosageInstruction") or resource.get("dosage") or []
    for instruction in instructions if isinstance(instructions, list) else []:
        for dose_rate in (instruction.get("doseAndRate") or []) if isinstance(instruction, dict) else []:
            if isinstance(dose_rate, dict) and isinstance(dose_rate.get("doseQuantity"), dict):
                return dict(dose_rate["doseQuantity"])
    return None


def _medication_time(resource: dict[str, Any]) -> tuple[FhirTime | None, FhirTime | None]:
    resource_type = resource["resourceType"]
    if resource_type == "MedicationDispense":
        return parse_time(resource.get("whenHandedOver")) or parse_time(resource.get("whenPrepared")), None
    if resource_type == "MedicationRequest":
        validity = (resource.get("dispenseRequest") or {}).get("validityPeriod")
        end = parse_time(validity.get("end")) if isinstance(validity, dict) else None
        return parse_time(resource.get("authoredOn")) or period_start(validity), end
    period = resource.get("effectivePeriod")
    end = parse_time(period.get("end")) if isinstance(period, dict) else None
    start = time_of(resource, "effective")
    if start is None and resource_type == "MedicationStatement":
        start = parse_time(resource.get("dateAsserted"))
    return start, end


def _medication_extras(resource: dict[str, Any]) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    resource_type = resource.get("resourceType")
    if resource_type == "MedicationRequest" and isinstance(resource.get("intent"), str):
        extras["intent"] = resource["intent"]
    days_supply = resource.get("daysSupply")
    if isinstance(days_supply, dict) and _number(days_supply.get("value")) is not None:
        extras["days_supply"] = _number(days_supply.get("value"))
    dispense_request = resource.get("dispenseRequest")
    if isinstance(dispense_request, dict):
        duration = dispense_request.get("expectedSupplyDuration")
        if isinstance(duration, dict):
            value, unit = _number(duration.get("value")), duration.get("code") or duration.get("unit")
            if value is not None and isinstance(unit, str) and unit in _PERIOD_DAYS:
                extras["days_supply"] = value * _PERIOD_DAYS[unit]
    quantity = resource.get("quantity")
    if isinstance(quantity, dict) and _number(quantity.get("value")) is not None:
        extras["quantity"] = _number(quantity.get("value"))
    instructions = resource.get("dosageInstruction") or resource.get("dosage")
    interval = _interval_days(instructions)
    if interval is not None:
        extras["interval_days"] = interval
    route = _route_text(resource.get("dosage"), instructions)
    if route:
        extras["route"] = route
    if resource_type == "MedicationStatement":
        asserted = parse_time(resource.get("dateAsserted"))
        if asserted is not None:
            extras["date_asserted"] = asserted.day.isoformat()
        if isinstance(resource.get("effectivePeriod"), dict):
            extras["period"] = True
    return extras


def _route_text(dosage: Any, instructions: Any) -> str | None:
    """The route as words (text and displays of every route given), lower case; None when none is given."""
    holders = [dosage] if isinstance(dosage, dict) else []
    holders += [i for i in instructions if isinstance(i, dict)] if isinstance(instructions, list) else []
    words: list[str] = []
    for holder in holders:
        for key in ("route", "site", "method"):
            concept = holder.get(key)
            if not isinstance(concept, dict):
                continue
            if isinstance(concept.get("text"), str):
                words.append(concept["text"])
            for coding in concept.get("coding") or []:
                if isinstance(coding, dict) and isinstance(coding.get("display"), str):
                    words.append(coding["display"])
        if isinstance(holder.get("text"), str):
            words.append(holder["text"])
    return " ".join(words).lower()[:500] or None


def _interval_days(instructions: Any) -> float | None:
    for instruction in instructions if isinstance(instructions, list) else []:
        repeat = ((instruction.get("timing") or {}).get("repeat") or {}) if isinstance(instruction, dict) else {}
        period = _number(repeat.get("period"))
        unit = repeat.get("periodUnit")
        frequency = _number(repeat.get("frequency")) or 1.0
        if period is not None and isinstance(unit, str) and unit in _PERIOD_DAYS:
            return period * _PERIOD_DAYS[unit] / frequency
    return None
