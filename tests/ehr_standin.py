"""An EHR stand-in at the HTTP boundary: a small FHIR R4 server with a SMART token endpoint, run on loopback.

It keeps resources in memory with versions, honours conditional updates on identifiers, If-Match and transactions
(all or nothing, urn:uuid references rewritten), validates every resource it is sent, records every request, and
injects faults on demand: status codes (with Retry-After), slow answers, connections dropped before or after it
committed, being down altogether, or holding a request until the test releases it (to crash the sender while
its request is in flight). It also creates resources by POST (Subscriptions) and searches by _lastUpdated and _tag
with paged next links (the event feed tests). Used by the contract and fault tests and by bench/writeback.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from service.fhir.validation import validate_resource
from tests.support.servers import ThreadedServer

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

FULL_CAPABILITY: dict[str, Any] = {
    "resourceType": "CapabilityStatement",
    "status": "active",
    "date": "2026-01-01",
    "kind": "instance",
    "fhirVersion": "4.0.1",
    "format": ["json"],
    "rest": [
        {
            "mode": "server",
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "resource": [
                {
                    "type": kind,
                    "interaction": [{"code": "read"}, {"code": "update"}, {"code": "create"}, {"code": "search-type"}],
                    "updateCreate": True,
                    "conditionalUpdate": True,
                }
                for kind in ("RiskAssessment", "CarePlan", "Provenance", "Task")
            ],
        }
    ],
}


def capability(
    transaction: bool = True, conditional: bool = True, update_create: bool = True, care_plan_writes: bool = True
) -> dict[str, Any]:
    """A CapabilityStatement with some abilities taken away."""
    statement = copy.deepcopy(FULL_CAPABILITY)
    rest = statement["rest"][0]
    if not transaction:
        rest["interaction"] = [{"code": "batch"}]
    for resource in rest["resource"]:
        resource["conditionalUpdate"] = conditional
        resource["updateCreate"] = update_create
        if resource["type"] == "CarePlan" and not care_plan_writes:
            resource["interaction"] = [{"code": "read"}, {"code": "search-type"}]
    return statement


@dataclass
class Fault:
    """One injected failure: for requests matching ``method`` and ``path_prefix``, ``times`` times."""

    kind: str  # status | slow | drop-before | drop-after-commit | down | hold
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    seconds: float = 0.0
    times: int = 1
    method: str | None = None
    path_prefix: str = ""
    # "hold": the request, read in full, waits until ``release`` is set and is then served (committed) as usual, even
    # when its sender is gone by then; ``arrived`` is set as it starts waiting, so a test knows it is in flight.
    arrived: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)
    release: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and path.startswith(self.path_prefix)


@dataclass
class Recorded:
    """One request as the EHR saw it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


class Conflict(Exception):
    """A failed If-Match."""


class EhrStandIn:
    """The FHIR server's state and behaviour (an ASGI app)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation = 0
        self.base_url = ""  # absolute next links of searches (RunningStandIn sets it)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            # A request still in flight from before (a slow answer the client gave up on) must not land after it.
            self.generation += 1
            self.capability: dict[str, Any] = copy.deepcopy(FULL_CAPABILITY)
            self.store: dict[tuple[str, str], dict[str, Any]] = {}
            self.by_identifier: dict[tuple[str, str, str], str] = {}  # (type, system, value) → id
            self.requests: list[Recorded] = []
            self.faults: list[Fault] = []
            self.reject_types: dict[str, tuple[int, Any]] = {}  # resource type → (status, answer) for every write
            self.refuse_transactions = False
            # SMART
            self.require_token = False
            self.public_key: Any = None
            self.key_id = ""
            self.client_id = ""
            self.token_url = ""
            self.token_lifetime_s = 300
            self.tokens: dict[str, float] = {}
            self.token_requests: list[dict[str, Any]] = []
            self.seen_jti: set[str] = set()
            self.clock: Callable[[], float] = time.time
            # When each resource a RiskAssessment is based on first reached the EHR in one (wall clock): benchmarks.
            self.basis_arrivals: dict[str, float] = {}

    # --- what tests look at ----------------------------------------------------------------------------------
    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(r) for (kind, _), r in sorted(self.store.items()) if kind == resource_type]

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method in ("POST", "PUT") and r.path != "/token"]

    def edit(self, resource_type: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Someone at the EHR edits every resource of a type (a new version)."""
        with self.lock:
            for (kind, rid), resource in self.store.items():
                if kind == resource_type:
                    change(resource)
                    self._bump(resource, rid)

    # --- ASGI ------------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        method, path = scope["method"], scope["path"].removeprefix("/fhir") or "/"
        query = scope.get("query_string", b"").decode()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = None
        if raw:
            try:
                body = (
                    json.loads(raw)
                    if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
                    else parse_qs(raw.decode())
                )
            except ValueError:
                body = raw.decode(errors="replace")
        generation = self.generation
        self.requests.append(Recorded(method, path, query, headers, body))
        if method == "GET" and path == "/__arrivals":
            await self._answer(send, 200, self.basis_arrivals)
            return
        fault = self._take_fault(method, path)
        if fault is not None and fault.kind in ("down", "drop-before"):
            await self._drop(send)
            return
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
        if fault is not None and fault.kind == "hold":
            fault.arrived.set()
            # Polled, not awaited in a thread: the event loop keeps serving other requests meanwhile.
            while not fault.release.is_set():
                await asyncio.sleep(0.02)
        if fault is not None and fault.kind == "status":
            await self._answer(send, fault.status, fault.body or _outcome("injected failure"), fault.headers)
            return
        if path == "/token" and method == "POST":
            await self._answer(send, *self._token(body or {}))
            return
        if self.require_token and not self._authorised(headers.get("authorization", "")):
            await self._answer(send, 401, _outcome("invalid or expired token"))
            return
        status, answer, extra = self._route(method, path, query, body, headers.get("if-match"), generation)
        if fault is not None and fault.kind == "drop-after-commit":
            await self._drop(send, committed=True)
            return
        await self._answer(send, status, answer, extra)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                # The CapabilityStatement and the token endpoint fail only when a fault names them.
                special = path in ("/token", "/metadata") and not fault.path_prefix.startswith(path)
                if fault.matches(method, path) and not special:
                    if fault.kind != "down":
                        fault.times -= 1
                        if fault.times <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    @staticmethod
    async def _drop(send: Send, committed: bool = False) -> None:
        # A response that promises more than it sends: the client sees the connection break mid-answer.
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/fhir+json"), (b"content-length", b"4096")],
            }
        )
        await send(
            {"type": "http.response.body", "body": b'{"resourceType":' if committed else b"", "more_body": False}
        )

    @staticmethod
    async def _answer(send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        header_list = [(b"content-type", b"application/fhir+json")]
        header_list += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": header_list})
        await send({"type": "http.response.body", "body": payload})

    # --- SMART token endpoint ----------------------------------------------------------------------------------
    def _token(self, form: dict[str, list[str]]) -> tuple[int, Any]:
        fields = {k: v[0] for k, v in form.items()} if isinstance(form, dict) else {}
        self.token_requests.append(fields)
        try:
            assertion = jwt.decode(fields["client_assertion"], self.public_key, algorithms=["RS384", "ES384"])
        except Exception as exc:  # noqa: BLE001 - any bad assertion is an invalid_client
            return 400, {"error": "invalid_client", "error_description": f"bad signature: {type(exc).__name__}"}
        claims, header = assertion.claims, assertion.header
        now = self.clock()
        problems = [
            fields.get("grant_type") != "client_credentials" and "grant_type",
            fields.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            and "client_assertion_type",
            header.get("kid") != self.key_id and "kid",
            claims.get("iss") != self.client_id and "iss",
            claims.get("sub") != self.client_id and "sub",
            claims.get("aud") != self.token_url and "aud",
            not (now < claims.get("exp", 0) <= now + 300 + 5) and "exp",
            (not claims.get("jti") or claims.get("jti") in self.seen_jti) and "jti",
        ]
        problems = [p for p in problems if p]
        if problems:
            return 400, {"error": "invalid_client", "error_description": f"bad claims: {problems}"}
        self.seen_jti.add(str(claims["jti"]))
        token = uuid.uuid4().hex
        self.tokens[token] = now + self.token_lifetime_s
        return 200, {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.token_lifetime_s,
            "scope": fields.get("scope", ""),
        }

    def _authorised(self, header: str) -> bool:
        token = header.removeprefix("Bearer ").strip()
        return token in self.tokens and self.tokens[token] > self.clock()

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    # --- FHIR ------------------------------------------------------------------------------------------------
    def _route(
        self, method: str, path: str, query: str, body: Any, if_match: str | None, generation: int
    ) -> tuple[int, Any, dict[str, str]]:
        parts = [p for p in path.split("/") if p]
        params = {k: v[0] for k, v in parse_qs(query).items()}
        with self.lock:
            if generation != self.generation:
                return 503, _outcome("the stand-in was reset while this request was in flight"), {}
            if method == "GET" and parts == ["metadata"]:
                return 200, self.capability, {}
            if method == "POST" and not parts:
                if self.refuse_transactions:
                    return 405, _outcome("transactions are not supported"), {}
                return self._transaction(body)
            if method == "GET" and len(parts) == 1 and "identifier" in params:
                found = self._find(parts[0], params["identifier"])
                entries = [{"resource": copy.deepcopy(found)}] if found else []
                return 200, {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}, {}
            if method == "GET" and len(parts) == 1 and {"_lastUpdated", "_count", "_tag"} & set(params):
                return 200, self._search(parts[0], params), {}
            if method == "POST" and len(parts) == 1:  # create (Subscriptions): the server picks the id
                try:
                    status, resource = self._put(parts[0], None, None, body, None)
                except ValueError as exc:
                    return exc.args[1], exc.args[0], {}
                version = resource["meta"]["versionId"]
                return status, resource, {"Location": f"{parts[0]}/{resource['id']}/_history/{version}"}
            if method == "GET" and len(parts) == 1:
                every = [
                    {"resource": copy.deepcopy(r)} for (kind, _), r in sorted(self.store.items()) if kind == parts[0]
                ]
                return 200, {"resourceType": "Bundle", "type": "searchset", "total": len(every), "entry": every}, {}
            if method == "GET" and len(parts) == 2:
                found = self.store.get((parts[0], parts[1]))
                return (200, found, {}) if found else (404, _outcome("not found"), {})
            if method == "PUT" and len(parts) in (1, 2):
                try:
                    status, resource = self._put(
                        parts[0], parts[1] if len(parts) == 2 else None, params.get("identifier"), body, if_match
                    )
                except Conflict as exc:
                    return 412, _outcome(str(exc)), {}
                except ValueError as exc:
                    return exc.args[1], exc.args[0], {}
                return (
                    status,
                    resource,
                    {
                        "Location": f"{parts[0]}/{resource['id']}/_history/{resource['meta']['versionId']}",
                        "ETag": f'W/"{resource["meta"]["versionId"]}"',
                    },
                )
        return 404, _outcome(f"{method} {path} is not supported here"), {}

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Someone at the EHR creates or updates a resource (a new version, meta.lastUpdated now)."""
        with self.lock:
            return self._put(resource["resourceType"], resource.get("id"), None, resource, None)[1]

    def _search(self, resource_type: str, params: dict[str, str]) -> dict[str, Any]:
        """Search by _lastUpdated (ge/gt/le/lt), _tag (system|code), sorted by _lastUpdated, paged by _count with
        absolute next links (_offset)."""
        found = [r for (kind, _), r in self.store.items() if kind == resource_type]
        if "_lastUpdated" in params:
            value = params["_lastUpdated"]
            prefix, moment = (value[:2], value[2:]) if value[:2] in ("ge", "gt", "le", "lt", "eq") else ("eq", value)
            bound = datetime.fromisoformat(moment)
            tests = {
                "ge": lambda t: t >= bound,
                "gt": lambda t: t > bound,
                "le": lambda t: t <= bound,
                "lt": lambda t: t < bound,
                "eq": lambda t: t == bound,
            }
            found = [r for r in found if tests[prefix](datetime.fromisoformat(r["meta"]["lastUpdated"]))]
        if "_tag" in params:
            system, _, code = params["_tag"].partition("|")
            found = [
                r
                for r in found
                if any(t.get("system") == system and t.get("code") == code for t in r.get("meta", {}).get("tag", []))
            ]
        found.sort(key=lambda r: (r["meta"]["lastUpdated"], r["id"]))
        count = int(params.get("_count", "100"))
        offset = int(params.get("_offset", "0"))
        page = found[offset : offset + count]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "link": [],
            "entry": [{"resource": copy.deepcopy(r), "search": {"mode": "match"}} for r in page],
        }
        if offset + count < len(found):
            following = urlencode({**params, "_offset": str(offset + count)})
            bundle["link"].append({"relation": "next", "url": f"{self.base_url}/{resource_type}?{following}"})
        return bundle

    def _find(self, resource_type: str, token: str) -> dict[str, Any] | None:
        system, _, value = unquote(token).partition("|")
        rid = self.by_identifier.get((resource_type, system, value))
        return self.store.get((resource_type, rid)) if rid else None

    def _commit(self, changes: dict[tuple[str, str], dict[str, Any]]) -> None:
        for key, resource in changes.items():
            self.store[key] = resource
            for identifier in resource.get("identifier", []):
                self.by_identifier[(key[0], str(identifier.get("system")), str(identifier.get("value")))] = key[1]

    def _bump(self, resource: dict[str, Any], rid: str) -> None:
        version = int(resource.get("meta", {}).get("versionId", "0")) + 1
        resource["id"] = rid
        resource["meta"] = {
            **resource.get("meta", {}),
            "versionId": str(version),
            "lastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def _put(
        self,
        resource_type: str,
        rid: str | None,
        identifier: str | None,
        body: Any,
        if_match: str | None,
        staged: dict[tuple[str, str], dict[str, Any]] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Write one resource into ``staged`` (a transaction's changes) or, without it, straight into the store."""
        changes: dict[tuple[str, str], dict[str, Any]] = {} if staged is None else staged
        if not isinstance(body, dict) or body.get("resourceType") != resource_type:
            raise ValueError(_outcome("the body is not a " + resource_type), 400)
        if resource_type in self.reject_types:
            status, answer = self.reject_types[resource_type]
            raise ValueError(answer, status)
        issues = validate_resource(body)
        if issues:
            raise ValueError(_outcome("; ".join(f"{i.expression}: {i.text}" for i in issues)), 422)
        if identifier is not None:
            found = self._find(resource_type, identifier)
            if found is not None:
                rid = found["id"]
        existing = None
        if rid is not None:
            existing = changes.get((resource_type, rid)) or self.store.get((resource_type, rid))
        if if_match is not None:
            wanted = if_match.strip().removeprefix("W/").strip('"')
            if existing is None or existing["meta"]["versionId"] != wanted:
                raise Conflict(f"If-Match {if_match} does not match")
        resource = copy.deepcopy(body)
        if existing is not None:
            resource["meta"] = {"versionId": existing["meta"]["versionId"]}
        rid = rid or uuid.uuid4().hex[:12]
        self._bump(resource, rid)
        changes[(resource_type, rid)] = resource
        if staged is None:
            self._commit(changes)
        return (200 if existing is not None else 201), resource

    def _transaction(self, bundle: Any) -> tuple[int, Any, dict[str, str]]:
        if not isinstance(bundle, dict) or bundle.get("type") != "transaction":
            return 400, _outcome("a transaction Bundle was expected"), {}
        staged: dict[tuple[str, str], dict[str, Any]] = {}
        placeholders: dict[str, str] = {}
        results: list[dict[str, Any]] = []
        entries = bundle.get("entry", [])
        # First the ids every placeholder will get, so references between entries can be rewritten.
        planned: list[tuple[dict[str, Any], str, str | None, str | None]] = []
        for entry in entries:
            request = entry.get("request", {})
            url = request.get("url", "")
            resource_type, _, rest = url.partition("?")
            rid = None
            if "/" in resource_type:
                resource_type, rid = resource_type.split("/", 1)
            identifier = parse_qs(rest).get("identifier", [None])[0] if rest else None
            existing = self._find(resource_type, identifier) if identifier else None
            final_id = (existing or {}).get("id") or rid or uuid.uuid4().hex[:12]
            if entry.get("fullUrl", "").startswith("urn:uuid:"):
                placeholders[entry["fullUrl"]] = f"{resource_type}/{final_id}"
            planned.append((entry, resource_type, final_id, request.get("ifMatch")))
        try:
            for entry, resource_type, final_id, if_match in planned:
                resource = _rewrite(copy.deepcopy(entry.get("resource")), placeholders)
                status, stored = self._put(resource_type, final_id, None, resource, if_match, staged)
                version = stored["meta"]["versionId"]
                results.append(
                    {
                        "response": {
                            "status": f"{status} {'Created' if status == 201 else 'OK'}",
                            "location": f"{resource_type}/{stored['id']}/_history/{version}",
                            "etag": f'W/"{version}"',
                        }
                    }
                )
        except Conflict as exc:
            return 412, _outcome(str(exc)), {}
        except ValueError as exc:
            return exc.args[1], exc.args[0], {}
        self._commit(staged)  # all or nothing
        now = time.time()
        for entry in entries:
            resource = entry.get("resource") or {}
            if resource.get("resourceType") == "RiskAssessment":
                for basis in resource.get("basis", []):
                    self.basis_arrivals.setdefault(str(basis.get("reference")), now)
        return 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": results}, {}


def _rewrite(node: Any, placeholders: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: (placeholders.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, placeholders))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(v, placeholders) for v in node]
    return node


def _outcome(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "details": {"text": text}}],
    }


class RunningStandIn:
    """The stand-in served by uvicorn on a loopback port, in a background thread."""

    def __init__(self, app: EhrStandIn | None = None) -> None:
        self.app = app if app is not None else EhrStandIn()
        self._server = ThreadedServer(self.app, lifespan="on")
        self.port = self._server.port
        self.base_url = f"{self._server.url}/fhir"
        self.app.base_url = self.base_url

    def start(self) -> RunningStandIn:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(timeout_s=10)


def generate_key(algorithm: str) -> tuple[bytes, Any]:
    """A private key (PEM) for SMART and its public half for the stand-in."""
    key = RSAKey.generate_key(2048) if algorithm == "RS384" else ECKey.generate_key("P-384")
    return key.as_pem(private=True), RSAKey.import_key(key.as_pem(private=False)) if algorithm == "RS384" else (
        ECKey.import_key(key.as_pem(private=False))
    )


if __name__ == "__main__":  # a stand-in in its own process, for benchmarks: prints its base URL, serves until killed
    running = RunningStandIn().start()
    print(running.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        running.stop()
