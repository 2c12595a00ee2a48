"""Composition root: builds the handlers with real adapters for the API, the workers and the tests."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from psycopg_pool import ConnectionPool

from service.adapters.postgres.pool import make_pool
from service.adapters.postgres.store import PostgresStore
from service.adapters.queue import CeleryTaskQueue, make_celery
from service.config import Settings, get_settings
from service.fhir.normalise import Normaliser
from service.fhir.terminology import Terminology, load_code_map
from service.usecases.alert_actions import AlertActions
from service.usecases.alerts import AlertEvaluator
from service.usecases.assess import Assessor
from service.usecases.changes import ChangeProcessor
from service.usecases.ingest import Ingestor
from service.usecases.ports import Clock, TaskQueue
from service.usecases.relay import Relay
from service.usecases.sweep import Sweeper

__all__ = ["Container", "bootstrap", "utc_now"]

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The real clock; everything else receives time from here or from a test's clock."""
    return datetime.now(UTC)


@dataclass(slots=True)
class Container:
    """Everything a process needs, built once."""

    settings: Settings
    pool: ConnectionPool
    store: PostgresStore
    terminology: Terminology
    ingestor: Ingestor
    queue: TaskQueue
    relay: Relay
    changes: ChangeProcessor
    assessor: Assessor
    evaluator: AlertEvaluator
    sweeper: Sweeper
    actions: AlertActions
    clock: Clock

    def close(self) -> None:
        """Close the connection pool."""
        self.pool.close()


def bootstrap(
    settings: Settings | None = None,
    *,
    queue: TaskQueue | None = None,
    clock: Clock = utc_now,
    open_pool: bool = True,
) -> Container:
    """Build the container.

    Args:
        settings: defaults to the environment's.
        queue: the doorbell; defaults to Celery over the configured Redis.
        clock: the time source.
        open_pool: open the pool now (the API opens it at start-up instead).
    """
    settings = settings or get_settings()
    code_map = load_code_map(settings.code_map_file) if settings.code_map_file else {}
    if code_map:
        log.info("loaded %d local code mappings", len(code_map))
    terminology = Terminology(code_map)
    pool = make_pool(settings, open_now=open_pool)
    store = PostgresStore(pool)
    if queue is None:
        queue = CeleryTaskQueue(make_celery(settings), settings.celery_queue)
    relay = Relay(
        store,
        queue,
        clock,
        redeliver_after_s=settings.relay_redeliver_after_s,
        batch_size=settings.relay_batch_size,
        chunk_size=settings.relay_chunk_size,
    )
    assessor = Assessor(store, clock)
    zone = ZoneInfo(settings.timezone)

    def today(moment: datetime) -> date:
        return moment.astimezone(zone).date()

    evaluator = AlertEvaluator(store, clock, settings.alerts, today)
    # Assessment first: the care plan the alert step writes points at the newest RiskAssessment.
    changes = ChangeProcessor(store, clock, [assessor.work, evaluator.work])
    sweeper = Sweeper(store, assessor, evaluator, clock, today, settings.sweep_batch_size)
    actions = AlertActions(store, evaluator, clock, today)
    return Container(
        settings=settings,
        pool=pool,
        store=store,
        terminology=terminology,
        ingestor=Ingestor(store, Normaliser(terminology), clock),
        queue=queue,
        relay=relay,
        changes=changes,
        assessor=assessor,
        evaluator=evaluator,
        sweeper=sweeper,
        actions=actions,
        clock=clock,
    )
