"""The clinical use cases wired on the in-memory fakes as service/composition/parts.py wires them on PostgreSQL: ingest,
assess, evaluate alerts, sweep, deliver. For unit tests of the use cases (tests/unit/test_assessor.py and its
neighbours)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

from service.domain.alert_rules import AlertConfig
from service.domain.backoff import RetryPolicy
from service.domain.calibration import Calibration
from service.fhir.bundle import plan_bundle
from service.fhir.normalise import Normaliser
from service.fhir.terminology import Terminology
from service.usecases.alerts import AlertEvaluator
from service.usecases.assess import Assessor
from service.usecases.ingest import Ingestor
from service.usecases.patient_pipeline import PatientPipeline
from service.usecases.ports.alerts import AlertStore
from service.usecases.ports.assessment import AssessmentStore
from service.usecases.ports.ingest import Store
from service.usecases.ports.patient import PatientStore
from service.usecases.ports.writeback import WritebackStore
from service.usecases.sweep import Sweeper
from service.usecases.writeback import CircuitBreaker, Deliverer
from tests.support.clock import ManualClock
from tests.support.fakes import FakeEhr, MemoryStore, RecordingMetrics
from tests.support.records import bundle

__all__ = ["T0", "Clinic", "ClinicStore", "UseCases", "local_day", "wire"]

T0: Final = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
_ZONE: Final = ZoneInfo("Europe/Berlin")
_TERMINOLOGY = Terminology()  # read once: its tables do not change between tests


def local_day(moment: datetime) -> date:
    """The service's calendar day (Core.local_day for REFRACTURE_TIMEZONE=Europe/Berlin)."""
    return moment.astimezone(_ZONE).date()


class ClinicStore(Store, AssessmentStore, AlertStore, PatientStore, WritebackStore, Protocol):
    """Every port the clinical use cases need of the database: MemoryStore, or the PostgreSQL adapters together
    (tests/integration/test_fakes_parity.py)."""


@dataclass
class UseCases:
    """The use cases as the composition builds them."""

    ingestor: Ingestor
    assessor: Assessor
    evaluator: AlertEvaluator
    pipeline: PatientPipeline
    sweeper: Sweeper
    deliverer: Deliverer


def wire(
    store: ClinicStore,
    clock: ManualClock[datetime],
    ehr: FakeEhr | None,
    metrics: RecordingMetrics,
    *,
    calibration: Callable[[], Calibration | None] | None = None,
    sweep_batch_size: int = 500,
    sweep_workers: int = 2,
    policy: RetryPolicy | None = None,
    breaker_failures: int = 50,
    write_mode: str = "auto",
) -> UseCases:
    """The use cases on these ports, wired as service/composition/parts.py wires them."""
    assessor = Assessor(store, clock, calibration)
    evaluator = AlertEvaluator(store, clock, AlertConfig(), local_day, metrics)
    pipeline = PatientPipeline(store, assessor, evaluator, clock)
    deliverer = Deliverer(
        store,
        ehr,
        clock,
        policy=policy or RetryPolicy(2.0, 300.0, 86400.0),
        mode_setting=write_mode,
        breaker=CircuitBreaker(breaker_failures, 600.0),
        lease_s=120.0,
        batch_size=100,
        capability_refresh_s=3600.0,
        software="refracture test",
        random_source=lambda: 1.0,  # deterministic backoff: always the full (capped) delay
        metrics=metrics,
    )
    return UseCases(
        Ingestor(store, Normaliser(_TERMINOLOGY), clock),
        assessor,
        evaluator,
        pipeline,
        Sweeper(store, pipeline, clock, local_day, sweep_batch_size, sweep_workers),
        deliverer,
    )


@dataclass
class Clinic:
    """The use cases on one MemoryStore, one ManualClock and one FakeEhr (``ehr=None``: pull mode)."""

    clock: ManualClock[datetime] = field(default_factory=lambda: ManualClock(T0))
    ehr: FakeEhr | None = field(default_factory=FakeEhr)
    store: MemoryStore = field(default_factory=MemoryStore)
    metrics: RecordingMetrics = field(default_factory=RecordingMetrics)
    calibration: Callable[[], Calibration | None] | None = None
    sweep_batch_size: int = 500
    sweep_workers: int = 2
    policy: RetryPolicy = field(default_factory=lambda: RetryPolicy(2.0, 300.0, 86400.0))
    breaker_failures: int = 50
    write_mode: str = "auto"

    def __post_init__(self) -> None:
        wired = wire(
            self.store,
            self.clock,
            self.ehr,
            self.metrics,
            calibration=self.calibration,
            sweep_batch_size=self.sweep_batch_size,
            sweep_workers=self.sweep_workers,
            policy=self.policy,
            breaker_failures=self.breaker_failures,
            write_mode=self.write_mode,
        )
        self.ingestor = wired.ingestor
        self.assessor = wired.assessor
        self.evaluator = wired.evaluator
        self.pipeline = wired.pipeline
        self.sweeper = wired.sweeper
        self.deliverer = wired.deliverer

    def ingest(self, resources: list[dict[str, Any]]) -> list[str]:
        """Store records as one transaction Bundle; returns the patients whose records changed."""
        return self.ingestor.transaction(plan_bundle(bundle(resources), 100)).changed_patients

    def process(self, resources: list[dict[str, Any]]) -> list[str]:
        """Ingest, then what the change processor runs for the changed patients: the pipeline, then delivery."""
        changed = self.ingest(resources)
        self.pipeline.run(changed)
        self.deliverer.deliver_due(changed)
        return changed

    def deliver(self, patient_ids: Sequence[str] | None = None) -> None:
        """One delivery run (of these patients only, when given)."""
        self.deliverer.deliver_due(patient_ids)
