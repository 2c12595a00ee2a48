"""A patient's medication timeline: which facts prove a dose, which only intend one, which say it stopped.

docs/sources/alerts.md, 'What counts as evidence': MedicationAdministration (completed), MedicationDispense (completed)
and MedicationStatement (active/completed, doses given elsewhere) prove a dose; a MedicationRequest starts a course but
proves no dose; entered-in-error is ignored (no fact is drawn from it); not-done and stopped mean what they say.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

from service.domain.drugs import Drug
from service.domain.facts import Fact, FactKind

__all__ = ["MedicationEvent", "doses", "events_of", "last_dose", "starts", "stops"]

_DOSE_STATUS: Final = {
    "administration": frozenset({"completed"}),
    "dispense": frozenset({"completed"}),
    "statement": frozenset({"active", "completed"}),
}
# A request starts a course when active (a live order) or completed (all it asked for happened); on-hold is a
# paused order and draft or cancelled ones never started.
_COURSE_STATUS: Final = frozenset({"active", "completed"})
_STOPPED_STATUS: Final = frozenset({"stopped"})
# MedicationRequest intents that are orders; a proposal, plan or option is a suggestion, not a prescription (R4
# request-intent). A request without a stated intent (facts stored before intents were kept) counts as an order.
ORDER_INTENTS: Final = frozenset({"order", "original-order", "reflex-order", "filler-order", "instance-order", None})


@dataclass(frozen=True, slots=True)
class MedicationEvent:
    """One medication fact on the timeline."""

    drug: Drug
    event: str  # administration | dispense | statement | request
    day: date
    status: str | None
    source: str | None = None
    dose_mg: float | None = None
    days_supply: float | None = None
    interval_days: float | None = None
    end_day: date | None = None
    intent: str | None = None  # MedicationRequest.intent
    date_asserted: date | None = None  # MedicationStatement.dateAsserted
    period: bool = False  # a MedicationStatement's effective[x] is a Period (a span of use, not a dose's date)
    quantity: float | None = None  # units dispensed
    route: str | None = None  # the route and site as words, lower case
    ingredient: str | None = None  # which glucocorticoid

    @property
    def proves_dose(self) -> bool:
        """Whether this event shows the drug was given (not merely ordered)."""
        return self.status in _DOSE_STATUS.get(self.event, frozenset())

    @property
    def is_order(self) -> bool:
        """Whether this is a prescription (a request with an order intent), not a proposal or plan."""
        return self.event == "request" and self.intent in ORDER_INTENTS

    @property
    def starts_course(self) -> bool:
        """Whether this event starts or continues a course: a dose, or an order active or completed."""
        return self.proves_dose or (self.is_order and self.status in _COURSE_STATUS)

    @property
    def dose_dated(self) -> bool:
        """Whether the event dates one dose: an administration or dispense, or a completed statement of one day.

        An active statement says the drug is being taken (since its start), not when a dose was given.
        """
        if not self.proves_dose:
            return False
        if self.event != "statement":
            return True
        return self.status == "completed" and not self.period

    @property
    def says_stopped(self) -> bool:
        """Whether the record says the drug was stopped (an order or a statement with status stopped)."""
        return self.status in _STOPPED_STATUS and self.event in ("request", "statement")


def events_of(facts: Iterable[Fact]) -> list[MedicationEvent]:
    """The medication events among the facts, in date order (facts without a date cannot be placed: left out)."""
    out: list[MedicationEvent] = []
    for fact in facts:
        if fact.kind is not FactKind.MEDICATION or fact.effective_date is None:
            continue
        try:
            drug = Drug(str(fact.attrs.get("drug")))
        except ValueError:
            continue
        out.append(
            MedicationEvent(
                drug=drug,
                event=str(fact.attrs.get("event")),
                day=fact.effective_date,
                status=fact.status,
                source=fact.source,
                dose_mg=_number(fact.attrs.get("dose_mg")),
                days_supply=_number(fact.attrs.get("days_supply")),
                interval_days=_number(fact.attrs.get("interval_days")),
                end_day=fact.end_date,
                intent=_text(fact.attrs.get("intent")),
                date_asserted=_day(fact.attrs.get("date_asserted")),
                period=fact.attrs.get("period") is True or fact.end_date is not None,
                quantity=_number(fact.attrs.get("quantity")),
                route=_text(fact.attrs.get("route")),
                ingredient=_text(fact.attrs.get("ingredient")),
            )
        )
    out.sort(key=lambda e: (e.day, e.event, e.source or ""))
    return out


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _day(value: object) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def doses(events: Sequence[MedicationEvent], drugs: Iterable[Drug]) -> list[MedicationEvent]:
    """The events proving a dose of one of these drugs, in date order."""
    wanted = frozenset(drugs)
    return [e for e in events if e.drug in wanted and e.proves_dose]


def starts(events: Sequence[MedicationEvent], drugs: Iterable[Drug]) -> list[MedicationEvent]:
    """The events that start or continue a course of one of these drugs (doses and live orders)."""
    wanted = frozenset(drugs)
    return [e for e in events if e.drug in wanted and e.starts_course]


def stops(events: Sequence[MedicationEvent], drugs: Iterable[Drug]) -> list[MedicationEvent]:
    """The events saying one of these drugs was stopped."""
    wanted = frozenset(drugs)
    return [e for e in events if e.drug in wanted and e.says_stopped]


def last_dose(events: Sequence[MedicationEvent], drugs: Iterable[Drug]) -> MedicationEvent | None:
    """The latest dated dose of one of these drugs (an active statement says the drug is taken, not when a dose
    was given: it is no "last dose")."""
    found = [e for e in doses(events, drugs) if e.dose_dated]
    return found[-1] if found else None
