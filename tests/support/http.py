"""HTTP helpers the tests and benchmarks share."""

from __future__ import annotations

from typing import Final

__all__ = ["FHIR_JSON"]

# The media type of every FHIR body sent in the tests (R4 http.html: application/fhir+json).
FHIR_JSON: Final = {"Content-Type": "application/fhir+json"}
