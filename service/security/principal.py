"""Who is calling and what they may do: roles, permissions and SMART scopes, as pure functions of a token's claims.

Roles come from a claim of the token (``roles`` by default) or, for systems, from SMART ``system/`` scopes. Where a
token carries SMART scopes, they also limit which resource types it may read or write (a client with
``system/Observation.write`` may post Observations and nothing else); a role from a claim alone applies to every
type its permissions cover.

SMART v1 scopes (``.read``, ``.write``, ``.*``) and v2 scopes (``.cruds``) are both understood, and checked per
interaction: v2 ``r`` reads, ``s`` searches, ``c`` creates, ``u`` updates; v1 ``.read`` is ``rs`` and ``.write``
``cud``. A v2 scope with a constraint (``patient/Observation.rs?category=laboratory``) grants nothing here: refracture
does not evaluate constraints, so it refuses rather than widen them.

Which patients a caller may see: a ``patient/`` scope binds the token to its ``patient`` launch context (that patient
only, nothing population-wide; without a patient claim, nothing at all); a ``sites`` claim (REFRACTURE_AUTH_SITES_CLAIM)
limits a person to the patients of those sites (service/security/scoping.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "ANONYMOUS_ROUTES",
    "ROLE_PERMISSIONS",
    "Permission",
    "Principal",
    "Role",
    "SmartScope",
    "parse_scopes",
    "principal_from_claims",
]


class Role(StrEnum):
    """What a person or system is to refracture."""

    INTEGRATION_CLIENT = "integration-client"  # the EHR's interface engine: posts data, reads results
    CARE_COORDINATOR = "care-coordinator"  # works the worklist
    ADMINISTRATOR = "administrator"  # runs refracture: audit, terminology, write-back
    METRICS_READER = "metrics-reader"  # Prometheus: /metrics and nothing else
    FLS_LEAD = "fls-lead"  # the fracture-liaison service's lead: quality measures (counts, no patient data)


class Permission(StrEnum):
    """What a route needs."""

    AUTHENTICATED = "authenticated"  # any signed-in caller (no patient data: CodeSystems)
    WRITE_CLINICAL_DATA = "write-clinical-data"
    READ_CLINICAL_DATA = "read-clinical-data"
    READ_RESULTS = "read-results"  # RiskAssessment, CarePlan
    READ_WORKLIST = "read-worklist"
    ACT_ON_ALERTS = "act-on-alerts"
    ADMINISTER = "administer"
    READ_MODEL = "read-model"  # the risk model's version, local calibrations and their evaluation (no patient data)
    # CDS Hooks calls with a development token (an EHR's own signed JWT is checked by security/cds_trust.py instead)
    CALL_CDS_SERVICES = "call-cds-services"
    READ_METRICS = "read-metrics"  # /metrics (counts, no patient data)
    BREAK_GLASS = "break-glass"  # see one patient outside one's sites, for a stated reason, for a while
    # The FLS quality measures: Measure, MeasureReport, $evaluate-measure (counts by period and site; docs/measures.md)
    READ_MEASURES = "read-measures"


ROLE_PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = {
    Role.INTEGRATION_CLIENT: frozenset(
        {
            Permission.WRITE_CLINICAL_DATA,
            Permission.READ_CLINICAL_DATA,
            Permission.READ_RESULTS,
            Permission.CALL_CDS_SERVICES,
        }
    ),
    # Coordinators read the records behind an alert (its evidence) but never write clinical data.
    Role.CARE_COORDINATOR: frozenset(
        {
            Permission.READ_WORKLIST,
            Permission.ACT_ON_ALERTS,
            Permission.READ_CLINICAL_DATA,
            Permission.READ_RESULTS,
            Permission.READ_MODEL,
            Permission.BREAK_GLASS,
        }
    ),
    Role.ADMINISTRATOR: frozenset(
        {Permission.ADMINISTER, Permission.READ_MODEL, Permission.READ_METRICS, Permission.READ_MEASURES}
    ),
    Role.METRICS_READER: frozenset({Permission.READ_METRICS}),
    Role.FLS_LEAD: frozenset({Permission.READ_MEASURES}),
}

# The scope a machine client asks for to read /metrics (it maps to the metrics-reader role).
METRICS_SCOPE: Final = "system/metrics.read"

# Open to anyone: liveness, readiness and (when configured public) metrics carry no patient data.
ANONYMOUS_ROUTES: Final = frozenset({"/healthz", "/readyz"})

_SCOPE: Final = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{0,63})\.(\*|read|write|c?r?u?d?s?)(\?.{0,500})?$")


_V1: Final = {"*": frozenset("cruds"), "read": frozenset("rs"), "write": frozenset("cud")}


@dataclass(frozen=True, slots=True)
class SmartScope:
    """One SMART scope: context (patient/user/system), resource type (or *), and the interactions it allows."""

    context: str
    resource_type: str
    read: bool
    write: bool
    interactions: frozenset[str] = frozenset()  # of c r u d s
    constraint: str | None = None  # a v2 query constraint (?category=…): not evaluated, so the scope grants nothing

    def covers(self, resource_type: str) -> bool:
        """Whether the scope names this type (or every type)."""
        return self.resource_type in ("*", resource_type)

    def allows(self, resource_type: str, interaction: str) -> bool:
        """Whether the scope grants this interaction (c r u d s) on this type."""
        return self.constraint is None and self.covers(resource_type) and interaction in self.interactions


def parse_scopes(scope: str | Iterable[str] | None) -> tuple[SmartScope, ...]:
    """SMART v1 (``.read``, ``.write``, ``.*``) and v2 (``.cruds``) scopes; other scopes (openid, profile) are
    ignored here."""
    words = scope.split() if isinstance(scope, str) else list(scope or [])
    found: list[SmartScope] = []
    for word in words:
        match = _SCOPE.match(word)
        if not match:
            continue
        context, resource_type, access, constraint = match.groups()
        interactions = _V1.get(access) or frozenset(access)
        constraint = constraint[1:] if constraint else None
        granted = interactions if constraint is None else frozenset()
        found.append(
            SmartScope(
                context,
                resource_type,
                bool(granted & {"r", "s"}),
                bool(granted & {"c", "u"}),
                interactions,
                constraint,
            )
        )
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller, authenticated."""

    subject: str  # the token's sub: a person or a client
    roles: frozenset[Role]
    scopes: tuple[SmartScope, ...] = ()
    client_id: str | None = None
    kind: str = "user"  # user | system
    source: str = "token"  # token | dev-token | session
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    sites: frozenset[str] | None = None  # the sites claim; None: the token names no sites
    patient: str | None = None  # the SMART launch context's patient

    @property
    def patient_bound(self) -> bool:
        """A token with ``patient/`` scopes: it may read its launch patient only (none without a patient claim)."""
        return any(s.context == "patient" for s in self.scopes)

    @property
    def constrained_scopes(self) -> tuple[str, ...]:
        """The v2 scope constraints the token carried (refused, not honoured)."""
        return tuple(f"{s.context}/{s.resource_type}?{s.constraint}" for s in self.scopes if s.constraint)

    @property
    def permissions(self) -> frozenset[Permission]:
        """Everything the roles allow."""
        granted = {Permission.AUTHENTICATED}
        for role in self.roles:
            granted |= ROLE_PERMISSIONS[role]
        return frozenset(granted)

    def may(self, permission: Permission) -> bool:
        """Whether a role allows it."""
        return permission in self.permissions

    def may_write(self, resource_type: str, interaction: str = "u") -> bool:
        """Create (``c``) or update (``u``) this type: the permission, and a SMART scope granting the interaction on
        the type when the token has scopes."""
        if not self.may(Permission.WRITE_CLINICAL_DATA):
            return False
        return not self.scopes or any(s.allows(resource_type, interaction) for s in self.scopes)

    def may_read(
        self, resource_type: str, permission: Permission = Permission.READ_CLINICAL_DATA, interaction: str = "r"
    ) -> bool:
        """Read (``r``) or search (``s``) this type: the permission, and a SMART scope granting the interaction on
        the type when the token has scopes."""
        if not self.may(permission):
            return False
        return not self.scopes or any(s.allows(resource_type, interaction) for s in self.scopes)


def principal_from_claims(
    claims: Mapping[str, Any], roles_claim: str = "roles", source: str = "token", sites_claim: str = "sites"
) -> Principal:
    """The principal a verified token's claims describe.

    Args:
        claims: the token's verified claims.
        roles_claim: where roles are, as a dotted path for nested claims (``realm_access.roles`` in Keycloak).
        source: how the caller was authenticated (for the audit trail).
        sites_claim: where the sites a person works for are (a list, or a space-separated string).
    """
    roles = {Role(value) for value in _claim_values(claims, roles_claim) if value in Role._value2member_map_}
    raw_scope = claims.get("scope") or claims.get("scp")
    scopes = parse_scopes(raw_scope)
    words = raw_scope.split() if isinstance(raw_scope, str) else list(raw_scope or [])
    if METRICS_SCOPE in words:
        roles.add(Role.METRICS_READER)
    # Only resource scopes make an integration client (system/metrics.read alone reads /metrics and nothing else).
    system = any(s.context == "system" for s in scopes)
    if system:
        roles.add(Role.INTEGRATION_CLIENT)
    client = claims.get("client_id") or claims.get("azp")
    sites = frozenset(_claim_values(claims, sites_claim)) if _has_claim(claims, sites_claim) else None
    patient = claims.get("patient")
    return Principal(
        subject=str(claims.get("sub") or client or "unknown"),
        roles=frozenset(roles),
        scopes=scopes,
        client_id=str(client) if client else None,
        kind="system" if system or METRICS_SCOPE in words else "user",
        source=source,
        claims=dict(claims),
        sites=sites,
        patient=patient if isinstance(patient, str) and patient else None,
    )


def _has_claim(claims: Mapping[str, Any], path: str) -> bool:
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _claim_values(claims: Mapping[str, Any], path: str) -> list[str]:
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return []
        node = node.get(part)
    if isinstance(node, str):
        return node.split()
    if isinstance(node, list):
        return [v for v in node if isinstance(v, str)]
    return []
