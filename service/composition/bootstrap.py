"""Composition root: builds the handlers with real adapters for the API, the workers and the tests."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from psycopg_pool import ConnectionPool

from service.adapters.ehr.bulk import BulkDataClient, make_bulk_client
from service.adapters.ehr.cds_fhir import CdsFhirReader, make_cds_fhir_reader
from service.adapters.ehr.factory import make_ehr_client
from service.adapters.metrics import PrometheusMetrics
from service.adapters.notify_smtp import SmtpSender, load_recipients
from service.adapters.notify_webhook import WebhookSender
from service.adapters.oidc import OidcClient
from service.adapters.postgres.access import PostgresAccess, PostgresSubscriptionSecrets
from service.adapters.postgres.audit import PostgresAuditStore
from service.adapters.postgres.bulk_import import PostgresImportStore
from service.adapters.postgres.calibrations import PostgresCalibrationStore
from service.adapters.postgres.cds import PostgresCdsStore
from service.adapters.postgres.measures import PostgresMeasureStore
from service.adapters.postgres.monitoring import PostgresMonitoringStore
from service.adapters.postgres.notifications import PostgresNotificationStore
from service.adapters.postgres.pool import make_pool, make_read_pool
from service.adapters.postgres.refusals import PostgresRefusalStore, PostgresSearchStore
from service.adapters.postgres.sessions import PostgresSessionStore
from service.adapters.postgres.store import PostgresStore
from service.adapters.postgres.subscriptions import PostgresFeedStore
from service.adapters.postgres.worklist_store import PostgresWorklistStore
from service.adapters.queue import CeleryTaskQueue, make_celery
from service.adapters.rate_limit import RateLimiter
from service.adapters.smart import SmartClient
from service.domain.backoff import RetryPolicy
from service.domain.notifications import PatientData
from service.domain.risk_model import model_version
from service.fhir.capability import SOFTWARE_VERSION
from service.fhir.normalise import Normaliser
from service.fhir.resource_types import INPUT_TYPES
from service.fhir.task import TaskRoute, load_routing
from service.fhir.terminology import Terminology, load_code_map
from service.platform.config import Settings, get_settings
from service.security.authenticator import Authenticator, make_authenticator
from service.security.cds_trust import CdsTokenVerifier, make_cds_verifier
from service.security.sessions import Sessions
from service.usecases.alert_actions import AlertActions
from service.usecases.alerts import AlertEvaluator
from service.usecases.assess import Assessor
from service.usecases.audit import AuditLog
from service.usecases.bulk_export import BulkExporter
from service.usecases.bulk_import import BulkImporter
from service.usecases.cds_hooks import CdsHooks
from service.usecases.changes import ChangeProcessor
from service.usecases.ingest import Ingestor
from service.usecases.measures import Measures
from service.usecases.model_monitoring import ModelMonitor
from service.usecases.notify import Notifier
from service.usecases.patient_pipeline import PatientPipeline
from service.usecases.ports.clock import Clock
from service.usecases.ports.ehr import EhrGateway
from service.usecases.ports.metrics import Metrics
from service.usecases.ports.notifications import NotificationStore, Sender
from service.usecases.ports.queue import TaskQueue
from service.usecases.recalibrate import Recalibrator
from service.usecases.refusals import RefusalCounter
from service.usecases.relay import Relay
from service.usecases.subscriptions import FeedSettings, FeedWorker, NotificationReceiver
from service.usecases.sweep import Sweeper
from service.usecases.task_sync import TaskSync
from service.usecases.worklist import Worklist
from service.usecases.writeback import CircuitBreaker, Deliverer

__all__ = ["BulkImport", "Container", "bootstrap", "make_bulk_import", "utc_now"]

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The real clock; everything else receives time from here or from a test's clock."""
    return datetime.now(UTC)


@dataclass(slots=True)
class Container:
    """Everything a process needs, built once."""

    settings: Settings
    pool: ConnectionPool
    # The worklist's reads: their own connections, read-only, with a statement time-out; the read replica if set.
    read_pool: ConnectionPool
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
    deliverer: Deliverer
    ehr: EhrGateway | None
    worklist: Worklist
    clock: Clock
    local_day: Callable[[datetime], date]  # a moment's date in the hospital's time zone
    authenticator: Authenticator
    sessions: Sessions
    audit: AuditLog
    rate_limiter: RateLimiter
    refusals: RefusalCounter  # unauthenticated requests, counted instead of audited one by one
    oidc: OidcClient | None  # sign-in to the worklist page, when configured
    metrics: Metrics
    calibrations: PostgresCalibrationStore  # the local recalibrations of the risk model (`refracture recalibrate`)
    recalibrator: Recalibrator
    # The FLS quality measures and their MeasureReports (docs/measures.md).
    measures: Measures
    monitor: ModelMonitor  # the model's drift and calibration in production, daily (docs/model-monitoring.md)
    # Event feeds from the EHR: Subscription notifications, fetches, the catch-up poll (usecases/subscriptions.py).
    feeds: PostgresFeedStore
    notifications: NotificationReceiver
    feed_worker: FeedWorker
    # CDS Hooks: cards from stored state, and the check of the EHR's JWT on every call (docs/cds-hooks.md).
    cds_hooks: CdsHooks
    cds_verifier: CdsTokenVerifier
    # Patient scoping: patients' Organizations, alerts' patients, break-the-glass grants (security/scoping.py).
    access: PostgresAccess
    subscription_secrets: PostgresSubscriptionSecrets  # the feed's shared secret, rotated by `refracture subscribe`
    task_sync: TaskSync  # a Task completed or cancelled at the EHR: the alert follows (issue 18)
    digests: Notifier  # the daily notification digest per owner, by e-mail and webhook (issue 18)
    # SMART App Launch of the worklist from the allow-listed EHRs (adapters/smart.py), when configured.
    smart: SmartClient | None = None
    # CDS Hooks reads at an allow-listed fhirServer with the call's fhirAuthorization (adapters/ehr/cds_fhir.py).
    cds_fhir: CdsFhirReader | None = None

    def today(self) -> date:
        """Today in the hospital's time zone (what "overdue" and ages are counted against)."""
        return self.local_day(self.clock())

    def close(self) -> None:
        """Close the connection pools and the EHR client's connections."""
        self.pool.close()
        self.read_pool.close()
        if self.ehr is not None:
            self.ehr.close()
        self.authenticator.close()
        self.rate_limiter.close()
        self.cds_verifier.close()
        if self.oidc is not None:
            self.oidc.close()
        if self.smart is not None:
            self.smart.close()
        if self.cds_fhir is not None:
            self.cds_fhir.close()


def bootstrap(
    settings: Settings | None = None,
    *,
    queue: TaskQueue | None = None,
    clock: Clock = utc_now,
    ehr: EhrGateway | None = None,
    open_pool: bool = True,
) -> Container:
    """Build the container.

    Args:
        settings: defaults to the environment's.
        queue: the doorbell; defaults to Celery over the configured Redis.
        clock: the time source.
        ehr: the EHR's FHIR API; defaults to an httpx client for REFRACTURE_EHR_BASE_URL (none: pull mode).
        open_pool: open the pool now (the API opens it at start-up instead).
    """
    settings = settings or get_settings()
    code_map = load_code_map(settings.code_map_file) if settings.code_map_file else {}
    if code_map:
        log.info("loaded %d local code mappings", len(code_map))
    terminology = Terminology(code_map)
    pool = make_pool(settings, open_now=open_pool)
    read_pool = make_read_pool(settings, open_now=open_pool)
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
    calibrations = PostgresCalibrationStore(pool)
    assessor = Assessor(store, clock, lambda: calibrations.active_calibration(model_version()))
    zone = ZoneInfo(settings.timezone)

    def today(moment: datetime) -> date:
        return moment.astimezone(zone).date()

    metrics = PrometheusMetrics()
    recalibrator = Recalibrator(calibrations, clock, today)
    routes = load_routing(settings.task_routing_file) if settings.task_routing_file else []
    # A Patient's managingOrganization names its site (REFRACTURE_SITES; unmapped: Organization/{site}).
    organization_sites = {org: site for site, orgs in settings.sites.items() for org in orgs}
    evaluator = AlertEvaluator(store, clock, settings.alerts, today, metrics, routes, organization_sites)
    task_sync = TaskSync(store, evaluator, clock, today)
    ehr = ehr if ehr is not None else make_ehr_client(settings)
    deliverer = Deliverer(
        store,
        ehr,
        clock,
        policy=RetryPolicy(
            settings.writeback_backoff_base_s, settings.writeback_backoff_max_s, settings.writeback_retry_for_s
        ),
        mode_setting=settings.ehr_write_mode,
        breaker=CircuitBreaker(settings.writeback_circuit_failures, settings.writeback_circuit_cooldown_s),
        lease_s=settings.writeback_lease_s,
        batch_size=settings.writeback_batch_size,
        capability_refresh_s=settings.ehr_capability_refresh_s,
        software=f"refracture {SOFTWARE_VERSION}",
        metrics=metrics,
        task_changed_at_ehr=task_sync,
        write_tasks=settings.ehr_write_tasks,
    )
    # Assessment, then alerts, from one read of the facts in one transaction; then the write-back's delivery.
    pipeline = PatientPipeline(store, assessor, evaluator, clock)
    changes = ChangeProcessor(store, clock, [pipeline.work, deliverer.work])
    sweeper = Sweeper(store, pipeline, clock, today, settings.sweep_batch_size, settings.sweep_workers)
    actions = AlertActions(store, evaluator, clock, today)
    ingestor = Ingestor(store, Normaliser(terminology), clock, settings.mrn_system)
    feeds = PostgresFeedStore(pool)
    audit = AuditLog(PostgresAuditStore(pool), settings.audit_retention_days)
    feed_worker = FeedWorker(
        feeds,
        ehr if settings.feeds_enabled else None,
        ingestor,
        relay.ring,
        clock,
        FeedSettings(
            resource_types=(*sorted(INPUT_TYPES), "Task"),  # Task: refracture's own, changed at the EHR
            poll_interval_s=settings.subscription_poll_interval_s,
            lookback_s=settings.subscription_poll_lookback_s,
            silence_s=settings.subscription_heartbeat_period_s + settings.subscription_heartbeat_grace_s,
        ),
        metrics,
        audit=audit.record,
    )
    cds_fhir = make_cds_fhir_reader(settings.cds_fhir_servers)
    cds_hooks = CdsHooks(PostgresCdsStore(pool), clock, today, terminology.local_target, cds_fhir)
    feed_worker.follow_tasks(task_sync)
    digests = make_notifier(
        settings, PostgresNotificationStore(pool, settings.notify_lease_s), clock, today, routes, organization_sites
    )
    return Container(
        settings=settings,
        pool=pool,
        read_pool=read_pool,
        store=store,
        terminology=terminology,
        ingestor=ingestor,
        queue=queue,
        relay=relay,
        changes=changes,
        assessor=assessor,
        evaluator=evaluator,
        sweeper=sweeper,
        actions=actions,
        deliverer=deliverer,
        ehr=ehr,
        # Searches are written, and read back at once: the primary's pool, not a replica's.
        worklist=Worklist(PostgresWorklistStore(read_pool), PostgresSearchStore(pool)),
        clock=clock,
        local_day=today,
        authenticator=make_authenticator(settings),
        sessions=Sessions(
            PostgresSessionStore(pool),
            clock,
            settings.session_ttl_s,
            settings.auth_roles_claim,
            settings.session_idle_s,
            settings.auth_sites_claim,
        ),
        audit=audit,
        rate_limiter=RateLimiter(
            settings.redis_url,
            settings.rate_limit_per_minute,
            anonymous_per_minute=settings.rate_limit_anonymous_per_minute,
            sign_in_per_minute=settings.rate_limit_sign_in_per_minute,
            namespace=settings.celery_queue,
        ),
        refusals=RefusalCounter(PostgresRefusalStore(pool), clock, settings.audit_retention_days),
        oidc=OidcClient(
            settings.auth_issuer,
            settings.oidc_client_id,
            settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None,
            settings.oidc_scope,
        )
        if settings.auth_issuer and settings.oidc_client_id
        else None,
        metrics=metrics,
        calibrations=calibrations,
        recalibrator=recalibrator,
        monitor=ModelMonitor(
            PostgresMonitoringStore(pool),
            clock,
            today,
            recalibrator.closed_cases,
            lambda: calibrations.active_calibration(model_version()),
        ),
        measures=Measures(PostgresMeasureStore(pool), clock, zone, settings.alerts, settings.sites),
        feeds=feeds,
        notifications=NotificationReceiver(feeds, ingestor, clock, metrics, task_sync),
        feed_worker=feed_worker,
        cds_hooks=cds_hooks,
        cds_verifier=make_cds_verifier(settings, cds_hooks.claim_jti),
        access=PostgresAccess(pool),
        subscription_secrets=PostgresSubscriptionSecrets(pool),
        smart=SmartClient(
            settings.smart_fhir_servers,
            settings.smart_client_id,
            settings.smart_client_secret.get_secret_value() if settings.smart_client_secret else None,
            settings.smart_extra_scope,
            settings.auth_algorithms,
            settings.auth_leeway_s,
        )
        if settings.smart_fhir_servers and settings.smart_client_id
        else None,
        cds_fhir=cds_fhir,
        task_sync=task_sync,
        digests=digests,
    )


def make_notifier(
    settings: Settings,
    store: NotificationStore,
    clock: Clock,
    today: Callable[[datetime], date],
    routes: Sequence[TaskRoute],
    organization_sites: Mapping[str, str],
) -> Notifier:
    """The daily digest's channels from the settings (none configured: the digest is built and sent nowhere)."""
    senders: dict[str, Sender] = {}
    if settings.notify_smtp_host:
        recipients = load_recipients(settings.notify_recipients_file) if settings.notify_recipients_file else {}
        senders["email"] = SmtpSender(
            settings.notify_smtp_host,
            settings.notify_smtp_port,
            settings.notify_from,
            recipients,
            starttls=settings.notify_smtp_starttls,
            username=settings.notify_smtp_user,
            password=settings.notify_smtp_password.get_secret_value() if settings.notify_smtp_password else None,
        )
    if settings.notify_webhook_url and settings.notify_webhook_secret:
        secret = settings.notify_webhook_secret.get_secret_value().encode()
        senders["webhook"] = WebhookSender(settings.notify_webhook_url, secret, clock)
    return Notifier(
        store,
        senders,
        clock,
        today,
        routes=routes,
        organization_sites=organization_sites,
        patient_data=PatientData(settings.notify_patient_data),
        worklist_url=f"{settings.public_url}/worklist",
        policy=RetryPolicy(settings.notify_backoff_base_s, settings.notify_backoff_max_s),
        max_attempts=settings.notify_max_attempts,
    )


@dataclass(slots=True)
class BulkImport:
    """`refracture import`'s handlers: local NDJSON files, and the EHR's $export when one is configured."""

    importer: BulkImporter
    exporter: BulkExporter | None  # None without REFRACTURE_EHR_BASE_URL
    gateway: BulkDataClient | None

    def close(self) -> None:
        """Close the Bulk Data client's connections."""
        if self.gateway is not None:
            self.gateway.close()


def make_bulk_import(container: Container, batch_size: int, sleep: Callable[[float], None] = time.sleep) -> BulkImport:
    """Bulk import over the container's pool and Ingestor (the same validation and write path as the API)."""
    store = PostgresImportStore(container.pool)
    importer = BulkImporter(
        store,
        container.ingestor,
        container.clock,
        batch_size=batch_size,
        audit=container.audit.record,
        metrics=container.metrics,
    )
    gateway = make_bulk_client(container.settings)
    exporter = BulkExporter(store, gateway, importer, container.clock, sleep) if gateway is not None else None
    return BulkImport(importer, exporter, gateway)
