"""The API's composition: exactly what its routes and middleware use, typed by port or use case."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from service.adapters.ehr.cds_fhir import CdsFhirReader
from service.adapters.metrics import StateCollector, state_collector
from service.adapters.oidc import OidcClient
from service.adapters.postgres.heartbeats import WorkersSeen, workers_seen
from service.adapters.rate_limit import RateLimiter
from service.adapters.smart import SmartClient
from service.composition.core import build_core, utc_now
from service.composition.parts import Parts
from service.platform.config import Settings
from service.security.authenticator import Authenticator
from service.security.cds_trust import CdsTokenVerifier
from service.security.sessions import Sessions
from service.usecases.alert_actions import AlertActions
from service.usecases.audit import AuditLog
from service.usecases.cds_hooks import CdsHooks
from service.usecases.group_commit import GroupCommit
from service.usecases.ingest import Ingestor
from service.usecases.measures import Measures
from service.usecases.model_monitoring import ModelMonitor
from service.usecases.ports.alerts import AlertStore
from service.usecases.ports.assessment import AssessmentStore
from service.usecases.ports.clock import Clock
from service.usecases.ports.ingest import Store
from service.usecases.ports.metrics import Metrics
from service.usecases.ports.queue import TaskQueue
from service.usecases.ports.reads import CalibrationReads, FeedSecrets, PatientAccess, TaskReads
from service.usecases.ports.writeback import WritebackStore
from service.usecases.refusals import RefusalCounter
from service.usecases.relay import Relay
from service.usecases.subscriptions import NotificationReceiver
from service.usecases.worklist import Worklist

__all__ = ["ApiServices", "build_api", "default_api"]


@dataclass(slots=True)
class ApiServices:
    """What the API process runs: FastAPI's dependencies (entrypoints/api/deps.py) hand each route its part."""

    settings: Settings
    clock: Clock
    local_day: Callable[[datetime], date]  # a moment's date in the hospital's time zone
    metrics: Metrics
    ping: Callable[[], None]  # raises unless PostgreSQL answers
    # FHIR intake and reads
    ingestor: Ingestor
    relay: Relay  # the doorbell rung after a write commits
    write_group: GroupCommit | None  # single-resource writes, committed in groups (None: one transaction each)
    queue: TaskQueue
    resources: Store
    assessments: AssessmentStore
    care_plans: AlertStore
    tasks: TaskReads
    writebacks: WritebackStore
    notifications: NotificationReceiver
    feed_secrets: FeedSecrets
    # the worklist, its actions, measures and the model's pages
    worklist: Worklist
    actions: AlertActions
    measures: Measures
    calibrations: CalibrationReads
    monitor: ModelMonitor
    cds_hooks: CdsHooks
    # security
    audit: AuditLog
    refusals: RefusalCounter  # unauthenticated requests, counted instead of audited one by one
    authenticator: Authenticator
    sessions: Sessions
    rate_limiter: RateLimiter
    access: PatientAccess
    cds_verifier: CdsTokenVerifier
    oidc: OidcClient | None  # sign-in to the worklist page, when configured
    smart: SmartClient | None  # SMART App Launch, when configured
    cds_fhir: CdsFhirReader | None  # CDS Hooks reads at an allow-listed fhirServer
    workers_seen: Callable[[datetime], WorkersSeen]  # the workers with a heartbeat since then (readiness)
    state_gauges: StateCollector  # the outboxes' and the broker's gauges, read at each scrape
    close: Callable[[], None]

    def today(self) -> date:
        """Today in the hospital's time zone."""
        return self.local_day(self.clock())


def build_api(parts: Parts) -> ApiServices:
    """The API's services over these parts (tests share one Parts between the API and a worker's services)."""
    core = parts.core
    group = GroupCommit(parts.ingestor, parts.relay.publish_claimed) if core.settings.group_commit else None

    def close() -> None:
        if group is not None:
            group.close()  # what is queued is written before the pool closes
        parts.close()

    return ApiServices(
        settings=core.settings,
        clock=core.clock,
        local_day=core.local_day,
        metrics=core.metrics,
        ping=parts.resources.ping,
        ingestor=parts.ingestor,
        relay=parts.relay,
        write_group=group,
        queue=parts.queue,
        resources=parts.resources,
        assessments=parts.assessments,
        care_plans=parts.alerts,
        tasks=parts.tasks,
        writebacks=parts.writebacks,
        notifications=parts.notifications,
        feed_secrets=parts.subscription_secrets,
        worklist=parts.worklist,
        actions=parts.actions,
        measures=parts.measures,
        calibrations=parts.calibrations,
        monitor=parts.monitor,
        cds_hooks=parts.cds_hooks,
        audit=parts.audit,
        refusals=parts.refusals,
        authenticator=parts.authenticator,
        sessions=parts.sessions,
        rate_limiter=parts.rate_limiter,
        access=parts.access,
        cds_verifier=parts.cds_verifier,
        oidc=parts.oidc,
        smart=parts.smart,
        cds_fhir=parts.cds_fhir,
        workers_seen=functools.partial(workers_seen, core.pool),
        state_gauges=state_collector(
            parts.outbox, parts.writebacks, core.settings.redis_url, [core.settings.celery_queue], core.clock
        ),
        close=close,
    )


def default_api(settings: Settings | None = None, *, clock: Clock = utc_now) -> ApiServices:
    """The API's services from the environment's settings."""
    return build_api(Parts(build_core(settings, clock=clock)))
