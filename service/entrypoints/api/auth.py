"""Authentication and authorisation as FastAPI dependencies: each route states the permission it needs.

A caller is a bearer token (``Authorization: Bearer …``) or, for the worklist page, a sign-in session cookie. No
valid token or session: 401 with ``WWW-Authenticate: Bearer`` and an OperationOutcome. A role or scope that does not
allow the route: 403 with an OperationOutcome.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from service.adapters.rate_limit import RateLimiter
from service.entrypoints.api.deps import AuthenticatorDep, RateLimiterDep, SessionsDep
from service.platform.errors import Issue, Problem, RefractureError
from service.security.authenticator import Authenticator
from service.security.principal import Permission, Principal
from service.security.sessions import Sessions
from service.security.tokens import AuthError

__all__ = [
    "SESSION_COOKIE",
    "CallerDep",
    "Callers",
    "CallersDep",
    "bearer",
    "caller",
    "forbidden",
    "require",
    "unauthenticated",
]

SESSION_COOKIE: Final = "refracture_session"
bearer = HTTPBearer(auto_error=False, description="An OAuth 2.0 access token (JWT) from the hospital's issuer")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


# The challenge's texts are fixed (RFC 6750 §3): nothing of the request reaches a header. A token's `alg` once came
# back in error_description unescaped, and a non-Latin-1 one made the header unencodable (a 500).
_CHALLENGE_INVALID: Final = (
    'Bearer realm="refracture", error="invalid_token", error_description="the token is not valid"'
)
_CHALLENGES: Final[dict[str, str]] = {
    "invalid_token": _CHALLENGE_INVALID,
    "invalid_request": 'Bearer realm="refracture", error="invalid_request", error_description="malformed request"',
    "missing": 'Bearer realm="refracture"',
}


def unauthenticated(reason: str, error: str = "invalid_token") -> RefractureError:
    """401 with the RFC 6750 challenge (a fixed text per error code); the OperationOutcome names the failed check in
    one of our own fixed texts, never the token."""
    challenge = _CHALLENGES.get(error, _CHALLENGES["invalid_token"])
    return RefractureError(Problem.UNAUTHENTICATED, [Issue("login", reason)], {"WWW-Authenticate": challenge})


def forbidden(reason: str) -> RefractureError:
    """403: who the caller is is known; what they asked for is not theirs to do."""
    return RefractureError(Problem.FORBIDDEN, [Issue("forbidden", reason)])


class Callers:
    """Who is calling: a bearer token or a session cookie, checked, then throttled per client."""

    def __init__(self, authenticator: Authenticator, sessions: Sessions, limiter: RateLimiter) -> None:
        self._authenticator = authenticator
        self._sessions = sessions
        self._limiter = limiter

    async def identify(self, request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
        """The authenticated caller (once per request).

        Raises:
            RefractureError: 401 when there is no valid token or session.
        """
        known: Principal | None = getattr(request.state, "principal", None)
        if known is not None:
            return known
        if credentials is not None:
            try:
                # A token seen lately is answered from memory; a new one is checked off the event loop (JWKS).
                known = self._authenticator.cached(credentials.credentials)
                principal = (
                    known
                    if known is not None
                    else await run_in_threadpool(self._authenticator.authenticate, credentials.credentials)
                )
            except AuthError as exc:
                if exc.error == "server_error":
                    raise RefractureError(
                        Problem.UNAVAILABLE, [Issue("transient", "the token cannot be checked now; try again")]
                    ) from None
                # Failed attempts count against the caller's address (ThrottleMiddleware): guessing is throttled.
                raise unauthenticated(str(exc), exc.error) from None
        else:
            cookie = request.cookies.get(SESSION_COOKIE)
            session = await run_in_threadpool(self._sessions.find, cookie) if cookie else None
            if session is None:
                raise unauthenticated("sign in, or send an access token", "missing")
            principal = session.principal
            request.state.session = session
            if not _api_change_from_our_pages(request):
                # The JSON API has no CSRF token: a cookie-authenticated change must show it comes from our pages.
                raise forbidden("a change made with a sign-in cookie must come from this site (Origin or Referer)")
        # Known before the throttle: a throttled client is still a known one (audited as such, never anonymous).
        request.state.principal = principal
        await throttle_client(self._limiter, principal)
        return principal


async def _callers(authenticator: AuthenticatorDep, sessions: SessionsDep, limiter: RateLimiterDep) -> Callers:
    return Callers(authenticator, sessions, limiter)


CallersDep = Annotated[Callers, Depends(_callers)]


async def caller(request: Request, callers: CallersDep, credentials: BearerDep) -> Principal:
    """The authenticated caller, as a dependency.

    Raises:
        RefractureError: 401 when there is no valid token or session.
    """
    return await callers.identify(request, credentials)


_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def _api_change_from_our_pages(request: Request) -> bool:
    """Whether a cookie-authenticated call may go ahead: reads always; JSON API changes only with an Origin (or,
    without one, a Referer) of this site and no cross-site Sec-Fetch-Site. A browser sends them on every such call;
    a page elsewhere cannot forge them. The pages' own forms carry CSRF tokens and check the origin themselves."""
    if request.method in _SAFE_METHODS or not request.url.path.startswith("/api/"):
        return True
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return False
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    return urlsplit(source).netloc == request.url.netloc


async def throttle_client(limiter: RateLimiter, principal: Principal) -> None:
    """Count an authenticated request against its client's limit.

    Raises:
        RefractureError: 429 with Retry-After over the limit.
    """
    key = f"client:{principal.client_id or principal.subject}"
    if not limiter.per_minute:
        return  # no limit: no hop to a worker thread either
    wait = await run_in_threadpool(limiter.allow, key)
    if wait is not None:
        raise RefractureError(
            Problem.TOO_MANY_REQUESTS,
            [Issue("throttled", f"more than {limiter.per_minute} requests a minute; slow down")],
            {"Retry-After": str(int(wait))},
        )


CallerDep = Annotated[Principal, Depends(caller)]


def require(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that lets the request through only when the caller's roles allow ``permission``."""

    async def check(principal: CallerDep) -> Principal:
        if not principal.may(permission):
            raise forbidden(f"this needs the {permission.value} permission, which your role does not have")
        return principal

    check.__name__ = f"require_{permission.name.lower()}"
    return check
