"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from service.adapters.metrics import CONTENT_TYPE, render
from service.adapters.monitoring_metrics import MonitoringCollector
from service.adapters.postgres.heartbeats import WorkersSeen
from service.entrypoints.api.auth import BearerDep, CallersDep, forbidden
from service.entrypoints.api.deps import (
    ClockDep,
    MonitorDep,
    PingDep,
    SettingsDep,
    StateGaugesDep,
    WorkersSeenDep,
    WritebacksDep,
)
from service.platform.config import Settings
from service.security.principal import Permission
from service.usecases.ports.clock import Clock
from service.usecases.ports.writeback import WritebackStore

__all__ = ["READINESS_CACHE_S", "Readiness", "close_readiness", "router"]

router = APIRouter(tags=["Operations"])


@router.get("/healthz", operation_id="healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    """Always answers while the process runs."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="The database answers (and whether the broker and a worker do)",
    responses={503: {"description": "The database does not answer"}},
)
async def readyz(
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    ping: PingDep,
    writebacks: WritebacksDep,
    workers: WorkersSeenDep,
) -> JSONResponse:
    """Ready when PostgreSQL answers; 'degraded' (still 200) when the Redis broker does not, or no worker was seen.

    The API stores everything it accepts in PostgreSQL and the relay rings the doorbell again once Redis is back, so
    an API taken out of service for a broker outage would refuse data it can safely keep; likewise with no worker
    (the changes wait in the outbox). The broker's state is in the body and in the metrics (refracture_state_up), the
    workers' in the body ("worker": "no worker seen …"), for the operator to alert on. Anyone may ask, so the answer
    names no address and quotes no error, and it is worked out at most every couple of seconds whoever asks.
    """
    readiness: Readiness | None = getattr(request.app.state, "readiness", None)
    if readiness is None:
        readiness = request.app.state.readiness = Readiness(settings.redis_url)
    body, status = await readiness.answer(ReadinessProbes(settings, clock, ping, writebacks, workers))
    return JSONResponse(body, status)


@dataclass(frozen=True, slots=True)
class ReadinessProbes:
    """What a readiness check asks: the database (a ping, the workers' heartbeats, the EHR's write mode)."""

    settings: Settings
    clock: Clock
    ping: Callable[[], None]
    writebacks: WritebackStore
    workers_seen: Callable[[datetime], WorkersSeen]


# How long one readiness answer is reused: probes come every few seconds; a flood of anonymous calls costs one check.
READINESS_CACHE_S: Final = 2.0


class Readiness:
    """The checks behind /readyz, for one app: one Redis client kept across calls, and the last answer reused for
    READINESS_CACHE_S."""

    def __init__(self, redis_url: str, cache_s: float = READINESS_CACHE_S) -> None:
        import redis  # noqa: PLC0415 - only readiness talks to Redis directly

        self._redis = redis.Redis.from_url(redis_url, socket_connect_timeout=1.0, socket_timeout=1.0)
        self._cache_s = cache_s
        self._lock = asyncio.Lock()
        self._answer: tuple[float, dict[str, Any], int] | None = None
        self.checks_run = 0

    async def answer(self, probes: ReadinessProbes) -> tuple[dict[str, Any], int]:
        """The body and status of /readyz, from the last check when it is recent enough."""
        async with self._lock:
            if self._answer is None or time.monotonic() >= self._answer[0]:
                body, status = await run_in_threadpool(self._check, probes)
                self._answer = (time.monotonic() + self._cache_s, body, status)
            return self._answer[1], self._answer[2]

    def expire(self) -> None:
        """Check again at the next call."""
        self._answer = None

    def close(self) -> None:
        """Close the Redis connection."""
        self._redis.close()

    def _check(self, probes: ReadinessProbes) -> tuple[dict[str, Any], int]:
        self.checks_run += 1
        settings = probes.settings
        checks: dict[str, Any] = {}
        try:
            probes.ping()
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"unavailable ({type(exc).__name__})"
        try:
            self._redis.ping()
            checks["broker"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["broker"] = f"unavailable ({type(exc).__name__})"
        ready = checks["database"] == "ok"
        body: dict[str, Any] = {"checks": checks}
        if ready:
            stale_s = settings.worker_stale_after_s
            try:
                seen = probes.workers_seen(probes.clock() - timedelta(seconds=stale_s))
            except Exception as exc:  # noqa: BLE001 - e.g. migration 0012 not applied yet
                checks["worker"] = f"unknown ({type(exc).__name__})"
            else:
                checks["worker"] = "ok" if seen.seen else f"no worker seen in the last {stale_s:g} s"
                body["workers"] = {
                    "seen": seen.seen,
                    "last_seen": seen.last_seen.isoformat() if seen.last_seen else None,
                    "stale_after_s": stale_s,
                }
            state = probes.writebacks.read_ehr_state()
            # The write mode the EHR's CapabilityStatement allowed (docs/sources/contract.md, 'Delivery'); informative,
            # not a check. Its detail (the EHR's own words) is for operators: `refracture writeback status`.
            body["ehr_write_mode"] = (
                {"mode": state["mode"], "checked_at": state["checked_at"].isoformat()}
                if state
                else {"mode": "pull" if not settings.ehr_base_url else "not checked yet"}
            )
        degraded = any(value != "ok" for value in checks.values())
        body = {"status": "not ready" if not ready else "degraded" if degraded else "ready", **body}
        return body, 200 if ready else 503


def close_readiness(app: Any) -> None:
    """Close the readiness checks' connections (the app's shutdown)."""
    readiness: Readiness | None = getattr(app.state, "readiness", None)
    if readiness is not None:
        readiness.close()
        app.state.readiness = None


async def _metrics_reader(
    request: Request,
    settings: SettingsDep,
    callers: CallersDep,
    credentials: BearerDep,
) -> None:
    """Anyone only when REFRACTURE_METRICS_PUBLIC=true is set; else the metrics-reader role (or the
    system/metrics.read scope) and administrators."""
    if settings.metrics_open:
        return
    principal = await callers.identify(request, credentials)
    if not principal.may(Permission.READ_METRICS):
        raise forbidden("the metrics need the metrics-reader role (or system/metrics.read), which you do not have")


# Not in the OpenAPI document: Prometheus's text format is for scrapers, not API clients (docs/operations.md).
@router.get("/metrics", include_in_schema=False, dependencies=[Depends(_metrics_reader)])
async def metrics(gauges: StateGaugesDep, monitor: MonitorDep, clock: ClockDep) -> Response:
    """Prometheus metrics: this pod's counters and the outbox, queue and model gauges read now."""
    collectors: list[Collector] = [gauges, MonitoringCollector(monitor.latest, clock)]
    return Response(await run_in_threadpool(render, collectors), media_type=CONTENT_TYPE)
