"""Signing in to the worklist page: the hospital's OpenID Connect provider, or (development) a configured token.

The session cookie is HttpOnly, SameSite=Lax, Secure behind HTTPS, and holds only a random id (sessions.py).
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from service.api.auth import SESSION_COOKIE
from service.api.body import read_body
from service.api.deps import ContainerDep
from service.api.middleware import AuditNote, note_audit
from service.api.web import templates
from service.errors import RefractureError
from service.security.principal import principal_from_claims
from service.security.tokens import AuthError

__all__ = ["router"]

router = APIRouter(prefix="/auth", include_in_schema=False)


def _next(value: str | None) -> str:
    """Only our own pages: anything else would make sign-in an open redirect."""
    parts = urlsplit(value or "")
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or (value or "").startswith("//"):
        return "/worklist"
    return value or "/worklist"


def _callback_url(request: Request, configured: str | None) -> str:
    return configured or str(request.url_for("oidc_callback"))


def _secure(request: Request, production: bool) -> bool:
    return production or request.url.scheme == "https"


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(
    request: Request, container: ContainerDep, next: Annotated[str | None, Query(max_length=2000)] = None
) -> Response:
    """Off to the provider, or (development) a form for a configured token."""
    target = _next(next)
    if container.oidc is not None:
        pending = await run_in_threadpool(container.sessions.begin_sign_in, target)
        redirect = _callback_url(request, container.settings.oidc_redirect_url)
        try:
            url = await run_in_threadpool(container.oidc.authorization_url, pending, redirect)
        except AuthError as exc:
            return _page(request, 503, str(exc), target)
        return RedirectResponse(url, status_code=303)
    return _page(request, 200, None, target)


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in_with_token(request: Request, container: ContainerDep) -> Response:
    """Development sign-in: a token from REFRACTURE_AUTH_DEV_TOKENS (or any valid access token) becomes a session."""
    try:
        raw = await read_body(request, 16_384)
    except RefractureError:
        return _page(request, 413, "The form is too large.", "/worklist")
    fields = {k: v[-1].strip() for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    target = _next(fields.get("next"))
    note = AuditNote("sign-in", detail="token")
    note_audit(request.state, note)
    if container.oidc is not None:
        return _page(request, 403, "Sign in through the hospital's sign-in page.", target)
    try:
        principal = await run_in_threadpool(container.authenticator.authenticate, fields.get("token", ""))
    except AuthError:
        return _page(request, 401, "That token is not valid.", target)
    claims = dict(principal.claims) or {"sub": principal.subject}
    return await _start_session(request, container, claims, target)


@router.get("/callback", name="oidc_callback")
async def oidc_callback(
    request: Request,
    container: ContainerDep,
    code: Annotated[str | None, Query(max_length=4000)] = None,
    state: Annotated[str | None, Query(max_length=200)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The provider sends the person back with a code (or an error)."""
    note_audit(request.state, AuditNote("sign-in", detail="oidc"))
    if container.oidc is None or container.authenticator.verifier is None:
        return _page(request, 404, "Sign-in through a provider is not configured.", "/worklist")
    pending = await run_in_threadpool(container.sessions.finish_sign_in, state or "")
    if pending is None:
        return _page(request, 400, "This sign-in has expired or was already used; start again.", "/worklist")
    if error or not code:
        return _page(request, 401, "The sign-in provider did not sign you in.", pending.return_to)
    redirect = _callback_url(request, container.settings.oidc_redirect_url)
    try:
        id_token = await run_in_threadpool(container.oidc.exchange, code, pending, redirect)
        claims = await run_in_threadpool(
            container.authenticator.verifier.claims, id_token, container.oidc.client_id, pending.nonce
        )
    except AuthError as exc:
        return _page(request, 401, f"Sign-in failed: {exc}", pending.return_to)
    return await _start_session(request, container, claims, pending.return_to)


@router.post("/sign-out")
async def sign_out(request: Request, container: ContainerDep) -> Response:
    """End the session (the cookie alone is not enough to sign someone out: the server forgets it)."""
    note_audit(request.state, AuditNote("sign-out"))
    cookie = request.cookies.get(SESSION_COOKIE)
    session = await run_in_threadpool(container.sessions.find, cookie)
    try:
        raw = await read_body(request, 16_384)
    except RefractureError:
        raw = b""
    token = next(iter(parse_qs(raw.decode("utf-8", "replace")).get("csrf", [])), "")
    if session is not None and not hmac.compare_digest(token.encode(), session.csrf_token.encode()):
        # A page elsewhere cannot sign a coordinator out behind their back.
        return _page(request, 403, "The sign-out form has expired; reload the page.", "/worklist")
    await run_in_threadpool(container.sessions.end, cookie)
    response = RedirectResponse("/auth/signed-out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/signed-out", response_class=HTMLResponse)
async def signed_out(request: Request) -> Response:
    """A page that says so."""
    return templates.TemplateResponse(request, "signed_out.html", {})


async def _start_session(request: Request, container: ContainerDep, claims: dict[str, object], target: str) -> Response:
    principal = principal_from_claims(claims, container.settings.auth_roles_claim, "session")
    request.state.principal = principal
    session_id, _ = await run_in_threadpool(container.sessions.start, claims)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=container.settings.session_ttl_s,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request, container.settings.environment == "production"),
    )
    return response


def _page(request: Request, status: int, problem: str | None, target: str) -> Response:
    return templates.TemplateResponse(
        request,
        "sign_in.html",
        {"problem": problem, "next": target, "query": urlencode({"next": target})},
        status_code=status,
    )
