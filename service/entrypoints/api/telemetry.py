"""Request metrics and the server span of each request: by route template, never by path (paths carry ids)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.adapters.metrics import observe_request
from service.platform import tracing

__all__ = ["TelemetryMiddleware"]


class TelemetryMiddleware:
    """Counts and times every request, and (when tracing is on) makes it a server span whose context the doorbell
    task and every EHR call of the request carry on. Sits right inside RequestIdMiddleware, around everything."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "?"))
        started = time.perf_counter()
        status = 500

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        opened = (
            tracing.begin(method, "server", _headers(scope), {"http.request.method": method})
            if tracing.active()
            else None
        )
        error: str | None = None
        try:
            await self.app(scope, receive, noted)
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            route = getattr(scope.get("route"), "path", None)
            observe_request(method, route or "unmatched", status, time.perf_counter() - started)
            if opened is not None:
                if route:
                    opened.rename(f"{method} {route}")
                    opened.set("http.route", route)
                opened.set("http.response.status_code", status)
                opened.end(error or (str(status) if status >= 500 else None))


def _headers(scope: Scope) -> dict[str, str]:
    wanted = {b"traceparent", b"tracestate"}
    return {
        bytes(key).decode("latin-1"): bytes(value).decode("latin-1")
        for key, value in scope.get("headers", [])
        if key in wanted
    }
