"""FHIR JSON responses and the mapping of refracture's errors to OperationOutcome responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from starlette.responses import Response

from service.fhir.jsonio import dumps
from service.fhir.outcome import operation_outcome
from service.platform.errors import HTTP_STATUS, Issue, Problem, RefractureError

__all__ = ["FHIR_JSON", "fhir_response", "outcome_response"]

FHIR_JSON = "application/fhir+json"


class FhirJSONResponse(Response):
    """A response in application/fhir+json."""

    media_type = FHIR_JSON
    charset = "utf-8"


def fhir_response(content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> FhirJSONResponse:
    """A FHIR JSON response from a dict, or from JSON text already serialised (stored resources)."""
    body = content.encode() if isinstance(content, str) else b"" if content is None else dumps(content)
    return FhirJSONResponse(body, status_code=status_code, headers=dict(headers or {}))


def outcome_response(error: RefractureError) -> FhirJSONResponse:
    """The OperationOutcome response for a refused request."""
    headers = {"Retry-After": "5"} if error.problem is Problem.UNAVAILABLE else {}
    return fhir_response(operation_outcome(error.issues), HTTP_STATUS[error.problem], {**headers, **error.headers})


def simple_outcome(status: int, code: str, text: str) -> FhirJSONResponse:
    """An OperationOutcome response with one issue."""
    return fhir_response(operation_outcome([Issue(code, text)]), status)


_ISSUE_BY_STATUS: Final = {404: "not-found", 405: "not-supported", 413: "too-costly", 415: "not-supported"}


def http_error_outcome(status: int, detail: str) -> FhirJSONResponse:
    """Starlette's HTTP errors (no route, wrong method, ...) as an OperationOutcome."""
    return simple_outcome(status, _ISSUE_BY_STATUS.get(status, "processing"), detail)
