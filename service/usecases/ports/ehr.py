"""The EHR's FHIR API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class EhrAnswer:
    """A successful answer from the EHR."""

    status: int
    headers: dict[str, str]
    body: Any
    # The body's bytes, for readers that must keep decimals exact (resources ingested from the EHR: "2.50" is not 2.5).
    raw: bytes | None = None


class EhrGateway(Protocol):
    """The EHR's FHIR API."""

    @property
    def base_url(self) -> str:
        """The EHR's FHIR base."""

    def metadata(self) -> Any:
        """The CapabilityStatement."""

    def close(self) -> None:
        """Release the connections."""

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> EhrAnswer:
        """One request; failures raise EhrTemporaryError, EhrRejected or EhrConflict (service.platform.errors)."""
