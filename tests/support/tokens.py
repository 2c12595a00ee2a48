"""The development tokens every test's settings carry (REFRACTURE_AUTH_DEV_TOKENS), and ready-made headers."""

from __future__ import annotations

from typing import Any, Final

__all__ = ["AUTH", "COORDINATOR", "TOKENS"]

# AUTH is a caller with every role, for tests that are not about who may do what.
TOKENS: Final[dict[str, dict[str, Any]]] = {
    "test-all": {"sub": "tester", "roles": ["integration-client", "care-coordinator", "administrator"]},
    "test-integration": {"sub": "ehr-interface", "client_id": "ehr-interface", "scope": "system/*.read system/*.write"},
    "test-coordinator": {"sub": "coordinator.one", "roles": ["care-coordinator"]},
    "test-admin": {"sub": "admin.one", "roles": ["administrator"]},
    "test-fls-lead": {"sub": "fls.lead", "roles": ["fls-lead"]},
}
AUTH: Final = {"Authorization": "Bearer test-all"}
COORDINATOR: Final = {"Authorization": "Bearer test-coordinator"}
