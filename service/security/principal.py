"""Who is calling and what they may do: roles, permissions and SMART scopes, as pure functions of a token's claims.

Roles come from a claim of the token (``roles`` by default) or, for systems, from SMART ``system/`` scopes. Where a
token carries SMART scopes, they also limit which resource types it may read or write (a client with
``system/Observation.write`` may post Observations and nothing else); a role from a claim alone applies to every
type its permissions cover.
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
        }
    ),
    Role.ADMINISTRATOR: frozenset({Permission.ADMINISTER, Permission.READ_MODEL}),
}

# Open to anyone: liveness, readiness and (when configured public) metrics carry no patient data.
ANONYMOUS_ROUTES: Final = frozenset({"/healthz", "/readyz"})

_SCOPE: Final = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|[cruds]+)(\?.*)?$")


@dataclass(frozen=True, slots=True)
class SmartScope:
    """One SMART scope: context (patient/user/system), resource type (or *), and what it allows."""

    context: str
    resource_type: str
    read: bool
    write: bool

    def covers(self, resource_type: str) -> bool:
        """Whether the scope names this type (or every type)."""
        return self.resource_type in ("*", resource_type)


def parse_scopes(scope: str | Iterable[str] | None) -> tuple[SmartScope, ...]:
    """SMART v1 (``.read``, ``.write``, ``.*``) and v2 (``.cruds``) scopes; other scopes (openid, profile) are
    ignored here. v2 search (``s``) counts as read; create or update (``c``, ``u``) as write."""
    words = scope.split() if isinstance(scope, str) else list(scope or [])
    found: list[SmartScope] = []
    for word in words:
        match = _SCOPE.match(word)
        if not match:
            continue
        context, resource_type, access, _ = match.groups()
        if access in ("*", "read", "write"):
            read, write = access in ("*", "read"), access in ("*", "write")
        else:
            read, write = bool(set(access) & {"r", "s"}), bool(set(access) & {"c", "u"})
        found.append(SmartScope(context, resource_type, read, write))
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

    def may_write(self, resource_type: str) -> bool:
        """Post or put this type: the permission, and a SMART scope for the type when the token has scopes."""
        if not self.may(Permission.WRITE_CLINICAL_DATA):
            return False
        return not self.scopes or any(s.write and s.covers(resource_type) for s in self.scopes)

    def may_read(self, resource_type: str, permission: Permission = Permission.READ_CLINICAL_DATA) -> bool:
        """Read this type: the permission, and a SMART scope for the type when the token has scopes."""
        if not self.may(permission):
            return False
        return not self.scopes or any(s.read and s.covers(resource_type) for s in self.scopes)


def principal_from_claims(claims: Mapping[str, Any], roles_claim: str = "roles", source: str = "token") -> Principal:
    """The principal a verified token's claims describe.

    Args:
        claims: the token's verified claims.
        roles_claim: where roles are, as a dotted path for nested claims (``realm_access.roles`` in Keycloak).
        source: how the caller was authenticated (for the audit trail).
    """
    roles = {Role(value) for value in _claim_values(claims, roles_claim) if value in Role._value2member_map_}
    scopes = parse_scopes(claims.get("scope") or claims.get("scp"))
    system = any(s.context == "system" for s in scopes)
    if system:
        roles.add(Role.INTEGRATION_CLIENT)
    client = claims.get("client_id") or claims.get("azp")
    return Principal(
        subject=str(claims.get("sub") or client or "unknown"),
        roles=frozenset(roles),
        scopes=scopes,
        client_id=str(client) if client else None,
        kind="system" if system else "user",
        source=source,
        claims=dict(claims),
    )


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
