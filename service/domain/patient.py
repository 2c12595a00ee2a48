"""Who the patient is, for the people who call them: name, MRN, birth date, sex."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = ["Demographics", "age_on"]


@dataclass(frozen=True, slots=True)
class Demographics:
    """A patient's identifying details as the EHR sent them."""

    patient_id: str
    name: str | None
    mrn: str | None
    birth_date: date | None
    sex: str | None


def age_on(birth_date: date | None, day: date) -> int | None:
    """Age in whole years on a day."""
    if birth_date is None:
        return None
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))
