"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.api.deps import ContainerDep

__all__ = ["router"]

router = APIRouter(tags=["Operations"])


@router.get("/healthz", operation_id="healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    """Always answers while the process runs."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="The database and the broker answer",
    responses={503: {"description": "A dependency does not answer"}},
)
async def readyz(container: ContainerDep) -> JSONResponse:
    """Ready when PostgreSQL and the Redis broker both answer."""
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
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
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
