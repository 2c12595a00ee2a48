"""What the identity provider and SMART launcher stand-ins share: an authorisation server's code flow. Authorize
signs the configured person in at once with a one-time code; the token exchange checks the client's secret, the code
(once), the redirect URI and the PKCE verifier; ID tokens are signed with the server's key, published as its JWKS.
Everything asked is recorded, for the tests to inspect. Served on a loopback port by uvicorn, in a thread."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any, Self
from urllib.parse import parse_qs, urlencode

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from service.devtools.local_services import free_port
from tests.support.servers import ThreadedServer

__all__ = ["CodeFlowServer", "LoopbackStandIn"]


class CodeFlowServer:
    """The code flow with PKCE at ``issuer``: /authorize, /token and /jwks, and the ``routes`` a subclass adds (its
    discovery). A subclass checks what authorize asks before ``grant`` and answers a token request that ``exchange``
    let through."""

    def __init__(
        self, issuer: str, client: tuple[str, str], kid: str, person: dict[str, Any], routes: list[Route]
    ) -> None:
        self.issuer = issuer
        self.client_id, self.client_secret = client
        self.key = RSAKey.generate_key(2048, parameters={"kid": kid})
        self.person = person
        self.codes: dict[str, dict[str, Any]] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.app = Starlette(
            routes=[
                *routes,
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )

    async def authorize(self, request: Request) -> Response:
        raise NotImplementedError

    async def token(self, request: Request) -> Response:
        raise NotImplementedError

    async def jwks(self, _: Request) -> Response:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))

    def authorize_request(self, request: Request) -> dict[str, str]:
        """The authorize request's query, recorded."""
        query = dict(request.query_params)
        self.authorize_requests.append(query)
        return query

    def grant(self, query: dict[str, str], **remember: Any) -> Response:
        """Sign in at once: a one-time code for what was asked (and ``remember``), back to the redirect URI."""
        code = secrets.token_urlsafe(16)
        self.codes[code] = {**query, **remember}
        back = {"code": code, "state": query.get("state", "")}
        return RedirectResponse(f"{query['redirect_uri']}?{urlencode(back)}", status_code=302)

    async def token_request(self, request: Request) -> dict[str, str]:
        """The token request's form (the last value of each field), recorded."""
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
        self.token_requests.append(form)
        return form

    def exchange(self, request: Request, form: dict[str, str]) -> dict[str, Any] | Response:
        """What the code was granted for, or the error answer: a wrong client secret, an unknown or used code (a code
        works once), another redirect URI or a verifier that does not match the S256 challenge."""
        expected = "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        asked = self.codes.pop(form.get("code", ""), None)
        if asked is None or form.get("redirect_uri") != asked["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if challenge != asked["code_challenge"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
        return asked

    def id_token(self, nonce: str) -> str:
        """An ID token for the person, valid five minutes, for this client."""
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300, "nonce": nonce}
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, {**claims, **self.person}, self.key)


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
