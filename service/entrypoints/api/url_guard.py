"""Refuse a URL holding the character U+0000 before any route, audit row or query sees it.

No FHIR id, code or name holds NUL, and PostgreSQL's text cannot store it: a `%00` in a path or query parameter
would otherwise fail deep inside a route (a CSV export after its answer had begun) or make the audit row of the
request impossible to write, so that a harmless probe looked like an outage (503) forever.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from service.entrypoints.api.responses import outcome_response
from service.platform.errors import Problem, refuse

__all__ = ["UrlGuardMiddleware"]


class UrlGuardMiddleware:
    """400 with an OperationOutcome for a path or query string containing NUL (raw or percent-encoded)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _holds_nul(scope):
            error = refuse(Problem.MALFORMED, "value", "the URL contains the character U+0000 (NUL)")
            await outcome_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _holds_nul(scope: Scope) -> bool:
    path = str(scope.get("path", ""))  # already percent-decoded by the server
    query = bytes(scope.get("query_string", b""))
    return "\x00" in path or b"\x00" in unquote_to_bytes(query)
