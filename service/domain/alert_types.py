"""The alerts refracture raises (docs/sources/alerts.md): codes, priorities and plain-language titles."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class AlertType(StrEnum):
    """Codes of the CodeSystem https://refracture.dev/fhir/CodeSystem/alert-type."""

    DENOSUMAB_DOSE_DUE = "denosumab-dose-due"
    DENOSUMAB_OVERDUE = "denosumab-overdue"
    DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON = "denosumab-stopped-without-follow-on"
    BMD_ASSESSMENT_GAP = "bmd-assessment-gap"
    TREATMENT_GAP = "treatment-gap"
    ADHERENCE_CHECK_DUE = "adherence-check-due"


@dataclass(frozen=True, slots=True)
class AlertTypeInfo:
    """How an alert reads to a care coordinator."""

    title: str
    definition: str
    priority: str  # routine | urgent (FHIR request-priority)


ALERT_TYPES: Final[dict[AlertType, AlertTypeInfo]] = {
    AlertType.DENOSUMAB_DOSE_DUE: AlertTypeInfo(
        "Denosumab dose due",
        "The last denosumab 60 mg dose was at least 5 months ago and no later dose is recorded: schedule the next "
        "dose by 6 months after the last.",
        "routine",
    ),
    AlertType.DENOSUMAB_OVERDUE: AlertTypeInfo(
        "Denosumab dose overdue",
        "The last denosumab 60 mg dose was more than 6 months and 4 weeks ago, with no later dose and no follow-on "
        "drug: give the dose now or start zoledronic acid; check CTX.",
        "urgent",
    ),
    AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON: AlertTypeInfo(
        "Denosumab stopped without follow-on",
        "Denosumab was stopped, or the last dose is more than 16 weeks late, and no follow-on drug was started: "
        "start zoledronic acid (or alendronate) now; CTX at 3 and 6 months.",
        "urgent",
    ),
    AlertType.BMD_ASSESSMENT_GAP: AlertTypeInfo(
        "Bone density not assessed",
        "The fracture or augmentation was at least 12 weeks ago and no bone density result exists from the 2 years "
        "before it or any time after: order DXA.",
        "routine",
    ),
    AlertType.TREATMENT_GAP: AlertTypeInfo(
        "No anti-osteoporosis treatment",
        "The fracture or augmentation was at least 16 weeks ago and no anti-osteoporosis drug is active at it or "
        "started after it: start treatment per local protocol.",
        "urgent",
    ),
    AlertType.ADHERENCE_CHECK_DUE: AlertTypeInfo(
        "Adherence check due",
        "A drug started after the fracture has had no further dose or refill where one was due for a year: review "
        "adherence.",
        "routine",
    ),
}


def title_of(code: str) -> str:
    """The plain-language title of an alert code (the code itself when it is not one of ours)."""
    try:
        return ALERT_TYPES[AlertType(code)].title
    except ValueError:
        return code
