"""The parts of refracture — adapters and use cases — each built on first use over one Core.

An entry point asks for the parts it runs and gets nothing else: the API never builds the sweep, a CLI command that
reads the audit log never builds the EHR client. Each part is built once per Parts and shared by the parts that need
it (the pipeline and the alert actions share one AlertEvaluator).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from psycopg_pool import ConnectionPool

from service.adapters.ehr.cds_fhir import CdsFhirReader, make_cds_fhir_reader
from service.adapters.ehr.factory import make_ehr_client
from service.adapters.notify_smtp import SmtpSender, load_recipients
from service.adapters.notify_webhook import WebhookSender
from service.adapters.oidc import OidcClient
from service.adapters.postgres.access import PostgresAccess, PostgresSubscriptionSecrets
from service.adapters.postgres.audit import PostgresAuditStore
from service.adapters.postgres.calibrations import PostgresCalibrationStore
from service.adapters.postgres.cds import PostgresCdsStore
from service.adapters.postgres.measures import PostgresMeasureStore
from service.adapters.postgres.monitoring import PostgresMonitoringStore
from service.adapters.postgres.notifications import PostgresNotificationStore
from service.adapters.postgres.pool import make_read_pool
from service.adapters.postgres.refusals import PostgresRefusalStore, PostgresSearchStore
from service.adapters.postgres.sessions import PostgresSessionStore
from service.adapters.postgres.store import (
    PostgresAlertStore,
    PostgresAssessmentStore,
    PostgresIngestStore,
    PostgresOutboxStore,
    PostgresPatientStore,
    PostgresTaskReads,
    PostgresWritebackStore,
)
from service.adapters.postgres.subscriptions import PostgresFeedStore
from service.adapters.postgres.worklist_store import PostgresWorklistStore
from service.adapters.queue import CeleryTaskQueue, make_celery
from service.adapters.rate_limit import RateLimiter
from service.adapters.smart import SmartClient
from service.composition.core import Core
from service.domain.backoff import RetryPolicy
from service.domain.calibration import Calibration
from service.domain.notifications import PatientData
from service.domain.risk_model import model_version
from service.fhir.capability import SOFTWARE_VERSION
from service.fhir.normalise import Normaliser
from service.fhir.resource_types import INPUT_TYPES
from service.fhir.task import TaskRoute, load_routing
from service.security.authenticator import Authenticator, make_authenticator
from service.security.cds_trust import CdsTokenVerifier, make_cds_verifier
from service.security.sessions import Sessions
from service.usecases.alert_actions import AlertActions
from service.usecases.alerts import AlertEvaluator
from service.usecases.assess import Assessor
from service.usecases.audit import AuditLog
from service.usecases.cds_hooks import CdsHooks
from service.usecases.changes import ChangeProcessor
from service.usecases.ingest import Ingestor
from service.usecases.measures import Measures
from service.usecases.model_monitoring import ModelMonitor
from service.usecases.notify import Notifier
from service.usecases.patient_pipeline import PatientPipeline
from service.usecases.ports.ehr import EhrGateway
from service.usecases.ports.notifications import Sender
from service.usecases.ports.queue import TaskQueue
from service.usecases.recalibrate import Recalibrator
from service.usecases.refusals import RefusalCounter
from service.usecases.relay import Relay
from service.usecases.subscriptions import FeedSettings, FeedWorker, NotificationReceiver
from service.usecases.sweep import Sweeper
from service.usecases.task_sync import TaskSync
from service.usecases.worklist import Worklist
from service.usecases.writeback import CircuitBreaker, Deliverer

__all__ = ["Parts"]


class Parts:
    """Adapters and use cases over one Core, built when first asked for; `close` closes what was built."""

    def __init__(self, core: Core, *, queue: TaskQueue | None = None, ehr: EhrGateway | None = None) -> None:
        """Args:
        core: the shared infrastructure.
        queue: the doorbell; defaults to Celery over the configured Redis.
        ehr: the EHR's FHIR API; defaults to an httpx client for REFRACTURE_EHR_BASE_URL (none set: pull mode).
        """
        self.core = core
        self._queue = queue
        self._ehr = ehr

    # -- infrastructure beyond the core ---------------------------------------------------------------------------

    @cached_property
    def queue(self) -> TaskQueue:
        """The doorbell that tells the workers a patient changed."""
        settings = self.core.settings
        return self._queue if self._queue is not None else CeleryTaskQueue(make_celery(settings), settings.celery_queue)

    @cached_property
    def ehr(self) -> EhrGateway | None:
        """The EHR's FHIR API, or None in pull mode."""
        return self._ehr if self._ehr is not None else make_ehr_client(self.core.settings)

    @cached_property
    def read_pool(self) -> ConnectionPool:
        """The worklist's reads: their own connections, read-only, with a statement time-out; the replica if set."""
        return make_read_pool(self.core.settings)

    @cached_property
    def resources(self) -> PostgresIngestStore:
        """Stored resources and their facts: the ingest's transactions and reads."""
        return PostgresIngestStore(self.core.pool)

    @cached_property
    def outbox(self) -> PostgresOutboxStore:
        """The patient-change outbox."""
        return PostgresOutboxStore(self.core.pool)

    @cached_property
    def assessments(self) -> PostgresAssessmentStore:
        """Risk assessments."""
        return PostgresAssessmentStore(self.core.pool)

    @cached_property
    def alerts(self) -> PostgresAlertStore:
        """Alerts and care plans."""
        return PostgresAlertStore(self.core.pool)

    @cached_property
    def patients(self) -> PostgresPatientStore:
        """One transaction for a patient's assessment and alerts."""
        return PostgresPatientStore(self.core.pool)

    @cached_property
    def tasks(self) -> PostgresTaskReads:
        """The alerts' Tasks, for EHRs that pull them."""
        return PostgresTaskReads(self.core.pool)

    @cached_property
    def writebacks(self) -> PostgresWritebackStore:
        """The write-back outbox and the EHR's state."""
        return PostgresWritebackStore(self.core.pool)

    @cached_property
    def routes(self) -> list[TaskRoute]:
        """Where each alert's Task goes (REFRACTURE_TASK_ROUTING_FILE)."""
        file = self.core.settings.task_routing_file
        return load_routing(file) if file else []

    @cached_property
    def organization_sites(self) -> dict[str, str]:
        """A Patient's managingOrganization names its site (REFRACTURE_SITES; unmapped: Organization/{site})."""
        return {org: site for site, orgs in self.core.settings.sites.items() for org in orgs}

    # -- the patient pipeline: ingest, assess, alerts, write-back ----------------------------------------------------

    @cached_property
    def ingestor(self) -> Ingestor:
        """Validated resources into the store, facts extracted, the patient's change recorded."""
        core = self.core
        return Ingestor(self.resources, Normaliser(core.terminology), core.clock, core.settings.mrn_system)

    @cached_property
    def relay(self) -> Relay:
        """Rings the doorbell for the outbox's patient changes."""
        settings = self.core.settings
        return Relay(
            self.outbox,
            self.queue,
            self.core.clock,
            redeliver_after_s=settings.relay_redeliver_after_s,
            batch_size=settings.relay_batch_size,
            chunk_size=settings.relay_chunk_size,
        )

    @cached_property
    def calibrations(self) -> PostgresCalibrationStore:
        """The local recalibrations of the risk model (`refracture recalibrate`)."""
        return PostgresCalibrationStore(self.core.pool)

    def active_calibration(self) -> Calibration | None:
        """The recalibration in force for the running model version, if any."""
        return self.calibrations.active_calibration(model_version())

    @cached_property
    def assessor(self) -> Assessor:
        """The risk model over a patient's facts."""
        return Assessor(self.assessments, self.core.clock, self.active_calibration)

    @cached_property
    def evaluator(self) -> AlertEvaluator:
        """The alert rules over a patient's facts and assessment."""
        core = self.core
        return AlertEvaluator(
            self.alerts,
            core.clock,
            core.settings.alerts,
            core.local_day,
            core.metrics,
            self.routes,
            self.organization_sites,
        )

    @cached_property
    def task_sync(self) -> TaskSync:
        """A Task completed or cancelled at the EHR: the alert follows."""
        return TaskSync(self.alerts, self.evaluator, self.core.clock, self.core.local_day)

    @cached_property
    def deliverer(self) -> Deliverer:
        """The write-back of RiskAssessments, CarePlans and Tasks to the EHR."""
        settings = self.core.settings
        return Deliverer(
            self.writebacks,
            self.ehr,
            self.core.clock,
            policy=RetryPolicy(
                settings.writeback_backoff_base_s, settings.writeback_backoff_max_s, settings.writeback_retry_for_s
            ),
            mode_setting=settings.ehr_write_mode,
            breaker=CircuitBreaker(settings.writeback_circuit_failures, settings.writeback_circuit_cooldown_s),
            lease_s=settings.writeback_lease_s,
            batch_size=settings.writeback_batch_size,
            capability_refresh_s=settings.ehr_capability_refresh_s,
            software=f"refracture {SOFTWARE_VERSION}",
            metrics=self.core.metrics,
            task_changed_at_ehr=self.task_sync,
            write_tasks=settings.ehr_write_tasks,
        )

    @cached_property
    def pipeline(self) -> PatientPipeline:
        """Assessment, then alerts, from one read of the facts in one transaction."""
        return PatientPipeline(self.patients, self.assessor, self.evaluator, self.core.clock)

    @cached_property
    def changes(self) -> ChangeProcessor:
        """A changed patient: the pipeline, then the write-back's delivery."""
        return ChangeProcessor(self.outbox, self.core.clock, [self.pipeline.work, self.deliverer.work])

    @cached_property
    def sweeper(self) -> Sweeper:
        """The daily sweep of patients whose next threshold has passed."""
        settings = self.core.settings
        return Sweeper(
            self.alerts,
            self.pipeline,
            self.core.clock,
            self.core.local_day,
            settings.sweep_batch_size,
            settings.sweep_workers,
        )

    @cached_property
    def actions(self) -> AlertActions:
        """A coordinator's actions on an alert."""
        return AlertActions(self.alerts, self.evaluator, self.core.clock, self.core.local_day)

    # -- audit and access ---------------------------------------------------------------------------------------------

    @cached_property
    def audit(self) -> AuditLog:
        """The tamper-evident audit log."""
        return AuditLog(PostgresAuditStore(self.core.pool), self.core.settings.audit_retention_days)

    @cached_property
    def refusals(self) -> RefusalCounter:
        """Unauthenticated requests, counted instead of audited one by one."""
        core = self.core
        return RefusalCounter(PostgresRefusalStore(core.pool), core.clock, core.settings.audit_retention_days)

    @cached_property
    def access(self) -> PostgresAccess:
        """Patients' Organizations, alerts' patients, break-the-glass grants."""
        return PostgresAccess(self.core.pool)

    @cached_property
    def authenticator(self) -> Authenticator:
        """Bearer tokens checked against the identity provider's keys."""
        return make_authenticator(self.core.settings)

    @cached_property
    def sessions(self) -> Sessions:
        """The worklist page's signed-in sessions."""
        core = self.core
        settings = core.settings
        return Sessions(
            PostgresSessionStore(core.pool),
            core.clock,
            settings.session_ttl_s,
            settings.auth_roles_claim,
            settings.session_idle_s,
            settings.auth_sites_claim,
        )

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        """Requests a minute per caller, counted in Redis."""
        settings = self.core.settings
        return RateLimiter(
            settings.redis_url,
            settings.rate_limit_per_minute,
            anonymous_per_minute=settings.rate_limit_anonymous_per_minute,
            sign_in_per_minute=settings.rate_limit_sign_in_per_minute,
            namespace=settings.celery_queue,
        )

    @cached_property
    def oidc(self) -> OidcClient | None:
        """Sign-in to the worklist page, when configured."""
        settings = self.core.settings
        if not (settings.auth_issuer and settings.oidc_client_id):
            return None
        secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None
        return OidcClient(settings.auth_issuer, settings.oidc_client_id, secret, settings.oidc_scope)

    @cached_property
    def smart(self) -> SmartClient | None:
        """SMART App Launch of the worklist from the allow-listed EHRs, when configured."""
        settings = self.core.settings
        if not (settings.smart_fhir_servers and settings.smart_client_id):
            return None
        return SmartClient(
            settings.smart_fhir_servers,
            settings.smart_client_id,
            settings.smart_client_secret.get_secret_value() if settings.smart_client_secret else None,
            settings.smart_extra_scope,
            settings.auth_algorithms,
            settings.auth_leeway_s,
        )

    # -- the worklist, measures and the model ---------------------------------------------------------------------

    @cached_property
    def worklist(self) -> Worklist:
        """The care coordinators' worklist."""
        # Searches are written, and read back at once: the primary's pool, not a replica's.
        return Worklist(PostgresWorklistStore(self.read_pool), PostgresSearchStore(self.core.pool))

    @cached_property
    def measures(self) -> Measures:
        """The FLS quality measures and their MeasureReports."""
        core = self.core
        return Measures(
            PostgresMeasureStore(core.pool), core.clock, core.zone, core.settings.alerts, core.settings.sites
        )

    @cached_property
    def recalibrator(self) -> Recalibrator:
        """The local recalibration of the risk model."""
        return Recalibrator(self.calibrations, self.core.clock, self.core.local_day)

    @cached_property
    def monitor(self) -> ModelMonitor:
        """The model's drift and calibration in production, daily."""
        core = self.core
        return ModelMonitor(
            PostgresMonitoringStore(core.pool),
            core.clock,
            core.local_day,
            self.recalibrator.closed_cases,
            self.active_calibration,
        )

    # -- event feeds, CDS Hooks, notifications --------------------------------------------------------------------

    @cached_property
    def feeds(self) -> PostgresFeedStore:
        """The event feeds' subscriptions, fetch jobs and polls."""
        return PostgresFeedStore(self.core.pool)

    @cached_property
    def feed_worker(self) -> FeedWorker:
        """Fetches announced resources and runs the catch-up polls."""
        core = self.core
        settings = core.settings
        worker = FeedWorker(
            self.feeds,
            self.ehr if settings.feeds_enabled else None,
            self.ingestor,
            self.relay.ring,
            core.clock,
            FeedSettings(
                resource_types=(*sorted(INPUT_TYPES), "Task"),  # Task: refracture's own, changed at the EHR
                poll_interval_s=settings.subscription_poll_interval_s,
                lookback_s=settings.subscription_poll_lookback_s,
                silence_s=settings.subscription_heartbeat_period_s + settings.subscription_heartbeat_grace_s,
            ),
            core.metrics,
            audit=self.audit.record,
        )
        worker.follow_tasks(self.task_sync)
        return worker

    @cached_property
    def notifications(self) -> NotificationReceiver:
        """The EHR's Subscription notifications, received by the API."""
        return NotificationReceiver(self.feeds, self.ingestor, self.core.clock, self.core.metrics, self.task_sync)

    @cached_property
    def subscription_secrets(self) -> PostgresSubscriptionSecrets:
        """The feed's shared secret, rotated by `refracture subscribe`."""
        return PostgresSubscriptionSecrets(self.core.pool)

    @cached_property
    def cds_fhir(self) -> CdsFhirReader | None:
        """CDS Hooks reads at an allow-listed fhirServer with the call's fhirAuthorization."""
        return make_cds_fhir_reader(self.core.settings.cds_fhir_servers)

    @cached_property
    def cds_hooks(self) -> CdsHooks:
        """Cards from stored state."""
        core = self.core
        return CdsHooks(
            PostgresCdsStore(core.pool), core.clock, core.local_day, core.terminology.local_target, self.cds_fhir
        )

    @cached_property
    def cds_verifier(self) -> CdsTokenVerifier:
        """The check of the EHR's JWT on every CDS Hooks call."""
        return make_cds_verifier(self.core.settings, self.cds_hooks.claim_jti)

    @cached_property
    def digests(self) -> Notifier:
        """The daily notification digest per owner, by e-mail and webhook; its channels from the settings (none
        configured: the digest is built and sent nowhere)."""
        core = self.core
        settings = core.settings
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
            senders["webhook"] = WebhookSender(settings.notify_webhook_url, secret, core.clock)
        return Notifier(
            PostgresNotificationStore(core.pool, settings.notify_lease_s),
            senders,
            core.clock,
            core.local_day,
            routes=self.routes,
            organization_sites=self.organization_sites,
            patient_data=PatientData(settings.notify_patient_data),
            worklist_url=f"{settings.public_url}/worklist",
            policy=RetryPolicy(settings.notify_backoff_base_s, settings.notify_backoff_max_s),
            max_attempts=settings.notify_max_attempts,
        )

    # -- life cycle -----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections of what was built, then the core's pool."""
        built = self.__dict__
        closers: list[Callable[[], None]] = []
        if "read_pool" in built:
            closers.append(self.read_pool.close)
        for name in ("ehr", "authenticator", "rate_limiter", "cds_verifier", "oidc", "smart", "cds_fhir"):
            part = built.get(name)
            if part is not None:
                closers.append(part.close)
        for close in closers:
            close()
        self.core.close()
