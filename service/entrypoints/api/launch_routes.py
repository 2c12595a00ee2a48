"""SMART App Launch 2.x of the worklist page (adapters/smart.py): ``/launch`` and its redirect, ``/launch/callback``.

EHR launch: the EHR opens ``/launch?iss=<its FHIR base>&launch=<handle>``. Standalone launch: a person opens
``/launch`` (or ``/launch?iss=…``) and picks the patient at the EHR. Either way the person signs in at the EHR's
authorisation server and comes back with a code; refracture exchanges it, verifies the ID token, and signs in the
person its ``fhirUser`` names, on the page of the patient in context when there is one.

Who may see what (docs/security.md, "SMART App Launch"): the launched user's roles are the ID token's roles claim
when it has one, else REFRACTURE_SMART_USER_ROLES for a Practitioner or PractitionerRole (nothing for anyone else).
A launch with a patient in context is limited to that patient (like a SMART ``patient/`` token: no worklist, no
other patient, no break the glass) unless the ID token's own roles make the user a care coordinator, who then works
the whole worklist (within their sites) and starts on that patient's page.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from service.entrypoints.api.auth_routes import SignInPagesDep
from service.entrypoints.api.csrf import check_sign_in_cookie, new_sign_in_cookie
from service.entrypoints.api.deps import ClockDep, SessionsDep, SettingsDep, SmartDep
from service.entrypoints.api.middleware import AuditNote, note_audit
from service.security.principal import Role, _has_claim, principal_from_claims
from service.security.tokens import AuthError

__all__ = ["launch_claims", "router"]

router = APIRouter(prefix="/launch", include_in_schema=False)

# The kinds of fhirUser that are staff: they get REFRACTURE_SMART_USER_ROLES when the ID token names no roles.
_STAFF: Final = re.compile(r"(?:^|/)(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")
# The patient context binds the session like a SMART patient/ token: reads of that patient only.
_PATIENT_BOUND_SCOPE: Final = "launch/patient patient/*.rs"


def _redirect_uri(request: Request, configured: str | None) -> str:
    return configured or str(request.url_for("smart_callback"))


def _set_path(claims: dict[str, Any], path: str, value: Any) -> None:
    node = claims
    *parents, last = path.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[last] = value


def launch_claims(
    id_claims: dict[str, Any],
    fhir_user: str,
    patient: str | None,
    iss: str,
    exp: float,
    roles_claim: str,
    sites_claim: str,
    default_roles: list[str],
) -> dict[str, Any]:
    """The session's claims for a completed launch (pure: the decision of who may see what is here)."""
    own_roles = _has_claim(id_claims, roles_claim)
    if own_roles:
        roles = sorted(r.value for r in principal_from_claims(id_claims, roles_claim).roles)
    else:
        roles = list(default_roles) if _STAFF.search(fhir_user) else []
    name = id_claims.get("name")
    claims: dict[str, Any] = {
        # The person is their fhirUser: it is who the audit trail and the alerts' history record.
        "sub": fhir_user,
        "fhirUser": fhir_user,
        "name": name if isinstance(name, str) and name else fhir_user,
        "smart_iss": iss,
        "exp": int(exp),
    }
    _set_path(claims, roles_claim, roles)
    sites = principal_from_claims(id_claims, sites_claim=sites_claim).sites
    if sites is not None:
        claims[sites_claim] = sorted(sites)
    if patient is not None:
        claims["patient"] = patient
        if not (own_roles and Role.CARE_COORDINATOR.value in roles):
            claims["scope"] = _PATIENT_BOUND_SCOPE
    return claims


@router.get("", name="smart_launch")
async def launch(
    request: Request,
    smart: SmartDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    pages: SignInPagesDep,
    iss: Annotated[str | None, Query(max_length=2000)] = None,
    launch: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    """EHR launch (``iss`` and ``launch``) or standalone launch (``iss``, or nothing with one server configured)."""
    note_audit(request.state, AuditNote("sign-in", detail="smart-launch"))
    if smart is None:
        return pages.page(request, 404, "SMART launch is not configured (REFRACTURE_SMART_FHIR_SERVERS).", "/")
    if launch is not None and iss is None:
        return pages.page(request, 400, "An EHR launch names its FHIR server (iss); start again.", "/worklist")
    base = smart.allowed(iss) if iss is not None else smart.only_server
    if base is None:
        # Only allow-listed EHRs: anything else would send people (and our client) wherever a link says.
        return pages.page(request, 400, "This EHR is not allowed to launch refracture.", "/worklist")
    pending = await run_in_threadpool(sessions.begin_sign_in, "/worklist", 600, base)
    try:
        url = await run_in_threadpool(
            smart.authorization_url,
            base,
            pending,
            _redirect_uri(request, settings.smart_redirect_url),
            launch,
        )
    except AuthError as exc:
        return pages.page(request, 503, str(exc), "/worklist")
    response = RedirectResponse(url, status_code=303)
    # The state is bound to this browser, as for the provider's sign-in (csrf.py).
    new_sign_in_cookie(response, pages.secure(request), pending.state)
    return response


@router.get("/callback", name="smart_callback")
async def callback(
    request: Request,
    smart: SmartDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    clock: ClockDep,
    pages: SignInPagesDep,
    code: Annotated[str | None, Query(max_length=4000)] = None,
    state: Annotated[str | None, Query(max_length=200)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The EHR sends the person back with a code (or an error): exchange, verify, sign in, open the patient."""
    note = AuditNote("sign-in", detail="smart-launch")
    note_audit(request.state, note)
    if smart is None:
        return pages.page(request, 404, "SMART launch is not configured.", "/worklist")
    if not check_sign_in_cookie(request, pages.secure(request), state or ""):
        return pages.page(request, 400, "This launch was not started in this browser; start again.", "/worklist")
    pending = await run_in_threadpool(sessions.finish_sign_in, state or "")
    if pending is None or pending.smart_iss is None:
        return pages.page(request, 400, "This launch has expired or was already used; start again.", "/worklist")
    iss = smart.allowed(pending.smart_iss)
    if iss is None:
        return pages.page(request, 400, "This EHR is no longer allowed to launch refracture.", "/worklist")
    if error or not code:
        return pages.page(request, 401, "The EHR did not sign you in.", "/worklist")
    redirect = _redirect_uri(request, settings.smart_redirect_url)
    try:
        result = await run_in_threadpool(smart.exchange, iss, code, pending, redirect)
    except AuthError as exc:
        return pages.page(request, 503 if exc.error == "server_error" else 401, f"Launch failed: {exc}", "/worklist")
    now = clock().timestamp()
    # The session lasts no longer than the EHR's grant (expires_in), else than the ID token.
    exp = now + result.expires_in if result.expires_in else float(result.claims.get("exp") or now)
    claims = launch_claims(
        result.claims,
        result.fhir_user,
        result.patient,
        iss,
        exp,
        settings.auth_roles_claim,
        settings.auth_sites_claim,
        settings.smart_user_roles,
    )
    target = "/worklist"
    if result.patient is not None:
        target = f"/worklist/patients/{quote(result.patient, safe='')}"
        note.resource_type, note.resource_id, note.patients = "Patient", result.patient, [result.patient]
    return await pages.start_session(request, claims, target)
