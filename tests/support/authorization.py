"""What the identity provider and SMART launcher stand-ins share: the authorize redirect with a one-time code, the
token exchange's checks (client secret, code once, redirect URI, PKCE), a signed ID token, the JWKS, and serving the
stand-in on a loopback port."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any, Self
from urllib.parse import parse_qs, urlencode

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from service.devtools.local_services import free_port
from tests.support.servers import ThreadedServer

__all__ = ["LoopbackStandIn", "code_redirect", "exchange_code", "id_token", "jwks_response", "token_form"]


def code_redirect(codes: dict[str, dict[str, Any]], query: dict[str, str], **remember: Any) -> Response:
    """Sign in at once: a one-time code for what was asked (and ``remember``), back to the redirect URI."""
    code = secrets.token_urlsafe(16)
    codes[code] = {**query, **remember}
    back = {"code": code, "state": query.get("state", "")}
    return RedirectResponse(f"{query['redirect_uri']}?{urlencode(back)}", status_code=302)


async def token_form(request: Request) -> dict[str, str]:
    """The token request's form (the last value of each field)."""
    return {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}


def exchange_code(
    request: Request, form: dict[str, str], codes: dict[str, dict[str, Any]], client_id: str, client_secret: str
) -> dict[str, Any] | Response:
    """What the code was issued for, or the error answer: a wrong client secret, an unknown or used code (a code
    works once), another redirect URI or a verifier that does not match the S256 challenge."""
    expected = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    if request.headers.get("authorization") != expected:
        return JSONResponse({"error": "invalid_client"}, status_code=401)
    asked = codes.pop(form.get("code", ""), None)
    if asked is None or form.get("redirect_uri") != asked["redirect_uri"]:
        return JSONResponse({"error": "invalid_grant"}, status_code=400)
    verifier = form.get("code_verifier", "")
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    if challenge != asked["code_challenge"]:
        return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
    return asked


def id_token(key: RSAKey, issuer: str, audience: str, nonce: str, person: dict[str, Any]) -> str:
    """An ID token for the person, valid five minutes, signed with ``key`` (its ``kid`` in the header)."""
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "iat": now, "exp": now + 300, "nonce": nonce}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, {**claims, **person}, key)


def jwks_response(key: RSAKey) -> Response:
    return JSONResponse(KeySet([key]).as_dict(private=False))


class LoopbackStandIn:
    """A stand-in's app on a loopback port, in a background thread; ``url`` is known before it starts, as the app
    needs its own address."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def serve(self, app: Any) -> None:
        self._server = ThreadedServer(app, port=self.port)

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(timeout_s=10)
