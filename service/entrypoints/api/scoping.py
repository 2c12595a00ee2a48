"""Patient scoping on every read path: the caller's PatientScope (security/scoping.py), once per request.

Routes that serve one patient call ``check_patient``; routes that serve lists call ``population_scope`` and filter
by it (a token bound to one patient gets 403 there). Refusals are 403 with an OperationOutcome saying why.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from service.composition.bootstrap import Container
from service.entrypoints.api.auth import CallerDep, forbidden
from service.entrypoints.api.deps import ContainerDep
from service.security.principal import Principal
from service.security.scoping import PatientScope, scope_of

__all__ = ["PopulationScope", "check_patient", "patient_scope", "population_scope"]


async def patient_scope(request: Request, container: Container, principal: Principal) -> PatientScope:
    """The patients this caller may see (break-the-glass grants read from the database)."""
    known: PatientScope | None = getattr(request.state, "patient_scope", None)
    if known is not None:
        return known
    settings = container.settings
    glass: list[str] = []
    if not principal.patient_bound and (principal.sites is not None or settings.auth_sites_required):
        glass = await run_in_threadpool(container.access.live_grants, principal.subject, container.clock())
    scope = scope_of(principal, settings.sites, settings.auth_sites_required, glass)
    request.state.patient_scope = scope
    return scope


async def check_patient(request: Request, container: Container, principal: Principal, patient_id: str) -> None:
    """Refuse (403) a patient outside the caller's scope.

    Raises:
        RefractureError: 403.
    """
    scope = await patient_scope(request, container, principal)
    if scope.everyone or patient_id in scope.patients:
        return
    if scope.organizations:
        organization = await run_in_threadpool(container.access.organization_of, patient_id)
        if scope.admits(patient_id, organization):
            return
    if principal.patient_bound:
        raise forbidden("this token is bound to another patient (SMART patient context)")
    raise forbidden("this patient is outside your sites; break the glass (with a reason) if you must see them")


async def population_scope(request: Request, container: Container, principal: Principal) -> PatientScope:
    """The scope to filter a list by; 403 for a token bound to one patient.

    Raises:
        RefractureError: 403.
    """
    scope = await patient_scope(request, container, principal)
    if not scope.population:
        raise forbidden(scope.why_not)
    return scope


async def _population_dependency(request: Request, container: ContainerDep, principal: CallerDep) -> PatientScope:
    return await population_scope(request, container, principal)


# A list route's scope as a dependency: 401 without a caller, 403 for a token bound to one patient.
PopulationScope = Annotated[PatientScope, Depends(_population_dependency)]
