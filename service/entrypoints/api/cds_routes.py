"""CDS Hooks 2.0 (docs/cds-hooks.md): discovery, the three services, and the feedback endpoint.

Discovery is public, as the specification expects. Every POST carries the EHR's JWT (security/cds_trust.py); a
development token with the integration-client role also calls outside production. Errors are OperationOutcomes
(401 with ``WWW-Authenticate: Bearer``), like the rest of the API.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from service.adapters.rate_limit import RateLimiter
from service.entrypoints.api.auth import bearer, forbidden, unauthenticated
from service.entrypoints.api.deps import CdsFhirDep, CdsHooksDep, CdsVerifierDep, ClockDep, RateLimiterDep, SettingsDep
from service.entrypoints.api.middleware import AuditNote, note_audit
from service.entrypoints.api.scoping import ScopingDep
from service.fhir.cds_hooks import ORDER_HOOKS, SERVICES, discovery
from service.fhir.jsonio import dumps, parse
from service.platform.config import Settings
from service.platform.errors import Issue, Problem, RefractureError, refuse
from service.security.principal import Permission, Principal
from service.security.tokens import AuthError, DevTokens
from service.usecases.cds_hooks import HookCall
from service.usecases.ports.cds import CdsFeedback

__all__ = ["router"]

router = APIRouter(prefix="/cds-services", tags=["CDS Hooks"])

_OUTCOMES: Final = frozenset({"accepted", "overridden"})
_HOOK_REQUEST: Final = {
    "hook": "patient-view",
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "context": {"userId": "Practitioner/example", "patientId": "example"},
}
_FEEDBACK: Final = {
    "feedback": [
        {
            "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
            "outcome": "overridden",
            "overrideReason": {
                "reason": {
                    "system": "https://refracture.dev/fhir/CodeSystem/cds-override-reason",
                    "code": "patient-declined",
                },
                "userComment": "",
            },
            "outcomeTimestamp": "2026-05-04T09:00:00Z",
        }
    ]
}


def _request_body(example: dict[str, Any]) -> dict[str, Any]:
    # The body is read after the caller is authenticated (a route parameter would be parsed before): documented here.
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}, "example": example}},
        }
    }


def _json(content: Any, status: int = 200) -> Response:
    return Response(dumps(content), status_code=status, media_type="application/json")


def _base(request: Request, settings: Settings) -> str:
    configured = settings.cds_base_url
    return (configured or str(request.base_url)).rstrip("/")


async def _throttle(limiter: RateLimiter, key: str) -> None:
    wait = await run_in_threadpool(limiter.allow, key)
    if wait is not None:
        raise RefractureError(
            Problem.TOO_MANY_REQUESTS,
            [Issue("throttled", f"more than {limiter.per_minute} requests a minute; slow down")],
            {"Retry-After": str(int(wait))},
        )


async def cds_caller(
    request: Request,
    service_id: str,
    settings: SettingsDep,
    cds_verifier: CdsVerifierDep,
    limiter: RateLimiterDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The EHR calling, from its JWT (or, outside production, a development token).

    Raises:
        RefractureError: 401 without a valid token, 403 for a development token without the integration role,
            503 when the EHR's keys cannot be fetched now.
    """
    if credentials is None:
        raise unauthenticated("send the EHR's signed JWT as a bearer token", "missing")
    token = credentials.credentials
    dev = DevTokens(settings.dev_tokens, settings.auth_roles_claim, settings.auth_sites_claim).verify(token)
    if dev is not None:
        if not dev.may(Permission.CALL_CDS_SERVICES):
            raise forbidden("CDS Hooks calls need the integration-client role")
        principal = dev
    else:
        verifier = cds_verifier
        if not verifier.configured:
            await _throttle(limiter, f"ip:{request.client.host if request.client else '?'}")
            raise unauthenticated("no EHR is configured to call the CDS services (REFRACTURE_CDS_ISSUERS)")
        base = _base(request, settings)
        audiences = [f"{base}/cds-services/{service_id}", f"{base}/cds-services"]
        try:
            claims = await run_in_threadpool(verifier.verify, token, audiences)
        except AuthError as exc:
            if exc.error == "server_error":
                raise RefractureError(
                    Problem.UNAVAILABLE, [Issue("transient", "the EHR's keys cannot be fetched now; try again")]
                ) from None
            await _throttle(limiter, f"ip:{request.client.host if request.client else '?'}")
            raise unauthenticated(str(exc)) from None
        issuer = str(claims["iss"])
        principal = Principal(
            subject=str(claims.get("sub") or issuer),
            roles=frozenset(),
            client_id=issuer,
            kind="system",
            source="cds-jwt",
            claims=claims,
        )
    request.state.principal = principal
    await _throttle(limiter, f"client:{principal.client_id or principal.subject}")
    return principal


CdsCaller = Annotated[Principal, Depends(cds_caller)]


@router.get("", operation_id="cdsDiscovery", summary="CDS Hooks discovery: refracture's services and prefetch")
async def discover() -> dict[str, Any]:
    """The services (patient-view, order-select, order-sign) with their prefetch templates. Public, as the CDS Hooks
    specification expects: it holds no patient data."""
    return discovery()


async def _body(request: Request) -> dict[str, Any]:
    body = parse(await request.body())
    if not isinstance(body, dict):
        raise refuse(Problem.MALFORMED, "structure", "the body must be a JSON object")
    return body


def _fhir_access(
    body: dict[str, Any], allowed: Callable[[str | None], str | None] | None
) -> tuple[str | None, str | None, str]:
    """The call's fhirServer and access token when both may be used, and what the audit says about them."""
    server = body.get("fhirServer")
    authorization = body.get("fhirAuthorization")
    if not isinstance(server, str) or not isinstance(authorization, dict):
        return None, None, ""
    token = authorization.get("access_token")
    token_type = authorization.get("token_type")
    if not isinstance(token, str) or not token or len(token) > 8192 or str(token_type).lower() != "bearer":
        return None, None, "; fhirAuthorization unusable"
    base = allowed(server) if allowed is not None else None
    if base is None:
        # Never send the token to a server the operator did not list (REFRACTURE_CDS_FHIR_SERVERS).
        return None, None, "; fhirServer not allow-listed: not used"
    return base, token, ""


def _hook_call(
    service_id: str, body: dict[str, Any], fhir_server: str | None = None, fhir_token: str | None = None
) -> HookCall:
    service = SERVICES[service_id]
    if body.get("hook") != service.hook:
        raise refuse(Problem.INVALID, "value", f"this service answers the {service.hook} hook", "hook")
    if not isinstance(body.get("hookInstance"), str):
        raise refuse(Problem.INVALID, "required", "hookInstance is required", "hookInstance")
    context: dict[str, Any] = body["context"] if isinstance(body.get("context"), dict) else {}
    patient = context.get("patientId")
    if not isinstance(patient, str) or not patient or len(patient) > 64:
        raise refuse(Problem.INVALID, "required", "context.patientId is required (a FHIR id)", "context.patientId")
    selections = context.get("selections")
    return HookCall(
        service_id,
        patient,
        context.get("draftOrders") if service.hook in ORDER_HOOKS else None,
        tuple(s for s in selections if isinstance(s, str)) if isinstance(selections, list) else None,
        body.get("prefetch"),
        fhir_server,
        fhir_token,
    )


def _known(service_id: str) -> None:
    if service_id not in SERVICES:
        raise refuse(Problem.NOT_FOUND, "not-found", f"no CDS service {service_id!r} (see GET /cds-services)")


@router.post(
    "/{service_id}",
    operation_id="cdsService",
    summary="Call a CDS service (patient-view, order-select, order-sign): cards from refracture's stored state",
    responses={
        200: {"description": "The cards (an empty list when refracture has nothing to say)"},
        401: {"description": "No valid JWT from an allowed EHR"},
        404: {"description": "No such service"},
    },
    openapi_extra=_request_body(_HOOK_REQUEST),
)
async def call_service(
    request: Request,
    service_id: str,
    cds_fhir: CdsFhirDep,
    cds_hooks: CdsHooksDep,
    scoping: ScopingDep,
    settings: SettingsDep,
    principal: CdsCaller,
) -> Response:
    """The hook request as CDS Hooks 2.0 defines it; prefetch is optional (refracture answers from stored state)."""
    _known(service_id)
    body = await _body(request)
    reader = cds_fhir
    fhir_server, fhir_token, fhir_note = _fhir_access(body, reader.allowed if reader is not None else None)
    call = _hook_call(service_id, body, fhir_server, fhir_token)
    note = AuditNote("cds-hook", "Patient", call.patient_id, [call.patient_id], service_id)
    note_audit(request.state, note)
    # A caller limited to some patients (sites, SMART patient context) gets cards for those only.
    await scoping.check_patient(principal, call.patient_id)
    page = f"{_base(request, settings)}/worklist/patients/{quote(call.patient_id, safe='')}"
    cards = await run_in_threadpool(cds_hooks.cards, call, page)
    note.detail = f"{service_id}: {len(cards)} card(s){fhir_note}"
    return _json({"cards": cards})


def _feedback_items(service_id: str, caller: str, body: dict[str, Any], now: datetime) -> list[CdsFeedback]:
    items = body.get("feedback")
    if not isinstance(items, list) or not items or len(items) > 100:
        raise refuse(Problem.INVALID, "required", "feedback must be a list of 1 to 100 items", "feedback")
    out: list[CdsFeedback] = []
    for n, item in enumerate(items):
        where = f"feedback[{n}]"
        if not isinstance(item, dict) or not isinstance(item.get("card"), str) or len(item["card"]) > 64:
            raise refuse(Problem.INVALID, "required", "each item needs its card's uuid", f"{where}.card")
        if item.get("outcome") not in _OUTCOMES:
            raise refuse(Problem.INVALID, "value", "outcome is accepted or overridden", f"{where}.outcome")
        accepted = item.get("acceptedSuggestions") or []
        override: dict[str, Any] = item["overrideReason"] if isinstance(item.get("overrideReason"), dict) else {}
        reason: dict[str, Any] = override["reason"] if isinstance(override.get("reason"), dict) else {}
        comment = override.get("userComment")
        try:
            at = datetime.fromisoformat(str(item["outcomeTimestamp"])) if "outcomeTimestamp" in item else None
        except ValueError:
            raise refuse(
                Problem.INVALID, "value", "outcomeTimestamp is an instant", f"{where}.outcomeTimestamp"
            ) from None
        out.append(
            CdsFeedback(
                service_id=service_id,
                card=item["card"],
                outcome=item["outcome"],
                accepted_suggestions=tuple(
                    str(s["id"]) for s in accepted if isinstance(s, dict) and isinstance(s.get("id"), str)
                )
                if isinstance(accepted, list)
                else (),
                override_system=str(reason["system"])[:400] if isinstance(reason.get("system"), str) else None,
                override_code=str(reason["code"])[:200] if isinstance(reason.get("code"), str) else None,
                override_comment=comment[:4000] if isinstance(comment, str) and comment else None,
                outcome_at=at,
                caller=caller,
                received_at=now,
            )
        )
    return out


@router.post(
    "/{service_id}/feedback",
    operation_id="cdsFeedback",
    summary="What the clinician did with refracture's cards (accepted, or overridden with a reason)",
    responses={401: {"description": "No valid JWT from an allowed EHR"}, 404: {"description": "No such service"}},
    openapi_extra=_request_body(_FEEDBACK),
)
async def feedback(
    request: Request,
    service_id: str,
    clock: ClockDep,
    cds_hooks: CdsHooksDep,
    caller: CdsCaller,
) -> Response:
    """Each item is kept (table cds_feedback) with the card's uuid, the outcome, the accepted suggestions and the
    override reason; the request itself is in the audit trail."""
    _known(service_id)
    items = _feedback_items(service_id, caller.client_id or caller.subject, await _body(request), clock())
    note = AuditNote("cds-feedback", detail=f"{service_id}: {len(items)} item(s)")
    note_audit(request.state, note)
    linked = await run_in_threadpool(cds_hooks.feedback, items)
    # The audit names the patients whose cards the feedback is about (when refracture issued those cards).
    note.patients = sorted({patient for patient, _ in linked if patient is not None})
    return _json({})
