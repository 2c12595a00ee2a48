"""FHIR date, dateTime and instant strings to the calendar date as written and an aware datetime."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Final

__all__ = ["FhirTime", "parse_time", "period_start", "time_of"]

# FHIR allows years 0001-9999 with any offset, but 0001-01-01T00:00+14:00 is a year-0 instant that PostgreSQL
# stores and Python cannot read back, and the day-counting rules add months to a date, which overflows near 9999.
# A time outside these years is no clinical fact's: the resource is kept, the time is not used.
MIN_YEAR: Final = 1800
MAX_YEAR: Final = 2200


class FhirTime:
    """A point in time from FHIR: the date as the EHR wrote it, and the instant (partial dates: their start)."""

    __slots__ = ("at", "day")

    def __init__(self, day: date, at: datetime) -> None:
        self.day = day
        self.at = at


def parse_time(value: Any) -> FhirTime | None:
    """Parse a FHIR date/dateTime/instant; None for anything else.

    A partial date (2024 or 2024-05) counts from its first day; a date without time is taken at 00:00 UTC for the
    instant, while ``day`` keeps the date exactly as written (day-counting rules use it). Times outside the years
    MIN_YEAR-MAX_YEAR are None too.
    """
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        if len(value) == 4:
            day = date(int(value), 1, 1)
        elif len(value) == 7:
            day = date(int(value[:4]), int(value[5:7]), 1)
        elif len(value) == 10:
            day = date.fromisoformat(value)
        else:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            utc_year = at.astimezone(UTC).year
            return FhirTime(at.date(), at) if MIN_YEAR <= utc_year <= MAX_YEAR else None
    except (ValueError, OverflowError):
        return None
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        return None
    return FhirTime(day, datetime(day.year, day.month, day.day, tzinfo=UTC))


def period_start(period: Any) -> FhirTime | None:
    """The start of a Period (its end when no start is given)."""
    if not isinstance(period, dict):
        return None
    return parse_time(period.get("start")) or parse_time(period.get("end"))


def time_of(resource: dict[str, Any], prefix: str) -> FhirTime | None:
    """The time of a choice element such as effective[x] or performed[x] (dateTime, instant or Period)."""
    return (
        parse_time(resource.get(f"{prefix}DateTime"))
        or parse_time(resource.get(f"{prefix}Instant"))
        or period_start(resource.get(f"{prefix}Period"))
    )
