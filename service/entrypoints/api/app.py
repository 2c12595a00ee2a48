"""The FastAPI application: routers, error mapping to OperationOutcome, and the services' life cycle."""

from __future__ import annotations

import gc
import logging
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from service.composition.api import ApiServices, default_api
from service.entrypoints.api import (
    admin_routes,
    auth_routes,
    cds_routes,
    fhir_routes,
    health,
    launch_routes,
    measure_page,
    measure_routes,
    model_routes,
    subscription_routes,
    web,
    worklist_routes,
)
from service.entrypoints.api.cors import CdsCorsMiddleware
from service.entrypoints.api.direct_writes import DirectWriteMiddleware
from service.entrypoints.api.limits import BodyLimitMiddleware
from service.entrypoints.api.middleware import (
    AccessLogMiddleware,
    AuditMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
    ThrottleMiddleware,
)
from service.entrypoints.api.responses import http_error_outcome, outcome_response, simple_outcome
from service.entrypoints.api.telemetry import TelemetryMiddleware
from service.entrypoints.api.url_guard import UrlGuardMiddleware
from service.platform import tracing
from service.platform.config import get_settings
from service.platform.errors import RefractureError

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(services_factory: Callable[[], ApiServices] | None = None) -> FastAPI:
    """Build the application.

    Args:
        services_factory: builds the API's services at start-up (tests pass their own); defaults to the environment's.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = (services_factory or default_api)()
        app.state.services = services
        traced = tracing.configure_tracing(services.settings.otel_endpoint, "refracture-api")
        # Everything imported so far (fhir.resources' thousands of classes) lives for the whole process: moving it
        # out of the collector's reach keeps full collections cheap while large Bundles are parsed (performance.md).
        gc.freeze()
        try:
            yield
        finally:
            if traced:
                tracing.shutdown()
            health.close_readiness(app)
            services.close()

    # The interactive docs are a development aid: production serves no unauthenticated pages but health checks.
    production = get_settings().environment == "production" if services_factory is None else False
    app = FastAPI(
        title="refracture",
        version="0.1.0",
        summary="Re-fracture risk and alerts after vertebral augmentation, from the EHR's FHIR R4 data.",
        lifespan=lifespan,
        docs_url=None if production else "/docs",
        redoc_url=None,
        openapi_url=None if production else "/openapi.json",
    )
    # Before fhir_routes: its /fhir/{type}/{id} would take /fhir/Measure/{id} and /fhir/MeasureReport/{id}.
    app.include_router(measure_routes.router)
    app.include_router(measure_routes.api_router)
    app.include_router(fhir_routes.router)
    app.include_router(subscription_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(worklist_routes.router)
    app.include_router(web.router)
    app.include_router(model_routes.api_router)
    app.include_router(model_routes.page_router)
    app.include_router(measure_page.page_router)
    app.include_router(auth_routes.router)
    app.include_router(launch_routes.router)
    app.include_router(cds_routes.router)
    app.include_router(health.router)
    # Added innermost first: the request id is set before anything else runs, the audit sees final statuses, and
    # the access log (right inside the request id) sees the audit's 503 too.
    app.add_middleware(DirectWriteMiddleware)  # innermost: every check above runs on its PUTs too
    app.add_middleware(BodyLimitMiddleware, fhir_limit=lambda: app.state.services.settings.max_body_bytes)
    app.add_middleware(
        AuditMiddleware, audit=lambda: app.state.services.audit, refusals=lambda: app.state.services.refusals
    )
    app.add_middleware(  # before any credential is looked at
        ThrottleMiddleware,
        limiter=lambda: app.state.services.rate_limiter,
        secret_header=lambda: app.state.services.settings.subscription_header,
    )
    app.add_middleware(UrlGuardMiddleware)  # outside the audit: a URL it could not store is refused first
    # Browser-based CDS clients: preflights are answered before authentication (they carry no token).
    app.add_middleware(CdsCorsMiddleware, origins=lambda: app.state.services.settings.cds_cors_origins)
    app.add_middleware(SecurityHeadersMiddleware, hsts=production)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(TelemetryMiddleware)  # its span is current for the access log and the doorbell
    app.add_middleware(RequestIdMiddleware)

    @app.exception_handler(RefractureError)
    async def refused(_: Request, exc: RefractureError) -> Response:
        return outcome_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return http_error_outcome(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> Response:
        where = "; ".join(".".join(str(p) for p in err.get("loc", ())) for err in exc.errors())
        return simple_outcome(400, "invalid", f"invalid request parameter: {where}")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        # The type and where it happened; the message only when it cannot carry patient data (service.platform.logs).
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f"{frame.filename}:{frame.lineno}" if frame else "?"
        log.error("unexpected %s at %s while handling a request", exc, where)
        return simple_outcome(500, "exception", "internal error; the request was not applied")

    return app
