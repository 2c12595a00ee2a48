"""Liveness, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service.adapters.metrics import CONTENT_TYPE, render, state_collector
from service.api.auth import BearerDep, caller, forbidden
from service.api.deps import ContainerDep
from service.bootstrap import Container
from service.security.principal import Permission

__all__ = ["router"]

router = APIRouter(tags=["Operations"])


@router.get("/healthz", operation_id="healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    """Always answers while the process runs."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="The database answers (and whether the broker does)",
    responses={503: {"description": "The database does not answer"}},
)
async def readyz(container: ContainerDep) -> JSONResponse:
    """Ready when PostgreSQL answers; 'degraded' (still 200) when only the Redis broker does not.

    The API stores everything it accepts in PostgreSQL and the relay rings the doorbell again once Redis is back, so
    an API taken out of service for a broker outage would refuse data it can safely keep. The broker's state is in
    the body and in the metrics (refracture_state_up) for the operator to alert on.
    """
    checks: dict[str, Any] = {}
    try:
        await run_in_threadpool(container.store.ping)
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"unavailable ({type(exc).__name__})"
    try:
        await run_in_threadpool(_ping_broker, container.settings.redis_url)
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["broker"] = f"unavailable ({type(exc).__name__})"
    ready = checks["database"] == "ok"
    status = "not ready" if not ready else "ready" if checks["broker"] == "ok" else "degraded"
    body: dict[str, Any] = {"status": status, "checks": checks}
    if checks["database"] == "ok":
        state = await run_in_threadpool(container.store.read_ehr_state)
        # The write mode the EHR's CapabilityStatement allowed (contract.md, 'Delivery'); informative, not a check.
        body["ehr_write_mode"] = (
            {"mode": state["mode"], "detail": state["detail"], "checked_at": state["checked_at"].isoformat()}
            if state
            else {"mode": "pull" if not container.settings.ehr_base_url else "not checked yet"}
        )
    return JSONResponse(body, 200 if ready else 503)


def _ping_broker(url: str) -> None:
    import redis  # noqa: PLC0415 - only readiness talks to Redis directly

    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        client.ping()
    finally:
        client.close()


async def _metrics_reader(request: Request, container: ContainerDep, credentials: BearerDep) -> None:
    """Anyone only when REFRACTURE_METRICS_PUBLIC=true is set; else the metrics-reader role (or the
    system/metrics.read scope) and administrators."""
    if container.settings.metrics_open:
        return
    principal = await caller(request, container, credentials)
    if not principal.may(Permission.READ_METRICS):
        raise forbidden("the metrics need the metrics-reader role (or system/metrics.read), which you do not have")


# Not in the OpenAPI document: Prometheus's text format is for scrapers, not API clients (docs/operations.md).
@router.get("/metrics", include_in_schema=False, dependencies=[Depends(_metrics_reader)])
async def metrics(container: ContainerDep) -> Response:
    """Prometheus metrics: this pod's counters and the outbox, queue and model gauges read now."""
    return Response(await run_in_threadpool(_scrape, container), media_type=CONTENT_TYPE)


def _scrape(container: Container) -> bytes:
    settings = container.settings
    return render([state_collector(container.store, settings.redis_url, [settings.celery_queue], container.clock)])
