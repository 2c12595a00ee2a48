"""PUT /fhir/{type}/{id} from a known token, straight to its route function.

An interface engine's single-resource PUTs are most of the API's traffic. FastAPI's routing (a regex per route, in
order) and its dependency solving cost a PUT more CPU than refracture's own intake (docs/performance.md,
bench/put_layers). This innermost middleware calls the same `update` function with the same parts, for the common
case only: a bearer token already verified (answered from the authenticator's cache), a type refracture takes and a
valid id. Anything else — no token, a new token, a cookie, another route — goes through FastAPI as before, so errors,
refusals and the OpenAPI description stay FastAPI's; an error raised here is answered by the app's own handlers.
"""

from __future__ import annotations

import re
from typing import Final

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from service.composition.api import ApiServices
from service.entrypoints.api import fhir_routes
from service.entrypoints.api.auth import throttle_client
from service.entrypoints.api.fhir_handlers import writes_of
from service.entrypoints.api.middleware import header
from service.entrypoints.api.responses import http_error_outcome, outcome_response
from service.fhir.resource_types import INPUT_TYPES
from service.platform.errors import RefractureError
from service.security.principal import Permission

__all__ = ["DirectWriteMiddleware"]

_PUT_PATH: Final = re.compile(r"/fhir/([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})")
_BEARER: Final = re.compile(r"[Bb]earer +(\S+)")


class DirectWriteMiddleware:
    """Single-resource PUTs with a cached token to `fhir_routes.update` without FastAPI's routing and dependencies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route = _update_route()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "PUT":
            await self.app(scope, receive, send)
            return
        match = _PUT_PATH.fullmatch(scope["path"])
        if match is None or match.group(1) not in INPUT_TYPES or scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        application: FastAPI = scope["app"]
        services: ApiServices = application.state.services
        principal = None
        authorization = header(scope, b"authorization")
        bearer = _BEARER.fullmatch(authorization) if authorization else None
        if bearer is not None:
            principal = services.authenticator.cached(bearer.group(1))
        if principal is None or not principal.may(Permission.WRITE_CLINICAL_DATA):
            await self.app(scope, receive, send)  # FastAPI checks it, and answers 401 or 403 as before
            return
        resource_type, resource_id = match.groups()
        scope["route"] = self._route  # the audit, access log and metrics name the request by its route
        scope["path_params"] = {"resource_type": resource_type, "resource_id": resource_id}
        request = Request(scope, receive)
        request.state.principal = principal
        background = BackgroundTasks()
        try:
            await throttle_client(services.rate_limiter, principal)
            response = await fhir_routes.update(
                request,
                services.settings,
                writes_of(services),
                services.relay,
                background,
                principal,
                resource_type,
                resource_id,
                prefer=header(scope, b"prefer"),
                if_match=header(scope, b"if-match"),
            )
        except RefractureError as exc:
            response = outcome_response(exc)
        except StarletteHTTPException as exc:
            response = http_error_outcome(exc.status_code, str(exc.detail))
        response.background = background
        await response(scope, receive, send)


def _update_route() -> APIRoute:
    for route in fhir_routes.router.routes:
        if isinstance(route, APIRoute) and route.endpoint is fhir_routes.update:
            return route
    raise LookupError("the FHIR update route is not registered")
