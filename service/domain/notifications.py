"""The daily notification digest (issue 18, item 2): what an owner is told, with the minimum necessary patient data.

Pure: the candidates and the day are passed in; what was already sent is the use case's business. A digest lists
new high-risk patients, denosumab doses due within 14 days or overdue, and treatment gaps past the FLS window; each
line has a stable key (the alert's id, or ``high-risk/{patient}``) so the record of what was sent keeps a line from
being sent twice on a day.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Any, Final

from service.domain.alert_types import AlertType

__all__ = [
    "DUE_WITHIN_DAYS",
    "Digest",
    "DigestAlert",
    "DigestItem",
    "DigestPatient",
    "PatientData",
    "Section",
    "build_digest",
    "initials",
    "select_items",
]

# "Denosumab doses due in 14 days or overdue" (issue 18): two weeks is time to book an infusion slot.
DUE_WITHIN_DAYS: Final = 14
HIGH_RISK_KEY: Final = "high-risk"


class PatientData(StrEnum):
    """How much about a patient a message carries (REFRACTURE_NOTIFY_PATIENT_DATA)."""

    NONE = "none"  # counts and worklist links only
    INITIALS_MRN = "initials-mrn"


class Section(StrEnum):
    """The digest's sections, in the order they are listed."""

    HIGH_RISK = "new-high-risk"
    DENOSUMAB = "denosumab-due-or-overdue"
    TREATMENT_GAP = "treatment-gap"


_TITLES: Final[dict[Section, str]] = {
    Section.HIGH_RISK: "New high-risk patients",
    Section.DENOSUMAB: f"Denosumab doses due within {DUE_WITHIN_DAYS} days or overdue",
    Section.TREATMENT_GAP: "Treatment gaps past the FLS window",
}
_DENOSUMAB_LATE: Final = {AlertType.DENOSUMAB_OVERDUE, AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON}


@dataclass(frozen=True, slots=True)
class DigestAlert:
    """An active alert as the digest needs it."""

    alert_id: str
    patient_id: str
    code: str
    due_date: date
    site: str | None
    name: str | None
    mrn: str | None


@dataclass(frozen=True, slots=True)
class DigestPatient:
    """A patient whose latest assessment is in the high band."""

    patient_id: str
    site: str | None
    name: str | None
    mrn: str | None


@dataclass(frozen=True, slots=True)
class DigestItem:
    """One line of a digest: ``key`` is what the record of sent messages is keyed on."""

    key: str
    section: Section
    patient_id: str
    code: str
    site: str | None
    due_date: date | None = None
    name: str | None = field(default=None, repr=False)
    mrn: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Digest:
    """A message for one owner: a subject, a plain-text body (e-mail) and a JSON body (webhook)."""

    owner: str
    day: date
    keys: tuple[str, ...]
    subject: str
    text: str
    payload: dict[str, Any]


def select_items(alerts: Iterable[DigestAlert], high_risk: Iterable[DigestPatient], day: date) -> list[DigestItem]:
    """The lines a digest on ``day`` may hold, before anything already sent is taken out.

    A treatment-gap alert is raised only once the FLS window (16 weeks, docs/sources/alerts.md) has passed, so
    every active one is past it; a denosumab-dose-due alert counts when its due date is within 14 days.
    """
    items: list[DigestItem] = [
        DigestItem(
            f"{HIGH_RISK_KEY}/{p.patient_id}",
            Section.HIGH_RISK,
            p.patient_id,
            HIGH_RISK_KEY,
            p.site,
            None,
            p.name,
            p.mrn,
        )
        for p in high_risk
    ]
    horizon = day + timedelta(days=DUE_WITHIN_DAYS)
    for alert in alerts:
        if alert.code == AlertType.TREATMENT_GAP:
            section = Section.TREATMENT_GAP
        elif alert.code in _DENOSUMAB_LATE or (
            alert.code == AlertType.DENOSUMAB_DOSE_DUE and alert.due_date <= horizon
        ):
            section = Section.DENOSUMAB
        else:
            continue
        items.append(
            DigestItem(
                alert.alert_id, section, alert.patient_id, alert.code, alert.site, alert.due_date, alert.name, alert.mrn
            )
        )
    return sorted(items, key=lambda i: (list(Section).index(i.section), i.due_date or day, i.key))


def initials(name: str | None) -> str:
    """The worklist's "Doe, Jane Q." (family, given: service/fhir/demographics.py) -> "J.Q.D."; "" for no name."""
    family, _, given = (name or "").partition(",")
    ordered = f"{given} {family}" if given else family
    parts = [p for p in ordered.split() if p[:1].isalpha()]
    return "".join(f"{p[0].upper()}." for p in parts)


def _patient_link(worklist_url: str, patient_id: str) -> str:
    return f"{worklist_url}/patients/{patient_id}"


def build_digest(
    owner: str, owner_display: str, items: Sequence[DigestItem], day: date, mode: PatientData, worklist_url: str
) -> Digest:
    """The message for one owner's ``items`` on ``day``.

    ``none`` carries counts and the worklist's link only (no patient-level detail, not even the opaque patient id:
    a link per patient would tell how many patients and which); ``initials-mrn`` adds a line per item with the
    patient's initials and MRN and a link to the patient's page.
    """
    counts = {section: sum(1 for i in items if i.section == section) for section in Section}
    lines = [f"refracture daily digest for {owner_display}, {day.isoformat()}", ""]
    sections: list[dict[str, Any]] = []
    for section in Section:
        lines.append(f"{_TITLES[section]}: {counts[section]}")
        entry: dict[str, Any] = {"section": section.value, "title": _TITLES[section], "count": counts[section]}
        if mode is PatientData.INITIALS_MRN:
            entries = []
            for item in (i for i in items if i.section == section):
                link = _patient_link(worklist_url, item.patient_id)
                due = f", due {item.due_date.isoformat()}" if item.due_date else ""
                lines.append(f"  - {initials(item.name) or '?'} MRN {item.mrn or '?'} ({item.code}{due}) {link}")
                entries.append(
                    {
                        "initials": initials(item.name),
                        "mrn": item.mrn,
                        "alert": item.code,
                        "due": item.due_date.isoformat() if item.due_date else None,
                        "link": link,
                    }
                )
            entry["items"] = entries
        sections.append(entry)
    lines += ["", f"Open the worklist: {worklist_url}", ""]
    total = len(items)
    return Digest(
        owner=owner,
        day=day,
        keys=tuple(i.key for i in items),
        subject=f"refracture: {total} item{'s' if total != 1 else ''} for {owner_display} on {day.isoformat()}",
        text="\n".join(lines),
        payload={
            "type": "refracture.digest",
            "owner": owner,
            "owner_display": owner_display,
            "day": day.isoformat(),
            "patient_data": mode.value,
            "total": total,
            "sections": sections,
            "worklist": worklist_url,
        },
    )
