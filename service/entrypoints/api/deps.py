"""Typed FastAPI dependencies: each route declares the parts it uses, by port or use case."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated

from fastapi import Depends, Request

from service.adapters.ehr.cds_fhir import CdsFhirReader
from service.adapters.metrics import StateCollector
from service.adapters.oidc import OidcClient
from service.adapters.postgres.heartbeats import WorkersSeen
from service.adapters.rate_limit import RateLimiter
from service.adapters.smart import SmartClient
from service.composition.api import ApiServices
from service.platform.config import Settings
from service.security.authenticator import Authenticator
from service.security.cds_trust import CdsTokenVerifier
from service.security.sessions import Sessions
from service.usecases.alert_actions import AlertActions
from service.usecases.audit import AuditLog
from service.usecases.cds_hooks import CdsHooks
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

__all__ = [
    "AccessDep",
    "ActionsDep",
    "AssessmentsDep",
    "AuditDep",
    "AuthenticatorDep",
    "CalibrationsDep",
    "CarePlansDep",
    "CdsFhirDep",
    "CdsHooksDep",
    "CdsVerifierDep",
    "ClockDep",
    "FeedSecretsDep",
    "IngestorDep",
    "MeasuresDep",
    "MetricsDep",
    "MonitorDep",
    "NotificationsDep",
    "OidcDep",
    "PingDep",
    "QueueDep",
    "RateLimiterDep",
    "RefusalsDep",
    "RelayDep",
    "ResourcesDep",
    "SessionsDep",
    "SettingsDep",
    "SmartDep",
    "StateGaugesDep",
    "TasksDep",
    "TodayDep",
    "WorkersSeenDep",
    "WorklistDep",
    "WritebacksDep",
    "fhir_base",
    "services_of",
]


async def services_of(request: Request) -> ApiServices:
    """The process's services, built at start-up (app.py's lifespan)."""
    services: ApiServices = request.app.state.services
    return services


_Services = Annotated[ApiServices, Depends(services_of)]


async def _settings(services: _Services) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(_settings)]


async def _clock(services: _Services) -> Clock:
    return services.clock


ClockDep = Annotated[Clock, Depends(_clock)]


async def _metrics(services: _Services) -> Metrics:
    return services.metrics


MetricsDep = Annotated[Metrics, Depends(_metrics)]


async def _ingestor(services: _Services) -> Ingestor:
    return services.ingestor


IngestorDep = Annotated[Ingestor, Depends(_ingestor)]


async def _relay(services: _Services) -> Relay:
    return services.relay


RelayDep = Annotated[Relay, Depends(_relay)]


async def _queue(services: _Services) -> TaskQueue:
    return services.queue


QueueDep = Annotated[TaskQueue, Depends(_queue)]


async def _resources(services: _Services) -> Store:
    return services.resources


ResourcesDep = Annotated[Store, Depends(_resources)]


async def _assessments(services: _Services) -> AssessmentStore:
    return services.assessments


AssessmentsDep = Annotated[AssessmentStore, Depends(_assessments)]


async def _care_plans(services: _Services) -> AlertStore:
    return services.care_plans


CarePlansDep = Annotated[AlertStore, Depends(_care_plans)]


async def _tasks(services: _Services) -> TaskReads:
    return services.tasks


TasksDep = Annotated[TaskReads, Depends(_tasks)]


async def _writebacks(services: _Services) -> WritebackStore:
    return services.writebacks


WritebacksDep = Annotated[WritebackStore, Depends(_writebacks)]


async def _notifications(services: _Services) -> NotificationReceiver:
    return services.notifications


NotificationsDep = Annotated[NotificationReceiver, Depends(_notifications)]


async def _feed_secrets(services: _Services) -> FeedSecrets:
    return services.feed_secrets


FeedSecretsDep = Annotated[FeedSecrets, Depends(_feed_secrets)]


async def _worklist(services: _Services) -> Worklist:
    return services.worklist


WorklistDep = Annotated[Worklist, Depends(_worklist)]


async def _actions(services: _Services) -> AlertActions:
    return services.actions


ActionsDep = Annotated[AlertActions, Depends(_actions)]


async def _measures(services: _Services) -> Measures:
    return services.measures


MeasuresDep = Annotated[Measures, Depends(_measures)]


async def _calibrations(services: _Services) -> CalibrationReads:
    return services.calibrations


CalibrationsDep = Annotated[CalibrationReads, Depends(_calibrations)]


async def _monitor(services: _Services) -> ModelMonitor:
    return services.monitor


MonitorDep = Annotated[ModelMonitor, Depends(_monitor)]


async def _cds_hooks(services: _Services) -> CdsHooks:
    return services.cds_hooks


CdsHooksDep = Annotated[CdsHooks, Depends(_cds_hooks)]


async def _audit(services: _Services) -> AuditLog:
    return services.audit


AuditDep = Annotated[AuditLog, Depends(_audit)]


async def _refusals(services: _Services) -> RefusalCounter:
    return services.refusals


RefusalsDep = Annotated[RefusalCounter, Depends(_refusals)]


async def _authenticator(services: _Services) -> Authenticator:
    return services.authenticator


AuthenticatorDep = Annotated[Authenticator, Depends(_authenticator)]


async def _sessions(services: _Services) -> Sessions:
    return services.sessions


SessionsDep = Annotated[Sessions, Depends(_sessions)]


async def _rate_limiter(services: _Services) -> RateLimiter:
    return services.rate_limiter


RateLimiterDep = Annotated[RateLimiter, Depends(_rate_limiter)]


async def _access(services: _Services) -> PatientAccess:
    return services.access


AccessDep = Annotated[PatientAccess, Depends(_access)]


async def _cds_verifier(services: _Services) -> CdsTokenVerifier:
    return services.cds_verifier


CdsVerifierDep = Annotated[CdsTokenVerifier, Depends(_cds_verifier)]


async def _oidc(services: _Services) -> OidcClient | None:
    return services.oidc


OidcDep = Annotated[OidcClient | None, Depends(_oidc)]


async def _smart(services: _Services) -> SmartClient | None:
    return services.smart


SmartDep = Annotated[SmartClient | None, Depends(_smart)]


async def _cds_fhir(services: _Services) -> CdsFhirReader | None:
    return services.cds_fhir


CdsFhirDep = Annotated[CdsFhirReader | None, Depends(_cds_fhir)]


async def _workers_seen(services: _Services) -> Callable[[datetime], WorkersSeen]:
    return services.workers_seen


WorkersSeenDep = Annotated[Callable[[datetime], WorkersSeen], Depends(_workers_seen)]


async def _state_gauges(services: _Services) -> StateCollector:
    return services.state_gauges


StateGaugesDep = Annotated[StateCollector, Depends(_state_gauges)]


async def _ping(services: _Services) -> Callable[[], None]:
    return services.ping


PingDep = Annotated[Callable[[], None], Depends(_ping)]


async def _today(services: _Services) -> date:
    # Once per request: every date a page shows (ages, overdue) is counted against the same day.
    return services.today()


TodayDep = Annotated[date, Depends(_today)]


def fhir_base(request: Request) -> str:
    """The absolute URL of this server's FHIR base."""
    return str(request.base_url).rstrip("/") + "/fhir"
