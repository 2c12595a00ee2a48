"""A SMART launcher stand-in: an EHR's authorisation server and FHIR base, on a loopback port (uvicorn in a thread).

- ``{base}/fhir/.well-known/smart-configuration``: SMART 2.x discovery (issuer, jwks_uri, endpoints, S256).
- ``/authorize``: checks the client, ``aud`` (the FHIR base), the scopes (``launch`` with a known launch handle, or
  ``launch/patient``; ``openid fhirUser``) and the S256 challenge, then signs the configured person in at once.
- ``/token``: checks the client's secret, the code (once), the redirect URI and the PKCE verifier; answers with an
  access token, ``patient`` (the launch's, or the standalone pick) and an ID token with ``fhirUser`` and the nonce.
- ``{base}/fhir/MedicationRequest``: a FHIR search that needs one of the access tokens it issued (for CDS Hooks'
  ``fhirServer`` + ``fhirAuthorization``).

Everything asked is recorded, for the tests to inspect.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.authorization import CodeFlowServer, LoopbackStandIn

CLIENT_ID = "refracture-smart"
CLIENT_SECRET = secrets.token_urlsafe(16)  # made per run: no credential is ever committed


class SmartLauncher(CodeFlowServer):
    """The EHR side of a SMART launch, with the person who will sign in and the launches it has handed out."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.fhir = f"{base}/fhir"
        person: dict[str, Any] = {"sub": "u-4711", "name": "Dr Grace Hopper", "fhirUser": "Practitioner/dr-grace"}
        routes = [
            Route("/fhir/.well-known/smart-configuration", self.configuration),
            Route("/fhir/MedicationRequest", self.medication_requests),
        ]
        super().__init__(base, (CLIENT_ID, CLIENT_SECRET), "ehr-smart-1", person, routes)
        self.launches: dict[str, str] = {}  # launch handle -> patient in context
        self.standalone_patient: str | None = None  # the patient picked in a standalone launch
        self.token_status = 200  # what /token answers (a failure mode when not 200)
        self.access_tokens: set[str] = set()
        self.fhir_requests: list[dict[str, str]] = []
        self.medications: list[dict[str, Any]] = []  # MedicationRequests the FHIR search answers with

    def launch(self, patient: str) -> str:
        """A launch handle for a patient in context, as the EHR puts it in the launch URL."""
        handle = secrets.token_urlsafe(12)
        self.launches[handle] = patient
        return handle

    async def configuration(self, _: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.base,
                "jwks_uri": f"{self.base}/jwks",
                "authorization_endpoint": f"{self.base}/authorize",
                "token_endpoint": f"{self.base}/token",
                "grant_types_supported": ["authorization_code"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "patient/*.rs"],
                "capabilities": [
                    "launch-ehr",
                    "launch-standalone",
                    "client-confidential-symmetric",
                    "sso-openid-connect",
                ],
            }
        )

    async def authorize(self, request: Request) -> Response:
        query = self.authorize_request(request)
        scopes = set(query.get("scope", "").split())
        launch = query.get("launch")
        if (
            query.get("client_id") != CLIENT_ID
            or query.get("response_type") != "code"
            or query.get("code_challenge_method") != "S256"
            or query.get("aud") != self.fhir
            or not {"openid", "fhirUser"} <= scopes
        ):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if launch is not None:
            if "launch" not in scopes or launch not in self.launches:
                return JSONResponse({"error": "invalid_request", "error_description": "launch"}, status_code=400)
            patient: str | None = self.launches[launch]
        else:
            if "launch/patient" not in scopes:
                return JSONResponse({"error": "invalid_scope"}, status_code=400)
            patient = self.standalone_patient
        return self.grant(query, patient=patient)

    async def token(self, request: Request) -> Response:
        form = await self.token_request(request)
        if self.token_status != 200:
            return JSONResponse({"error": "server_error"}, status_code=self.token_status)
        asked = self.exchange(request, form)
        if isinstance(asked, Response):
            return asked
        access = secrets.token_urlsafe(24)
        self.access_tokens.add(access)
        answer: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": asked["scope"],
            "id_token": self.id_token(asked["nonce"]),
        }
        if asked["patient"] is not None:
            answer["patient"] = asked["patient"]
        return JSONResponse(answer)

    async def medication_requests(self, request: Request) -> Response:
        self.fhir_requests.append({"authorization": request.headers.get("authorization", ""), **request.query_params})
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.access_tokens:
            return JSONResponse({"resourceType": "OperationOutcome", "issue": []}, status_code=401)
        patient = request.query_params.get("patient")
        found = [m for m in self.medications if m.get("subject", {}).get("reference") == f"Patient/{patient}"]
        bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": m} for m in found]}
        return JSONResponse(bundle, media_type="application/fhir+json")


class RunningLauncher(LoopbackStandIn):
    """The stand-in on a loopback port, in a background thread."""

    def __init__(self) -> None:
        super().__init__()
        self.base = self.url
        self.ehr = SmartLauncher(self.base)
        self.serve(self.ehr.app)

    @property
    def fhir(self) -> str:
        return self.ehr.fhir

    def launch_settings(self, fhir_server: str) -> dict[str, Any]:
        """The settings that let this EHR launch refracture, its FHIR base written as ``fhir_server``."""
        return {"smart_fhir_servers": [fhir_server], "smart_client_id": CLIENT_ID, "smart_client_secret": CLIENT_SECRET}
