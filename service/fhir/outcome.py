"""OperationOutcome and transaction/batch response Bundles, as plain dicts (built fast, checked in tests)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Final

from service.platform.errors import HTTP_STATUS, Issue, RefractureError

__all__ = [
    "entry_response",
    "error_entry",
    "http_date",
    "operation_outcome",
    "response_bundle",
    "skipped_entry",
    "status_line",
]


# A 1.5 MB body of 100,000 wrong values would otherwise be answered with 12 MB of issues; the first hundred tell
# the sender what to fix.
MAX_ISSUES: Final = 100


def operation_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    """An OperationOutcome listing the issues (an 'informational' one when there are none; at most MAX_ISSUES and
    a note of how many more)."""
    if not issues:
        issues = [Issue("informational", "All OK", severity="information")]
    elif len(issues) > MAX_ISSUES:
        more = len(issues) - MAX_ISSUES
        issues = [
            *issues[:MAX_ISSUES],
            Issue("too-costly", f"{more} more issues are not listed", severity="information"),
        ]
    return {"resourceType": "OperationOutcome", "issue": [_issue(issue) for issue in issues]}


def _issue(issue: Issue) -> dict[str, Any]:
    # The same plain words in details.text and diagnostics: some clients show one, some the other (issue 13: a
    # newcomer's tool showed ~100 issues and no text). An issue never goes out without words.
    text = issue.text.strip() or f"{issue.severity}: {issue.code}" + (
        f" at {issue.expression}" if issue.expression else ""
    )
    return {
        "severity": issue.severity,
        "code": issue.code,
        "details": {"text": text},
        "diagnostics": text,
        **({"expression": [issue.expression]} if issue.expression else {}),
    }


def status_line(code: int) -> str:
    """ "201 Created" and the like, as Bundle.entry.response.status wants."""
    return f"{code} {HTTPStatus(code).phrase}"


def http_date(moment: datetime) -> str:
    """An HTTP-date (RFC 9110) for Last-Modified."""
    return moment.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def entry_response(
    status: int,
    resource_type: str,
    resource_id: str,
    version_id: int,
    last_updated: datetime,
    resource: Any | None = None,
) -> dict[str, Any]:
    """A response entry for a successful write or read."""
    entry: dict[str, Any] = {
        "response": {
            "status": status_line(status),
            "location": f"{resource_type}/{resource_id}/_history/{version_id}",
            "etag": f'W/"{version_id}"',
            "lastModified": last_updated.isoformat(timespec="milliseconds"),
        }
    }
    if resource is not None:
        entry = {"resource": resource, **entry}
    return entry


def error_entry(error: RefractureError) -> dict[str, Any]:
    """A response entry for a failed batch entry, with its OperationOutcome."""
    return {
        "response": {
            "status": status_line(HTTP_STATUS[error.problem]),
            "outcome": operation_outcome(error.issues),
        }
    }


def skipped_entry(issues: Sequence[Issue]) -> dict[str, Any]:
    """A response entry for an entry acknowledged and not stored (a type refracture does not use): 200 OK, no
    location (nothing was created), and an outcome whose information issues say so."""
    return {"response": {"status": status_line(200), "outcome": operation_outcome(issues)}}


def response_bundle(bundle_type: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction-response or batch-response Bundle."""
    return {"resourceType": "Bundle", "type": f"{bundle_type}-response", "entry": entries}


def searchset(base_url: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A searchset Bundle of these resources, each with its absolute fullUrl."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }
