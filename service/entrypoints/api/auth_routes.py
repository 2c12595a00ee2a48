"""Signing in to the worklist page: the hospital's OpenID Connect provider, or (development) a configured token.

The session cookie is HttpOnly, SameSite=Lax, Secure behind HTTPS, and holds only a random id (sessions.py). The
OIDC state is bound to the browser that started the sign-in, the token form carries a double-submit CSRF token and
is checked for its Origin, and the form is off in production (csrf.py). A new sign-in ends the session the browser
already had; signing out also ends the session at the provider when it offers an end_session_endpoint.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from typing import Annotated
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from service.adapters.oidc import OidcClient
from service.entrypoints.api.auth import SESSION_COOKIE
from service.entrypoints.api.body import read_body
from service.entrypoints.api.csrf import (
    check_sign_in_cookie,
    clear_sign_in_cookie,
    new_sign_in_cookie,
    same_origin,
    secure_request,
)
from service.entrypoints.api.deps import AuthenticatorDep, ClockDep, OidcDep, SessionsDep, SettingsDep
from service.entrypoints.api.middleware import AuditNote, note_audit
from service.entrypoints.api.web import templates
from service.platform.config import Settings
from service.platform.errors import RefractureError
from service.security.principal import principal_from_claims
from service.security.sessions import Sessions
from service.security.tokens import AuthError
from service.usecases.ports.clock import Clock

__all__ = ["SignInPages", "SignInPagesDep", "router"]

router = APIRouter(prefix="/auth", include_in_schema=False)


def _next(value: str | None) -> str:
    """Only our own pages: anything else would make sign-in an open redirect."""
    parts = urlsplit(value or "")
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or (value or "").startswith("//"):
        return "/worklist"
    return value or "/worklist"


def _callback_url(request: Request, configured: str | None) -> str:
    return configured or str(request.url_for("oidc_callback"))


class SignInPages:
    """What the sign-in and launch routes share: the cookie's Secure flag, the sign-in page, and starting a session."""

    def __init__(self, settings: Settings, oidc: OidcClient | None, sessions: Sessions, clock: Clock) -> None:
        self._settings = settings
        self._oidc = oidc
        self._sessions = sessions
        self._clock = clock

    def secure(self, request: Request) -> bool:
        """Whether cookies get the Secure flag for this request."""
        return secure_request(request, self._settings.environment == "production")

    def token_form_allowed(self) -> bool:
        """Whether the development token form is offered."""
        # Off in production: people sign in through the hospital's provider only.
        return self._oidc is None and self._settings.environment != "production"

    def page(self, request: Request, status: int, problem: str | None, target: str) -> Response:
        """The sign-in page: a problem, and (development only) the token form with a fresh double-submit CSRF
        token."""
        csrf = secrets.token_urlsafe(32) if self.token_form_allowed() else ""
        response = templates.TemplateResponse(
            request,
            "sign_in.html",
            {"problem": problem, "next": target, "query": urlencode({"next": target}), "csrf": csrf},
            status_code=status,
        )
        if csrf:
            new_sign_in_cookie(response, self.secure(request), csrf)
        return response

    async def start_session(
        self, request: Request, claims: dict[str, object], target: str, provider: bool = False
    ) -> Response:
        """A new session for these claims, its cookie set, and off to the target page."""
        principal = principal_from_claims(claims, self._settings.auth_roles_claim, "session")
        request.state.principal = principal
        # The session this browser had ends: a sign-in never inherits or keeps alive an earlier one (fixation).
        await run_in_threadpool(self._sessions.end, request.cookies.get(SESSION_COOKIE))
        session_id, session = await run_in_threadpool(self._sessions.start, claims, provider)
        response = RedirectResponse(target, status_code=303)
        secure = self.secure(request)
        lifetime = int((session.expires_at - self._clock()).total_seconds())
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=max(lifetime, 1),
            path="/",
            httponly=True,
            samesite="lax",
            secure=secure,
        )
        clear_sign_in_cookie(response, secure)
        return response


async def _sign_in_pages(settings: SettingsDep, oidc: OidcDep, sessions: SessionsDep, clock: ClockDep) -> SignInPages:
    return SignInPages(settings, oidc, sessions, clock)


SignInPagesDep = Annotated[SignInPages, Depends(_sign_in_pages)]


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(
    request: Request,
    oidc: OidcDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    pages: SignInPagesDep,
    next: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    """Off to the provider, or (development) a form for a configured token."""
    target = _next(next)
    if oidc is not None:
        pending = await run_in_threadpool(sessions.begin_sign_in, target)
        redirect = _callback_url(request, settings.oidc_redirect_url)
        try:
            url = await run_in_threadpool(oidc.authorization_url, pending, redirect)
        except AuthError as exc:
            return pages.page(request, 503, str(exc), target)
        response = RedirectResponse(url, status_code=303)
        # The state is bound to this browser: the callback must come back to the browser that started it.
        new_sign_in_cookie(response, pages.secure(request), pending.state)
        return response
    if not pages.token_form_allowed():
        return pages.page(request, 404, "Sign-in is not configured (REFRACTURE_OIDC_CLIENT_ID).", target)
    return pages.page(request, 200, None, target)


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in_with_token(request: Request, authenticator: AuthenticatorDep, pages: SignInPagesDep) -> Response:
    """Development sign-in: a token from REFRACTURE_AUTH_DEV_TOKENS (or any valid access token) becomes a session."""
    try:
        raw = await read_body(request, 16_384)
    except RefractureError:
        return pages.page(request, 413, "The form is too large.", "/worklist")
    fields = {k: v[-1].strip() for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    target = _next(fields.get("next"))
    note = AuditNote("sign-in", detail="token")
    note_audit(request.state, note)
    if not pages.token_form_allowed():
        return pages.page(request, 403, "Sign in through the hospital's sign-in page.", target)
    secure = pages.secure(request)
    # Login CSRF: the form must come from this site and carry the value of this browser's sign-in cookie.
    if not same_origin(request) or not check_sign_in_cookie(request, secure, fields.get("csrf", "")):
        problem = "The sign-in form has expired or came from another site; try again."
        return pages.page(request, 403, problem, target)
    try:
        principal = await run_in_threadpool(authenticator.authenticate, fields.get("token", ""))
    except AuthError:
        return pages.page(request, 401, "That token is not valid.", target)
    claims = dict(principal.claims) or {"sub": principal.subject}
    return await pages.start_session(request, claims, target)


@router.get("/callback", name="oidc_callback")
async def oidc_callback(
    request: Request,
    oidc: OidcDep,
    authenticator: AuthenticatorDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    pages: SignInPagesDep,
    code: Annotated[str | None, Query(max_length=4000)] = None,
    state: Annotated[str | None, Query(max_length=200)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The provider sends the person back with a code (or an error)."""
    note_audit(request.state, AuditNote("sign-in", detail="oidc"))
    if oidc is None or authenticator.verifier is None:
        return pages.page(request, 404, "Sign-in through a provider is not configured.", "/worklist")
    if not check_sign_in_cookie(request, pages.secure(request), state or ""):
        # Another browser's sign-in (login CSRF: an attacker's callback URL opened in the victim's browser).
        return pages.page(request, 400, "This sign-in was not started in this browser; start again.", "/worklist")
    pending = await run_in_threadpool(sessions.finish_sign_in, state or "")
    if pending is None or pending.smart_iss is not None:  # a SMART launch's state comes back to /launch/callback
        return pages.page(request, 400, "This sign-in has expired or was already used; start again.", "/worklist")
    if error or not code:
        return pages.page(request, 401, "The sign-in provider did not sign you in.", pending.return_to)
    redirect = _callback_url(request, settings.oidc_redirect_url)
    try:
        id_token = await run_in_threadpool(oidc.exchange, code, pending, redirect)
        claims = await run_in_threadpool(authenticator.verifier.claims, id_token, oidc.client_id, pending.nonce)
    except AuthError as exc:
        return pages.page(request, 401, f"Sign-in failed: {exc}", pending.return_to)
    return await pages.start_session(request, claims, pending.return_to, provider=True)


@router.post("/sign-out")
async def sign_out(request: Request, sessions: SessionsDep, oidc: OidcDep, pages: SignInPagesDep) -> Response:
    """End the session (the cookie alone is not enough to sign someone out: the server forgets it)."""
    note_audit(request.state, AuditNote("sign-out"))
    cookie = request.cookies.get(SESSION_COOKIE)
    session = await run_in_threadpool(sessions.find, cookie)
    try:
        raw = await read_body(request, 16_384)
    except RefractureError:
        raw = b""
    token = next(iter(parse_qs(raw.decode("utf-8", "replace")).get("csrf", [])), "")
    if session is not None and (
        not same_origin(request) or not hmac.compare_digest(token.encode(), session.csrf_token.encode())
    ):
        # A page elsewhere cannot sign a coordinator out behind their back.
        return pages.page(request, 403, "The sign-out form has expired; reload the page.", "/worklist")
    await run_in_threadpool(sessions.end, cookie)
    target = "/auth/signed-out"
    if session is not None and session.provider and oidc is not None:
        # Also end the session at the provider (OpenID Connect RP-Initiated Logout), when it offers that.
        back = str(request.url_for("signed_out"))
        # A provider that cannot be reached: refracture's own session is over all the same.
        with contextlib.suppress(AuthError):
            ended: str | None = await run_in_threadpool(oidc.end_session_url, back)
            target = ended or target
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/signed-out", response_class=HTMLResponse, name="signed_out")
async def signed_out(request: Request) -> Response:
    """A page that says so."""
    return templates.TemplateResponse(request, "signed_out.html", {})
