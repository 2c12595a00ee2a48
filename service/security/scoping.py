"""Which patients a caller may see: SMART patient context, sites, break-the-glass grants. Pure: no I/O.

- A token with ``patient/`` scopes sees its launch patient (the ``patient`` claim) and nothing population-wide; with
  no patient claim it sees nobody.
- A person whose token carries the sites claim (REFRACTURE_AUTH_SITES_CLAIM, default ``sites``) sees the patients
  whose Patient.managingOrganization is one of those sites' organisations (REFRACTURE_SITES maps a site to its
  Organization references; a site without a mapping is ``Organization/{site}``), plus the patients they broke the
  glass for. With REFRACTURE_AUTH_SITES_REQUIRED, a person without the claim sees no site at all.
- Everyone else (a system client without a sites claim, a person when sites are not required) is not limited.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from service.security.principal import Principal

__all__ = ["PatientScope", "scope_of"]


@dataclass(frozen=True, slots=True)
class PatientScope:
    """The patients a caller may see."""

    everyone: bool = True
    patients: frozenset[str] = frozenset()  # these, always (launch patient, break-the-glass grants)
    organizations: frozenset[str] = frozenset()  # and the patients managed by these Organizations
    population: bool = True  # population-wide lists (the worklist, its counts and CSV) are allowed, filtered

    def admits(self, patient_id: str | None, organization: str | None) -> bool:
        """Whether a patient (with their managingOrganization reference) is in scope."""
        if self.everyone:
            return True
        if patient_id is None:
            return False
        return patient_id in self.patients or (organization is not None and organization in self.organizations)

    @property
    def why_not(self) -> str:
        """What to tell a caller refused a population-wide list."""
        return "this token is bound to one patient (SMART patient context); lists of patients are not available to it"


EVERYONE = PatientScope()


def scope_of(
    principal: Principal,
    site_organizations: Mapping[str, Iterable[str]],
    sites_required: bool = False,
    glass: Iterable[str] = (),
) -> PatientScope:
    """The scope of a caller.

    Args:
        principal: who calls.
        site_organizations: each site's Organization references (REFRACTURE_SITES).
        sites_required: a person without a sites claim sees no site (REFRACTURE_AUTH_SITES_REQUIRED).
        glass: the patients the caller broke the glass for (live grants only).
    """
    if principal.patient_bound:
        launch = frozenset({principal.patient}) if principal.patient else frozenset()
        return PatientScope(everyone=False, patients=launch, population=False)
    sites = principal.sites
    if sites is None:
        if principal.kind == "system" or not sites_required:
            return EVERYONE
        sites = frozenset()
    organizations = frozenset(
        reference for site in sites for reference in site_organizations.get(site, (f"Organization/{site}",))
    )
    return PatientScope(everyone=False, patients=frozenset(glass), organizations=organizations, population=True)
