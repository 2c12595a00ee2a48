"""A Patient resource's name, MRN, birth date and sex, for the worklist."""

from __future__ import annotations

from typing import Any, Final

from service.domain.patient import Demographics
from service.fhir.dates import parse_time

__all__ = ["demographics_of"]

_MRN_TYPE: Final = ("http://terminology.hl7.org/CodeSystem/v2-0203", "MR")
# The worklist sorts by name through a B-tree index, whose entries PostgreSQL caps at about 2.7 kB: a longer name
# would make the whole ingest fail. No one's name is this long; the stored Patient keeps it whole.
MAX_NAME_LENGTH: Final = 200


def _name(patient: dict[str, Any]) -> str | None:
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    if not names:
        return None
    chosen = next((n for n in names if n.get("use") == "official"), None) or next(
        (n for n in names if n.get("use") not in ("old", "maiden")), names[0]
    )
    if isinstance(chosen.get("text"), str) and not chosen.get("family"):
        return _shortened(str(chosen["text"]))
    given = " ".join(g for g in chosen.get("given") or [] if isinstance(g, str))
    family = chosen.get("family") if isinstance(chosen.get("family"), str) else ""
    return _shortened(", ".join(part for part in (family, given) if part)) or None


def _shortened(name: str) -> str:
    return name if len(name) <= MAX_NAME_LENGTH else name[: MAX_NAME_LENGTH - 1] + "…"


def _mrn(patient: dict[str, Any], mrn_system: str | None) -> str | None:
    identifiers = [
        i for i in patient.get("identifier") or [] if isinstance(i, dict) and isinstance(i.get("value"), str)
    ]
    if mrn_system:
        found = next((i for i in identifiers if i.get("system") == mrn_system), None)
        if found:
            return str(found["value"])
    for identifier in identifiers:
        for coding in (identifier.get("type") or {}).get("coding") or []:
            if isinstance(coding, dict) and (coding.get("system"), coding.get("code")) == _MRN_TYPE:
                return str(identifier["value"])
    return str(identifiers[0]["value"]) if identifiers else None


def demographics_of(patient: dict[str, Any], mrn_system: str | None = None) -> Demographics:
    """The worklist's view of a Patient: the official name ("Family, Given"), the MRN (the configured identifier
    system, else the identifier typed MR, else the first), birth date and administrative gender."""
    birth = parse_time(patient.get("birthDate"))
    gender = patient.get("gender")
    return Demographics(
        patient_id=str(patient.get("id")),
        name=_name(patient),
        mrn=_mrn(patient, mrn_system),
        birth_date=birth.day if birth else None,
        sex=gender if isinstance(gender, str) else None,
    )
