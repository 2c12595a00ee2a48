"""An EhrGateway in memory: records every request, keeps what it is sent, and fails when told to.

It answers as EhrClient does after classifying an HTTP answer (service/adapters/ehr/client.py): 408, 429 and 5xx
and timeouts raise EhrTemporaryError (with Retry-After), 409/412 EhrConflict, other 4xx EhrRejected. Writes behave
like a small FHIR server's: conditional updates on identifiers, updates by id, If-Match against the stored version,
transaction Bundles applied entry by entry with urn:uuid references rewritten. tests/ehr_standin.py is the same at
the HTTP boundary, for the integration tests.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, unquote

from service.platform.errors import EhrConflict, EhrRejected, EhrTemporaryError
from service.usecases.ports.ehr import EhrAnswer, EhrGateway
from tests.ehr_standin import capability

__all__ = ["EhrFault", "EhrRequest", "FakeEhr"]

BASE_URL: Final = "https://ehr.example/fhir"


@dataclass
class EhrFault:
    """The next ``times`` matching requests fail: with ``status`` (and Retry-After), or by timing out."""

    status: int = 500
    times: int = 1
    retry_after: float | None = None
    body: Any = None
    timeout: bool = False
    # The EHR commits the write and the connection drops before its answer arrives: a retry must not duplicate.
    after_commit: bool = False
    method: str | None = None
    resource_type: str | None = None  # only requests naming this type (in the path, or in a transaction's entries)


@dataclass(frozen=True)
class EhrRequest:
    """One request as the EHR got it."""

    method: str
    path: str
    body: Any
    headers: dict[str, str]


@dataclass
class _Stored:
    id: str
    version: int
    resource: dict[str, Any]


@dataclass
class FakeEhr:
    """The EhrGateway port; ``capability`` is its CapabilityStatement (tests/ehr_standin.capability())."""

    capability: dict[str, Any] = field(default_factory=capability)
    faults: list[EhrFault] = field(default_factory=list)
    metadata_fails: bool = False
    requests: list[EhrRequest] = field(default_factory=list)
    stored: dict[str, dict[str, _Stored]] = field(default_factory=dict)  # type -> EHR id -> resource
    closed: bool = False

    @property
    def base_url(self) -> str:
        return BASE_URL

    def metadata(self) -> Any:
        if self.metadata_fails:
            raise EhrTemporaryError("the EHR could not be reached (ConnectError)")
        return copy.deepcopy(self.capability)

    def close(self) -> None:
        self.closed = True

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> EhrAnswer:
        self.requests.append(EhrRequest(method, path, copy.deepcopy(body), dict(headers or {})))
        fault = self._fault_for(method, path, body)
        if fault is not None and not fault.after_commit:
            raise _failure(fault)
        answer = self._answer(method, path, body, headers)
        if fault is not None:
            raise _failure(fault)  # committed, and the answer lost on the way
        return answer

    def _answer(self, method: str, path: str, body: Any, headers: dict[str, str] | None) -> EhrAnswer:
        if method == "GET":
            return self._search(path)
        if method == "POST" and path == "":
            return self._transaction(body)
        if method == "PUT":
            if_match = (headers or {}).get("If-Match")
            stored = self._put(path, body, _etag_version(if_match))
            return EhrAnswer(
                200 if stored.version > 1 else 201, _location(stored, body["resourceType"]), stored.resource
            )
        raise EhrRejected(f"the EHR refused the write (405): {method} {path}", 405)

    # --- what tests look at ---------------------------------------------------------------------------------
    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        """The resources of a type the EHR holds now."""
        return [s.resource for s in self.stored.get(resource_type, {}).values()]

    def writes(self) -> list[EhrRequest]:
        """The requests that were not reads."""
        return [r for r in self.requests if r.method != "GET"]

    def edit(self, resource_type: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Someone at the EHR changes every resource of a type: a new version of each."""
        for stored in self.stored.get(resource_type, {}).values():
            change(stored.resource)
            stored.version += 1
            stored.resource["meta"] = {**stored.resource.get("meta", {}), "versionId": str(stored.version)}

    # --- behaviour ----------------------------------------------------------------------------------------------
    def _fault_for(self, method: str, path: str, body: Any) -> EhrFault | None:
        types = {path.strip("/").split("?")[0].split("/")[0]}
        if isinstance(body, dict) and body.get("resourceType") == "Bundle":
            types |= {e.get("resource", {}).get("resourceType") for e in body.get("entry", [])}
        for fault in self.faults:
            if fault.times <= 0 or (fault.method and fault.method != method):
                continue
            if fault.resource_type and fault.resource_type not in types:
                continue
            fault.times -= 1
            return fault
        return None

    def _find(self, resource_type: str, query: str) -> _Stored | None:
        wanted = parse_qs(query).get("identifier", [""])[0]
        system, _, value = unquote(wanted).partition("|")
        for stored in self.stored.get(resource_type, {}).values():
            if any(
                i.get("system") == system and i.get("value") == value for i in stored.resource.get("identifier", [])
            ):
                return stored
        return None

    def _search(self, path: str) -> EhrAnswer:
        resource_type, _, query = path.strip("/").partition("?")
        found = self._find(resource_type, query)
        entries = [{"resource": copy.deepcopy(found.resource)}] if found else []
        return EhrAnswer(
            200, {}, {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
        )

    def _put(self, path: str, resource: dict[str, Any], if_match: str | None) -> _Stored:
        resource_type, _, query = path.strip("/").partition("?")
        if query:
            found = self._find(resource_type, query)
        else:
            resource_type, _, rid = resource_type.partition("/")
            found = self.stored.get(resource_type, {}).get(rid)
        if if_match is not None and (found is None or str(found.version) != if_match):
            raise _classified(412, {"resourceType": "OperationOutcome"}, None)
        if found is None:
            rid = resource.get("id") or _ehr_id(resource)
            found = _Stored(rid, 0, {})
            self.stored.setdefault(resource_type, {})[rid] = found
        found.version += 1
        found.resource = {**copy.deepcopy(resource), "id": found.id, "meta": {"versionId": str(found.version)}}
        return found

    def _transaction(self, bundle: dict[str, Any]) -> EhrAnswer:
        saved = copy.deepcopy(self.stored)
        try:  # all or nothing
            placed = [
                (e, self._put("/" + e["request"]["url"], e["resource"], _etag_version(e["request"].get("ifMatch"))))
                for e in bundle.get("entry", [])
            ]
        except Exception:
            self.stored = saved
            raise
        # urn:uuid references become the EHR's own (the fullUrls name the entries).
        names = {e["fullUrl"]: f"{e['resource']['resourceType']}/{s.id}" for e, s in placed if "fullUrl" in e}
        for _, stored in placed:
            text = json.dumps(stored.resource)
            for urn, ref in names.items():
                text = text.replace(urn, ref)
            stored.resource = json.loads(text)
        results = [
            {
                "response": {
                    "status": "201 Created" if s.version == 1 else "200 OK",
                    "location": f"{e['resource']['resourceType']}/{s.id}/_history/{s.version}",
                    "etag": f'W/"{s.version}"',
                }
            }
            for e, s in placed
        ]
        return EhrAnswer(200, {}, {"resourceType": "Bundle", "type": "transaction-response", "entry": results})


def _ehr_id(resource: dict[str, Any]) -> str:
    """The EHR's own id for a new resource: from its identifier, so it does not depend on the order of deliveries."""
    identifier: dict[str, Any] = next(iter(resource.get("identifier", [])), {})
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{identifier.get('system')}|{identifier.get('value')}"))


def _location(stored: _Stored, resource_type: str) -> dict[str, str]:
    return {
        "Location": f"{BASE_URL}/{resource_type}/{stored.id}/_history/{stored.version}",
        "ETag": f'W/"{stored.version}"',
    }


def _etag_version(value: str | None) -> str | None:
    return value.strip().removeprefix("W/").strip('"') if value else None


def _failure(fault: EhrFault) -> Exception:
    """What EhrClient raises for the fault."""
    if fault.timeout:
        return EhrTemporaryError("the EHR did not answer in time (ReadTimeout)")
    if fault.after_commit:
        return EhrTemporaryError("the EHR could not be reached (RemoteProtocolError)")
    return _classified(fault.status, fault.body, fault.retry_after)


def _classified(status: int, body: Any, retry_after: float | None) -> Exception:
    """The exception EhrClient raises for an HTTP status (client.py, _classify)."""
    if status in (408, 429) or status >= 500:
        return EhrTemporaryError(f"the EHR answered {status}", status, body, retry_after)
    if status in (409, 412):
        return EhrConflict(f"the EHR answered {status}: the resource changed there", status, body)
    return EhrRejected(f"the EHR refused the write ({status})", status, body)


def _conforms(ehr: FakeEhr) -> None:
    """Never called: mypy checks that FakeEhr implements the port."""
    gateway: EhrGateway = ehr
    del gateway
