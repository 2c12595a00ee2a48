"""CORS on the CDS Hooks endpoints only (``/cds-services`` and below), for browser-based CDS clients (a sandbox).

CDS Hooks 2.0 ("Cross-Origin Resource Sharing") expects CDS services to answer browser clients: a preflight
``OPTIONS`` naming the method and the ``Authorization`` and ``Content-Type`` headers, then the discovery GET and the
service and feedback POSTs with ``Access-Control-Allow-Origin``. refracture answers only the origins listed in
REFRACTURE_CDS_CORS_ORIGINS (none by default; ``*`` means any, which is safe here because the calls carry a bearer
JWT, never a cookie). ``Access-Control-Allow-Credentials`` is never sent: the CDS endpoints accept no cookies, so a
page elsewhere can never ride a coordinator's session through them. Every other path gets no CORS headers at all.

A preflight from an origin not on the list, or for another method or header, is refused (403) without CORS headers,
so the browser blocks the call; an actual request from such an origin is answered without them (the browser hides
the answer from the page).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.fhir.jsonio import dumps

__all__ = ["CdsCorsMiddleware"]

_PREFIX: Final = "/cds-services"
_METHODS: Final = frozenset({"GET", "POST"})
_HEADERS: Final = frozenset({"authorization", "content-type", "accept"})
_MAX_AGE_S: Final = "600"


def _cds_path(path: str) -> bool:
    return path == _PREFIX or path.startswith(_PREFIX + "/")


class CdsCorsMiddleware:
    """Preflights and ``Access-Control-Allow-Origin`` for the CDS Hooks endpoints, for the configured origins."""

    def __init__(self, app: ASGIApp, origins: Callable[[], Sequence[str]]) -> None:
        self.app = app
        self._origins = origins

    def _allowed(self, origin: str) -> str | None:
        """The Access-Control-Allow-Origin value for an origin, or None when it is not allowed."""
        configured = self._origins()
        if origin in configured:
            return origin
        if "*" in configured:
            return "*"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _cds_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allow = self._allowed(origin)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(allow, headers, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out.add_vary_header("Origin")
                if allow is not None:
                    out["Access-Control-Allow-Origin"] = allow
                    out["Access-Control-Expose-Headers"] = "Content-Type, Location, X-Request-Id"
            await send(message)

        await self.app(scope, receive, with_cors)

    async def _preflight(self, allow: str | None, headers: Headers, send: Send) -> None:
        method = headers["access-control-request-method"].strip().upper()
        asked = {h.strip().lower() for h in headers.get("access-control-request-headers", "").split(",") if h.strip()}
        if allow is None or method not in _METHODS or not asked <= _HEADERS:
            why = (
                "this origin may not call the CDS services (REFRACTURE_CDS_CORS_ORIGINS)"
                if allow is None
                else "only GET and POST with the Authorization, Content-Type and Accept headers"
            )
            body = dumps(
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "forbidden", "details": {"text": why}}],
                }
            )
            await _answer(send, 403, [(b"content-type", b"application/fhir+json"), (b"vary", b"Origin")], body)
            return
        await _answer(
            send,
            204,
            [
                (b"access-control-allow-origin", allow.encode()),
                (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                (b"access-control-allow-headers", b"Authorization, Content-Type, Accept"),
                (b"access-control-max-age", _MAX_AGE_S.encode()),
                (b"vary", b"Origin"),
            ],
            b"",
        )


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
