"""Errors every layer may raise, each with the FHIR issues that explain it; the API maps them to HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class Problem(Enum):
    """What went wrong, in the terms of FHIR R4 http.html; the API picks the status code from it."""

    MALFORMED = "malformed"  # not JSON, or not a JSON object (400)
    INVALID = "invalid"  # not valid FHIR R4 (400)
    UNPROCESSABLE = "unprocessable"  # valid FHIR that refracture cannot take (422)
    NOT_FOUND = "not-found"  # unknown type or id (404)
    NOT_ALLOWED = "not-allowed"  # method not supported on this resource (405)
    CONFLICT = "conflict"  # concurrent change (409)
    PRECONDITION_FAILED = "precondition-failed"  # If-Match did not match (412)
    TOO_LARGE = "too-large"  # body or Bundle over the configured limit (413)
    UNSUPPORTED_MEDIA = "unsupported-media"  # not a FHIR JSON media type (415)
    UNAVAILABLE = "unavailable"  # database or broker down; try again (503)
    UNAUTHENTICATED = "unauthenticated"  # no valid token or session (401)
    FORBIDDEN = "forbidden"  # authenticated, but the role or scopes do not allow it (403)
    TOO_MANY_REQUESTS = "too-many-requests"  # over the client's rate limit (429)


HTTP_STATUS: dict[Problem, int] = {
    Problem.MALFORMED: 400,
    Problem.INVALID: 400,
    Problem.UNPROCESSABLE: 422,
    Problem.NOT_FOUND: 404,
    Problem.NOT_ALLOWED: 405,
    Problem.CONFLICT: 409,
    Problem.PRECONDITION_FAILED: 412,
    Problem.TOO_LARGE: 413,
    Problem.UNSUPPORTED_MEDIA: 415,
    Problem.UNAVAILABLE: 503,
    Problem.UNAUTHENTICATED: 401,
    Problem.FORBIDDEN: 403,
    Problem.TOO_MANY_REQUESTS: 429,
}


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome issue: severity, FHIR issue-type code, plain text, FHIRPath of the element."""

    code: str
    text: str
    expression: str | None = None
    severity: str = "error"


class RefractureError(Exception):
    """A request refracture refuses, with the issues that tell the sender why."""

    def __init__(self, problem: Problem, issues: list[Issue], headers: dict[str, str] | None = None) -> None:
        super().__init__("; ".join(issue.text for issue in issues))
        self.problem = problem
        self.issues = issues
        self.headers = headers or {}  # e.g. WWW-Authenticate, Retry-After


def refuse(problem: Problem, code: str, text: str, expression: str | None = None) -> RefractureError:
    """A RefractureError with one issue."""
    return RefractureError(problem, [Issue(code, text, expression)])


class ConcurrentWrite(Exception):
    """Another transaction wrote the same rows first; the whole unit of work can simply be run again."""


# --- the EHR's answers to write-backs: retry later, give up with the answer kept, or re-read first ------------


class EhrError(Exception):
    """Any failure talking to the EHR."""

    def __init__(self, message: str, status: int | None = None, outcome: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome  # the EHR's OperationOutcome (or body), kept for people to read


class EhrTemporaryError(EhrError):
    """Transport errors, timeouts, 408, 429 and 5xx: retrying can succeed (after ``retry_after`` if given)."""

    def __init__(
        self, message: str, status: int | None = None, outcome: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status, outcome)
        self.retry_after = retry_after


class EhrRejected(EhrError):
    """A 4xx that retrying cannot fix (400, 403, 404, 422 …): the job goes to the dead letter with the answer."""


class EhrConflict(EhrError):
    """409 or 412: the resource changed at the EHR since we last saw it; re-read and re-apply."""
