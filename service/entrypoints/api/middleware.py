"""ASGI middleware: request ids, security headers, and the audit record of every request that touches patient data.

Pure ASGI (no BaseHTTPMiddleware) so streamed responses stay streamed. The audit is written when the response
starts, before its first byte leaves: if the audit cannot be written, the caller gets a 503 instead of the data
(no unaudited access to patient data).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.domain.audit_record import AuditRecord
from service.fhir.jsonio import dumps
from service.fhir.outcome import operation_outcome
from service.platform.errors import Issue
from service.platform.logs import REQUEST_ID
from service.security.principal import Principal
from service.usecases.audit import AuditLog
from service.usecases.refusals import RefusalCounter

if TYPE_CHECKING:
    from service.adapters.rate_limit import RateLimiter

__all__ = [
    "AccessLogMiddleware",
    "AuditMiddleware",
    "AuditNote",
    "RequestIdMiddleware",
    "SecurityHeadersMiddleware",
    "ThrottleMiddleware",
    "audit_records",
    "client_ip",
    "header",
    "note_audit",
]

log = logging.getLogger(__name__)

_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
# Routes without patient data, or before anyone is known: not audited.
_NOT_AUDITED: Final = frozenset({"/healthz", "/readyz", "/metrics", "/fhir/metadata", "/docs", "/openapi.json"})


class RequestIdMiddleware:
    """Takes the caller's X-Request-Id (when it is a plain token) or makes one; echoes it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = header(scope, b"x-request-id")
        request_id = given if given and _REQUEST_ID.match(given) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        await self.app(scope, receive, with_id)


_PAGE_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_API_CSP: Final = "default-src 'none'; frame-ancestors 'none'"
# The interactive API docs (development only) load their scripts from a CDN.
_DOCS_CSP: Final = (
    "default-src 'none'; script-src 'self' https://cdn.jsdelivr.net 'unsafe-inline'; "
    "style-src 'self' https://cdn.jsdelivr.net 'unsafe-inline'; img-src 'self' data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    """Headers a security review looks for: no sniffing, no framing, no referrer to other sites, no caching of
    patient data, a Content-Security-Policy without script, and HSTS when the deployment is behind HTTPS."""

    def __init__(self, app: ASGIApp, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        csp = (
            _DOCS_CSP
            if path in ("/docs", "/redoc")
            else _PAGE_CSP
            if not path.startswith(("/api", "/fhir"))
            else _API_CSP
        )

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {name.lower() for name, _ in headers}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),  # no-referrer would make browsers send Origin: null
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"content-security-policy", csp.encode()),
                    (b"cache-control", b"no-store"),
                ]
                if self.hsts:
                    extra.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
                headers.extend((name, value) for name, value in extra if name not in present)
            await send(message)

        await self.app(scope, receive, with_headers)


@dataclass(slots=True)
class AuditNote:
    """What a route tells the audit about its request: the action and the patients and resource it touched."""

    action: str
    resource_type: str | None = None
    resource_id: str | None = None
    patients: list[str] = field(default_factory=list)
    detail: str | None = None
    recorded: bool = False  # the route records its own rows (streamed exports)


def note_audit(state: Any, note: AuditNote) -> None:
    """Attach a route's note to the request (``request.state``)."""
    state.audit = note


_DEFAULT_ACTION: Final = {"GET": "read", "POST": "create", "PUT": "update"}
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Probes and scrapes: never throttled (a kubelet or Prometheus polls from one address, without a token).
_NOT_THROTTLED: Final = frozenset({"/healthz", "/readyz", "/metrics"})
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_UNDER_LIMIT_FOR_S: Final = 1.0
_UNDER_LIMIT_ADDRESSES: Final = 10_000


class ThrottleMiddleware:
    """Throttles each address's unauthenticated requests before any credential is looked at.

    A request that ends without an authenticated caller (no credentials, a junk session cookie, a bad token, an
    unknown path) counts against its address. Once an address is past ``REFRACTURE_RATE_LIMIT_ANONYMOUS_PER_MINUTE``
    every request from it gets 429 with Retry-After and an OperationOutcome, before a session lookup, a token check,
    a route or an audit row: a flood costs a Redis round trip per request and nothing else. Requests without
    credentials are counted on arrival; ones with credentials only when they turn out not to authenticate, so an
    integration engine's heavy traffic never counts. A request with credentials asks whether its address is past the
    limit, unless this process found it under the limit less than a second ago and has counted nothing from it since
    (another API worker's counting shows here within that second). OIDC sign-in starts are also bounded
    deployment-wide (each one stores a pending sign-in row). Sits outside the audit.
    """

    def __init__(
        self, app: ASGIApp, limiter: Callable[[], RateLimiter], secret_header: Callable[[], str] = lambda: ""
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.secret_header = secret_header  # the subscription notifications' secret header, when not Authorization
        self._under_limit: dict[str, float] = {}  # address -> until when a credentialed request need not ask

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in _NOT_THROTTLED:
            await self.app(scope, receive, send)
            return
        limiter = self.limiter()
        address = client_ip(scope) or "?"
        secret_header = self.secret_header().lower().encode("latin-1")
        credentials = (
            header(scope, b"authorization") is not None
            or b"refracture_session=" in (_raw_header(scope, b"cookie") or b"")
            or (bool(secret_header) and _raw_header(scope, secret_header) is not None)
        )
        # Without credentials the request is anonymous whatever happens: count it now. With them, only ask — and
        # an address found under its limit in this process less than a second ago is not asked again: an interface
        # engine's every request would otherwise cost a Redis round trip and a thread hop (docs/performance.md).
        if credentials and self._under_limit.get(address, 0.0) > time.monotonic():
            wait = None
        else:
            wait = await run_in_threadpool(limiter.anonymous, address, not credentials)
            self._note(address, counted=not credentials, under=wait is None)
        if wait is None and scope.get("method") == "GET" and scope.get("path") == "/auth/sign-in":
            wait = await run_in_threadpool(limiter.sign_in)
        if wait is not None:
            await _throttled(send, wait)
            return
        await self.app(scope, receive, send)
        if credentials and scope.get("state", {}).get("principal") is None:
            self._note(address, counted=True, under=False)
            await run_in_threadpool(limiter.anonymous, address)

    def _note(self, address: str, *, counted: bool, under: bool) -> None:
        # A counted request may be the one past the limit: the next credentialed one asks again.
        if counted or not under:
            self._under_limit.pop(address, None)
            return
        if len(self._under_limit) >= _UNDER_LIMIT_ADDRESSES:
            self._under_limit.clear()
        self._under_limit[address] = time.monotonic() + _UNDER_LIMIT_FOR_S


async def _throttled(send: Send, wait: float) -> None:
    body = dumps(operation_outcome([Issue("throttled", "too many requests without valid credentials; slow down")]))
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [(b"content-type", b"application/fhir+json"), (b"retry-after", str(int(wait)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class AuditMiddleware:
    """One audit row per patient a request touched (or one without a patient), written before the response.

    A request no one authenticated for, that no route noted (an anonymous 401, an unknown path, an anonymous sign-in
    page), touched no patient data: it adds to a per-address, per-minute count (usecases/refusals.py) instead of a
    row of its own, so that nobody can grow the six-year trail at will.
    """

    def __init__(
        self, app: ASGIApp, audit: Callable[[], AuditLog], refusals: Callable[[], RefusalCounter | None] | None = None
    ) -> None:
        self.app = app
        self.audit = audit
        self.refusals = refusals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in _NOT_AUDITED or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        started = False
        withheld = False

        async def audited(message: Message) -> None:
            nonlocal started, withheld
            if message["type"] == "http.response.start" and not started:
                started = True
                if not await self._record(scope, int(message["status"])):
                    withheld = True
                    await _unavailable(send)
            if not withheld:
                await send(message)

        try:
            await self.app(scope, receive, audited)
        except Exception:
            if not started:
                await self._record(scope, 500)
            raise

    async def _record(self, scope: Scope, status: int) -> bool:
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        note: AuditNote | None = state.get("audit")
        if note is not None and note.recorded:
            return True
        route = scope.get("route")
        method = str(scope.get("method"))
        what = f"{method if method in _METHODS else 'OTHER'} {getattr(route, 'path', None) or 'unmatched'}"
        principal: Principal | None = state.get("principal")
        refusals = self.refusals() if self.refusals is not None else None
        if principal is None and note is None and refusals is not None:
            try:
                await run_in_threadpool(refusals.count, client_ip(scope), what, status)
            except Exception as exc:  # noqa: BLE001 - a count lost is no patient data unaudited: answer anyway
                log.warning("refused request not counted (%s)", type(exc).__name__)
            return True
        records = audit_records(
            note or AuditNote(_DEFAULT_ACTION.get(str(scope.get("method")), "other")),
            principal,
            what,
            status,
            client_ip(scope),
            state.get("request_id"),
        )
        try:
            await run_in_threadpool(self.audit().record, records)
        except Exception as exc:  # noqa: BLE001 - any failure to audit withholds the response
            log.error("audit write failed (%s): answering 503", exc)
            return False
        return True


def audit_records(
    note: AuditNote,
    principal: Principal | None,
    what: str,
    status: int,
    source_ip: str | None,
    request_id: str | None,
    at: datetime | None = None,
) -> list[AuditRecord]:
    """The rows of one request: one per patient touched, or one without a patient.

    Every text is cut to a bound (ids from paths and bodies could be anything up to the body limit): a FHIR id is at
    most 64 characters, so a longer one was refused anyway and its first 64 say enough.
    """
    template = AuditRecord(
        at=at or datetime.now(UTC),
        actor=_cut(principal.subject if principal else "anonymous", _MAX_NAME) or "anonymous",
        client_id=_cut(principal.client_id if principal else None, _MAX_NAME),
        auth_source=principal.source if principal else None,
        roles=tuple(sorted(r.value for r in principal.roles)) if principal else (),
        action=_cut(note.action, _MAX_NAME) or "other",
        what=_cut(what, _MAX_NAME) or "",
        outcome=status,
        resource_type=_cut(note.resource_type, _MAX_ID),
        resource_id=_cut(note.resource_id, _MAX_ID),
        source_ip=_cut(source_ip, _MAX_ID),
        request_id=_cut(request_id, _MAX_ID),
        detail=_cut(note.detail, _MAX_DETAIL),
    )
    patients: list[str | None] = [*sorted({_cut(p, _MAX_ID) or "" for p in note.patients})] or [None]
    return [replace(template, patient_id=p) for p in patients]


_MAX_ID: Final = 64  # FHIR ids (and request ids, addresses)
_MAX_NAME: Final = 256  # subjects, client ids, route templates
_MAX_DETAIL: Final = 512


def _cut(value: str | None, bound: int) -> str | None:
    return value[:bound] if value is not None else None


async def _unavailable(send: Send) -> None:
    body = dumps(operation_outcome([Issue("transient", "the access cannot be audited now; try again")]))
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"application/fhir+json"), (b"retry-after", b"5")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (the first, as latin-1 text), or None."""
    raw = _raw_header(scope, name)
    return raw.decode("latin-1") if raw is not None else None


def _raw_header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


def client_ip(scope: Scope) -> str | None:
    """The caller's address as the server saw it (behind a proxy: run uvicorn with --proxy-headers)."""
    client = scope.get("client")
    return str(client[0]) if client else None


_access_log = logging.getLogger("refracture.access")


class AccessLogMiddleware:
    """One line per request: method, route template, status, duration and (through REQUEST_ID) the request id.

    Never the raw path or the query string: ids in paths can be MRNs, and query strings carry names. Sits inside
    RequestIdMiddleware (it reads the id) and outside the audit (it logs the audit's 503 too).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = REQUEST_ID.set(scope.get("state", {}).get("request_id"))
        started = time.perf_counter()
        status: int | None = None

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noted)
        except Exception:
            # The id stays set on purpose: the server's error handler and its log line come after this, in the
            # same request's context (each request runs in its own task, so it goes no further).
            _log_access(scope, status or 500, started)
            raise
        _log_access(scope, status or 500, started)
        REQUEST_ID.reset(token)


def _log_access(scope: Scope, status: int, started: float) -> None:
    method = str(scope.get("method", "?"))
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    _access_log.log(
        logging.WARNING if status >= 500 else logging.INFO,
        "%s %s %d %.1f ms",
        method,
        route,
        status,
        duration_ms,
        extra={"fields": {"method": method, "route": route, "status": status, "duration_ms": duration_ms}},
    )
