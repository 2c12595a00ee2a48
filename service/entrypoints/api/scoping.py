"""Patient scoping on every read path: the caller's PatientScope (security/scoping.py), once per request.

Routes that serve one patient call ``Scoping.check_patient``; routes that serve lists call
``Scoping.population_scope`` and filter by it (a token bound to one patient gets 403 there). Refusals are 403 with
an OperationOutcome saying why.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from service.entrypoints.api.auth import CallerDep, forbidden
from service.entrypoints.api.deps import AccessDep, ClockDep, SettingsDep
from service.platform.config import Settings
from service.security.principal import Principal
from service.security.scoping import PatientScope, scope_of
from service.usecases.ports.clock import Clock
from service.usecases.ports.reads import PatientAccess

__all__ = ["PopulationScope", "Scoping", "ScopingDep"]


class Scoping:
    """One request's patient scoping: the caller's scope worked out once, then every check against it."""

    def __init__(self, request: Request, access: PatientAccess, settings: Settings, clock: Clock) -> None:
        self._request = request
        self._access = access
        self._settings = settings
        self._clock = clock

    async def patient_scope(self, principal: Principal) -> PatientScope:
        """The patients this caller may see (break-the-glass grants read from the database)."""
        known: PatientScope | None = getattr(self._request.state, "patient_scope", None)
        if known is not None:
            return known
        settings = self._settings
        glass: list[str] = []
        if not principal.patient_bound and (principal.sites is not None or settings.auth_sites_required):
            glass = await run_in_threadpool(self._access.live_grants, principal.subject, self._clock())
        scope = scope_of(principal, settings.sites, settings.auth_sites_required, glass)
        self._request.state.patient_scope = scope
        return scope

    async def check_patient(self, principal: Principal, patient_id: str) -> None:
        """Refuse (403) a patient outside the caller's scope.

        Raises:
            RefractureError: 403.
        """
        scope = await self.patient_scope(principal)
        if scope.everyone or patient_id in scope.patients:
            return
        if scope.organizations:
            organization = await run_in_threadpool(self._access.organization_of, patient_id)
            if scope.admits(patient_id, organization):
                return
        if principal.patient_bound:
            raise forbidden("this token is bound to another patient (SMART patient context)")
        raise forbidden("this patient is outside your sites; break the glass (with a reason) if you must see them")

    async def population_scope(self, principal: Principal) -> PatientScope:
        """The scope to filter a list by; 403 for a token bound to one patient.

        Raises:
            RefractureError: 403.
        """
        scope = await self.patient_scope(principal)
        if not scope.population:
            raise forbidden(scope.why_not)
        return scope


async def _scoping(request: Request, access: AccessDep, settings: SettingsDep, clock: ClockDep) -> Scoping:
    return Scoping(request, access, settings, clock)


ScopingDep = Annotated[Scoping, Depends(_scoping)]


async def _population_dependency(scoping: ScopingDep, principal: CallerDep) -> PatientScope:
    return await scoping.population_scope(principal)


# A list route's scope as a dependency: 401 without a caller, 403 for a token bound to one patient.
PopulationScope = Annotated[PatientScope, Depends(_population_dependency)]
