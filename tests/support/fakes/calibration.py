"""In-memory CalibrationStore and FactReader: what the calibration registry's SQL (adapters/postgres/calibration.sql,
and the fact reads of the assessment session) does that the Recalibrator relies on."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime

from service.domain.calibration import Calibration
from service.domain.facts import Fact, FactKind
from service.usecases.ports.calibration import CalibrationRecord, CalibrationStore, EvaluationRecord, FactReader

__all__ = ["MemoryCalibrationStore", "MemoryFactReader"]


class MemoryFactReader:
    """The stored facts and coverage of the patients asked for."""

    def __init__(self, facts: Mapping[str, list[Fact]], coverage: Mapping[str, set[str]]) -> None:
        self._facts = facts
        self._coverage = coverage

    def facts_of(self, patient_ids: Sequence[str]) -> dict[str, list[Fact]]:
        """See FactReader."""
        return {p: list(self._facts[p]) for p in patient_ids if p in self._facts}

    def coverage_of(self, patient_ids: Sequence[str]) -> dict[str, set[str]]:
        """See FactReader."""
        return {p: set(self._coverage[p]) for p in patient_ids if p in self._coverage}


class MemoryCalibrationStore:
    """Facts put in by the test; the registered calibrations and the evaluations kept by ``record_run``."""

    def __init__(self) -> None:
        self.facts: dict[str, list[Fact]] = {}
        self.coverage: dict[str, set[str]] = {}
        self.calibrations: dict[str, CalibrationRecord] = {}  # by version (the primary key)
        self.evaluations: list[EvaluationRecord] = []
        self.reads = 0  # fact_reader transactions opened

    def put(self, patient_id: str, facts: Iterable[Fact], coverage: Iterable[str]) -> None:
        """Store a patient's facts and the resource types their record holds."""
        self.facts.setdefault(patient_id, []).extend(facts)
        self.coverage.setdefault(patient_id, set()).update(coverage)

    def active_calibration(self, base_version: str) -> Calibration | None:
        """See CalibrationStore."""
        live = [
            r for r in self.calibrations.values() if r.calibration.base_version == base_version and r.retired_at is None
        ]
        # ORDER BY fitted_at DESC, version DESC
        newest = max(live, key=lambda r: (r.fitted_at, r.calibration.version), default=None)
        return newest.calibration if newest else None

    def record_run(self, evaluation: EvaluationRecord, calibration: CalibrationRecord | None) -> None:
        """See CalibrationStore. Registering a version again brings it back into use (ON CONFLICT: not retired, fitted
        now), keeping its first numbers."""
        if calibration is not None:
            version = calibration.calibration.version
            kept = self.calibrations.get(version)
            self.calibrations[version] = (
                calibration
                if kept is None
                else dataclasses.replace(kept, retired_at=None, fitted_at=calibration.fitted_at)
            )
        self.evaluations.append(evaluation)

    def _augmented(self) -> list[str]:
        return sorted(
            p for p, facts in self.facts.items() if any(f.kind is FactKind.VERTEBRAL_AUGMENTATION for f in facts)
        )

    def patients_with_augmentation(self, after: str, limit: int) -> list[str]:
        """See CalibrationStore."""
        return [p for p in self._augmented() if p > after][:limit]

    def patients_operated_by(self, day: date, after: str, limit: int) -> list[str]:
        """See CalibrationStore."""

        def operated(facts: list[Fact]) -> bool:
            return any(
                f.kind is FactKind.VERTEBRAL_AUGMENTATION
                and f.status == "completed"
                and f.effective_date is not None
                and f.effective_date <= day
                for f in facts
            )

        return sorted(p for p, facts in self.facts.items() if p > after and operated(facts))[:limit]

    @contextlib.contextmanager
    def fact_reader(self) -> Iterator[FactReader]:
        """See CalibrationStore."""
        self.reads += 1
        yield MemoryFactReader(self.facts, self.coverage)

    def retire_all(self, now: datetime) -> None:
        """Take every calibration out of use (what ``refracture recalibrate --retire`` does)."""
        for version, record in self.calibrations.items():
            if record.retired_at is None:
                self.calibrations[version] = dataclasses.replace(record, retired_at=now)


_STORE: type[CalibrationStore] = MemoryCalibrationStore
