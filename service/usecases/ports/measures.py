"""What the FLS quality measures read and keep."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Protocol

from service.domain.facts import Fact, FactKind

# The facts the measures read: eligibility (index_episode), bone density, death, and the treating drugs.
_KINDS: Final = frozenset(
    {
        FactKind.BIRTH_DATE,
        FactKind.DECEASED,
        FactKind.MALIGNANCY,
        FactKind.OSTEOPOROSIS,
        FactKind.OSTEOPOROTIC_FRACTURE,
        FactKind.FRACTURE_HISTORY,
        FactKind.VERTEBRAL_FRACTURE,
        FactKind.VERTEBRAL_AUGMENTATION,
        FactKind.DXA_T_SCORE,
        FactKind.DXA_BMD,
        FactKind.BONE_DENSITY_SCAN,
        FactKind.MEDICATION,
    }
)


@dataclass(frozen=True, slots=True)
class FactWindow:
    """Which patients' facts to read: index events in [start, end], denosumab doses in [dose_start, dose_end]."""

    as_of: datetime
    start: date
    end: date
    dose_start: date
    dose_end: date
    kinds: frozenset[FactKind] = _KINDS
    drugs: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AlertRow:
    """An alert opened in the period, as stored."""

    patient_id: str
    code: str
    opened_at: datetime
    first_action_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class ReportRow:
    """A MeasureReport to keep (or kept)."""

    id: str
    measure_id: str
    site: str | None
    period_start: date
    period_end: date
    evaluated_at: datetime
    resource: dict[str, Any]


class MeasureStore(Protocol):
    """What the measures read and keep (adapters/postgres/measures.py)."""

    def facts_by_patient(self, window: FactWindow) -> Iterator[tuple[str, list[Fact]]]:
        """Each candidate patient's facts of the window's kinds (medications of its drugs), known by ``as_of``."""
        ...

    def organizations(self) -> dict[str, str]:
        """Each patient's managingOrganization reference (patients without one are left out)."""
        ...

    def dxa_gap_reasons(self, as_of: datetime) -> dict[str, set[date]]:
        """Per patient, the index days whose bmd-assessment-gap alert was dismissed with a reason by ``as_of``."""
        ...

    def alerts_opened(self, start: datetime, end: datetime, as_of: datetime) -> list[AlertRow]:
        """Alerts opened in [start, end), with their first action by a person and resolution, by ``as_of``."""
        ...

    def save_reports(self, rows: Sequence[ReportRow]) -> None:
        """Keep these reports, replacing earlier evaluations of the same measure, period and site."""
        ...

    def search_reports(
        self,
        measure_id: str | None,
        period_from: date | None,
        period_to: date | None,
        site: str | None,
        sites: Sequence[str] | None,
        limit: int,
    ) -> list[str]:
        """Kept reports (JSON text), newest period first; ``sites`` not None limits to those sites' reports."""
        ...

    def read_report(self, report_id: str) -> tuple[str | None, str] | None:
        """A kept report's site and JSON text."""
        ...
