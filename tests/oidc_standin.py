"""An OpenID Connect provider stand-in: discovery, authorize (signs in a configured person at once), token (checks
the client's secret, the redirect URI and the PKCE verifier), and the JWKS. Served on a loopback port by uvicorn."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.authorization import CodeFlowServer, LoopbackStandIn

CLIENT_ID = "refracture-worklist"
CLIENT_SECRET = secrets.token_urlsafe(16)  # made per run: no credential is ever committed


class OidcStandIn(CodeFlowServer):
    """The provider, with the person who will sign in and everything it was asked."""

    def __init__(self, issuer: str) -> None:
        person: dict[str, Any] = {"sub": "nurse.ada", "name": "Ada Nurse", "roles": ["care-coordinator"]}
        discovery = Route("/.well-known/openid-configuration", self.discovery)
        super().__init__(issuer, (CLIENT_ID, CLIENT_SECRET), "idp-1", person, [discovery])
        self.end_session = False  # whether discovery offers an end_session_endpoint

    async def discovery(self, _: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "code_challenge_methods_supported": ["S256"],
                **({"end_session_endpoint": f"{self.issuer}/logout"} if self.end_session else {}),
            }
        )

    async def authorize(self, request: Request) -> Response:
        query = self.authorize_request(request)
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        return self.grant(query)

    async def token(self, request: Request) -> Response:
        asked = self.exchange(request, await self.token_request(request))
        if isinstance(asked, Response):
            return asked
        return JSONResponse(
            {"id_token": self.id_token(asked["nonce"]), "access_token": "opaque", "token_type": "Bearer"}
        )


class RunningOidc(LoopbackStandIn):
    """The stand-in on a loopback port, in a background thread."""

    def __init__(self) -> None:
        super().__init__()
        self.issuer = self.url
        self.provider = OidcStandIn(self.issuer)
        self.serve(self.provider.app)

    def sign_in_settings(self) -> dict[str, Any]:
        """The settings that make refracture sign people in here (and accept no development tokens)."""
        return {
            "auth_issuer": self.issuer,
            "auth_audience": "refracture-api",
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": CLIENT_SECRET,
            "auth_dev_tokens": {},
        }
