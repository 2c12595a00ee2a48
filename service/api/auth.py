"""Authentication and authorisation as FastAPI dependencies: each route states the permission it needs.

A caller is a bearer token (``Authorization: Bearer …``) or, for the worklist page, a sign-in session cookie. No
valid token or session: 401 with ``WWW-Authenticate: Bearer`` and an OperationOutcome. A role or scope that does not
allow the route: 403 with an OperationOutcome.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from service.api.deps import ContainerDep
from service.errors import Issue, Problem, RefractureError
from service.security.principal import Permission, Principal
from service.security.tokens import AuthError

__all__ = ["SESSION_COOKIE", "CallerDep", "bearer", "caller", "forbidden", "require", "unauthenticated"]

SESSION_COOKIE: Final = "refracture_session"
bearer = HTTPBearer(auto_error=False, description="An OAuth 2.0 access token (JWT) from the hospital's issuer")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def unauthenticated(reason: str, error: str = "invalid_token") -> RefractureError:
    """401 with the RFC 6750 challenge; the reason names the failed check, never the token."""
    challenge = f'Bearer realm="refracture", error="{error}", error_description="{reason}"'
    if error == "missing":
        challenge = 'Bearer realm="refracture"'
    return RefractureError(Problem.UNAUTHENTICATED, [Issue("login", reason)], {"WWW-Authenticate": challenge})


def forbidden(reason: str) -> RefractureError:
    """403: who the caller is is known; what they asked for is not theirs to do."""
    return RefractureError(Problem.FORBIDDEN, [Issue("forbidden", reason)])


async def caller(request: Request, container: ContainerDep, credentials: BearerDep) -> Principal:
    """The authenticated caller (once per request).

    Raises:
        RefractureError: 401 when there is no valid token or session.
    """
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known
    if credentials is not None:
        try:
            # A token seen lately is answered from memory; a new one is checked off the event loop (JWKS fetches).
            known = container.authenticator.cached(credentials.credentials)
            principal = (
                known
                if known is not None
                else await run_in_threadpool(container.authenticator.authenticate, credentials.credentials)
            )
        except AuthError as exc:
            if exc.error == "server_error":
                raise RefractureError(
                    Problem.UNAVAILABLE, [Issue("transient", "the token cannot be checked now; try again")]
                ) from None
            # Failed attempts count against the caller's address: guessing tokens is throttled.
            await _throttle(container, f"ip:{request.client.host if request.client else '?'}")
            raise unauthenticated(str(exc), exc.error) from None
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        session = await run_in_threadpool(container.sessions.find, cookie) if cookie else None
        if session is None:
            raise unauthenticated("sign in, or send an access token", "missing")
        principal = session.principal
        request.state.session = session
    await _throttle(container, f"client:{principal.client_id or principal.subject}")
    request.state.principal = principal
    return principal


async def _throttle(container: ContainerDep, key: str) -> None:
    if not container.rate_limiter.per_minute:
        return  # no limit: no hop to a worker thread either
    wait = await run_in_threadpool(container.rate_limiter.allow, key)
    if wait is not None:
        raise RefractureError(
            Problem.TOO_MANY_REQUESTS,
            [Issue("throttled", f"more than {container.rate_limiter.per_minute} requests a minute; slow down")],
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
