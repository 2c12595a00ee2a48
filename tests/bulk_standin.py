"""A FHIR Bulk Data ($export) stand-in at the HTTP boundary: the EHR stand-in (its SMART token endpoint, request
log and faults) plus kick-off, status polling and NDJSON files, run on loopback.

Kick-off (`GET /Patient/$export`, `/Group/{id}/$export`) wants `Prefer: respond-async` and answers 202 with a status
URL; the status answers 429 (with Retry-After) `too_fast` times, then 202 with X-Progress and Retry-After `pending`
times, then 200 with the manifest (`requiresAccessToken` as set); files need the token when that is set; DELETE of a
status URL cancels the job (later polls: 404). What an export holds is set by the test (`next_export`), and every
kick-off's parameters are recorded (`kick_offs`), so `_since` can be checked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from service.fhir.jsonio import dumps
from tests.ehr_standin import EhrStandIn, RunningStandIn, Send


@dataclass
class Job:
    """One export at the stand-in."""

    files: dict[str, bytes]  # type → NDJSON
    errors: bytes | None
    transaction_time: str
    polls: int = 0
    cancelled: bool = False


def ndjson(resources: list[dict[str, Any]]) -> bytes:
    """Resources as NDJSON bytes."""
    return b"".join(dumps(r) + b"\n" for r in resources)


@dataclass
class ExportPlan:
    """What the next export holds and how its status behaves."""

    files: dict[str, bytes] = field(default_factory=dict)
    errors: bytes | None = None
    transaction_time: str = "2026-01-01T00:00:00.000Z"
    too_fast: int = 0  # 429s before the first 202
    pending: int = 1  # 202s before the manifest
    retry_after: str = "3"


class BulkStandIn(EhrStandIn):
    """EhrStandIn with the Bulk Data endpoints."""

    def reset(self) -> None:
        super().reset()
        self.next_export = ExportPlan()
        self.jobs: dict[str, Job] = {}
        self.kick_offs: list[dict[str, str]] = []
        self.requires_access_token = True

    def _route(
        self, method: str, path: str, query: str, body: Any, if_match: str | None, generation: int
    ) -> tuple[int, Any, dict[str, str]]:
        parts = [p for p in path.split("/") if p]
        if parts and parts[-1] == "$export" and method == "GET":
            return self._kick_off(parts[:-1], query)
        if parts[:1] == ["bulk-status"] and len(parts) == 2:
            return self._status(method, parts[1])
        if parts[:1] == ["bulk-files"] and len(parts) == 3:
            job = self.jobs.get(parts[1])
            name = parts[2].removesuffix(".ndjson")
            content = None if job is None else (job.errors if name == "errors" else job.files.get(name))
            if content is None:
                return 404, {"resourceType": "OperationOutcome"}, {}
            return 200, content, {"content-type": "application/fhir+ndjson"}
        return super()._route(method, path, query, body, if_match, generation)

    def _kick_off(self, target: list[str], query: str) -> tuple[int, Any, dict[str, str]]:
        headers = self.requests[-1].headers
        if headers.get("prefer") != "respond-async" or headers.get("accept") != "application/fhir+json":
            return 400, {"resourceType": "OperationOutcome", "issue": [{"code": "invalid"}]}, {}
        if target not in (["Patient"], ["Group", "cohort-1"]):
            return 404, {"resourceType": "OperationOutcome", "issue": [{"code": "not-found"}]}, {}
        self.kick_offs.append({"target": "/".join(target), **{k: v[0] for k, v in parse_qs(query).items()}})
        job_id = uuid.uuid4().hex[:12]
        plan = self.next_export
        self.jobs[job_id] = Job(dict(plan.files), plan.errors, plan.transaction_time)
        return 202, None, {"Content-Location": f"{self.base_url}/bulk-status/{job_id}"}

    def _status(self, method: str, job_id: str) -> tuple[int, Any, dict[str, str]]:
        job = self.jobs.get(job_id)
        if job is None or job.cancelled:
            return 404, {"resourceType": "OperationOutcome", "issue": [{"code": "not-found"}]}, {}
        if method == "DELETE":
            job.cancelled = True
            return 202, None, {}
        plan = self.next_export
        job.polls += 1
        if job.polls <= plan.too_fast:
            return 429, {"resourceType": "OperationOutcome"}, {"Retry-After": "5"}
        if job.polls <= plan.too_fast + plan.pending:
            return 202, None, {"X-Progress": f"poll {job.polls}", "Retry-After": plan.retry_after}
        files = f"{self.base_url}/bulk-files/{job_id}"
        manifest = {
            "transactionTime": job.transaction_time,
            "request": f"{self.base_url}/Patient/$export",
            "requiresAccessToken": self.requires_access_token,
            "output": [
                {"type": kind, "url": f"{files}/{kind}.ndjson", "count": content.count(b"\n")}
                for kind, content in job.files.items()
            ],
            "error": [{"type": "OperationOutcome", "url": f"{files}/errors.ndjson"}] if job.errors else [],
        }
        return 200, manifest, {}

    @staticmethod
    async def _answer(send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        if not isinstance(body, bytes):
            await EhrStandIn._answer(send, status, body, headers)
            return
        header_list = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": header_list})
        await send({"type": "http.response.body", "body": body})

    def file_requests(self) -> list[dict[str, str]]:
        """The headers of every file download."""
        return [r.headers for r in self.requests if r.path.startswith("/bulk-files/")]


class RunningBulkStandIn(RunningStandIn):
    """The Bulk Data stand-in served by uvicorn on a loopback port, in a background thread."""

    app: BulkStandIn

    def __init__(self) -> None:
        super().__init__(BulkStandIn())

    def start(self) -> RunningBulkStandIn:
        super().start()
        return self
