"""One intake gate: the same resource through each way in — PUT /fhir, a transaction Bundle, an EHR rest-hook and a
bulk-import file — is stored the same, refused with the same issues, and counted the same in
refracture_ingested_resources_total."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.adapters.metrics import REGISTRY
from service.adapters.ndjson_files import LocalNdjsonFile
from service.composition.cli import make_bulk_import
from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from tests.ehr_standin import RunningStandIn
from tests.integration.test_subscriptions import WITH_TOKEN, feed_settings, observation, patient
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration

WAYS = ("api", "bundle", "rest-hook", "bulk")
# Bad the same way on every road: a status outside its required binding.
INVALID_STATUS = {"status": "signed-off"}


@pytest.fixture
def app(services: LocalServices, database_url: str, ehr: RunningStandIn) -> Iterator[tuple[Parts, TestClient]]:
    parts = build_parts(make_settings(services, database_url, **feed_settings(ehr)), queue=RecordingQueue())
    with TestClient(api_app(parts), raise_server_exceptions=False) as client:
        put(client, "/fhir/Patient/p1", patient("p1"))
        yield parts, client
    parts.close()


def put(client: TestClient, path: str, body: dict[str, Any]) -> Any:
    return client.put(path, content=json.dumps(body), headers=WITH_TOKEN)


def counted(outcome: str) -> float:
    labels = {"resource_type": "Observation", "outcome": outcome}
    return REGISTRY.get_sample_value("refracture_ingested_resources_total", labels) or 0.0


def send(way: str, parts: Parts, client: TestClient, resource: dict[str, Any], tmp: Path) -> list[str]:
    """Send one Observation by one way in; the issues' texts it was refused with (empty when stored)."""
    rid = resource["id"]
    if way == "api":
        answer = put(client, f"/fhir/Observation/{rid}", resource)
        return [] if answer.status_code < 300 else [i["diagnostics"] for i in answer.json()["issue"]]
    if way == "bundle":
        entry = {"resource": resource, "request": {"method": "PUT", "url": f"Observation/{rid}"}}
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        answer = client.post("/fhir", content=json.dumps(bundle), headers=WITH_TOKEN)
        return [] if answer.status_code < 300 else [i["diagnostics"] for i in answer.json()["issue"]]
    if way == "rest-hook":
        answer = put(client, f"/fhir/$subscription-hook/ehr/Observation/{rid}", resource)
        return [] if answer.status_code < 300 else [i["diagnostics"] for i in answer.json()["issue"]]
    path = tmp / f"{rid}.ndjson"
    path.write_text(json.dumps(resource) + "\n", encoding="utf-8")
    bulk = make_bulk_import(parts, 100)
    try:
        result = bulk.importer.import_file("files", LocalNdjsonFile(path), restart=True)
    finally:
        bulk.close()
    return [issue.message for issue in result.issues]


def stored(parts: Parts, rid: str) -> dict[str, Any] | None:
    text = parts.resources.read_text(("Observation", rid))
    if text is None:
        return None
    body = json.loads(text.body)
    return {k: v for k, v in body.items() if k not in ("id", "meta")}


def each_way(
    app: tuple[Parts, TestClient], tmp_path: Path, make: Callable[[str], dict[str, Any]], outcome: str
) -> dict[str, tuple[list[str], float]]:
    parts, client = app
    seen = {}
    for way in WAYS:
        before = counted(outcome)
        issues = send(way, parts, client, make(f"o-{way}"), tmp_path)
        seen[way] = (issues, counted(outcome) - before)
    return seen


def test_a_valid_resource_is_stored_and_counted_alike_by_every_way_in(
    app: tuple[Parts, TestClient], tmp_path: Path
) -> None:
    parts, _ = app
    seen = each_way(app, tmp_path, observation, "created")
    assert seen == dict.fromkeys(WAYS, ([], 1.0))
    bodies = [stored(parts, f"o-{way}") for way in WAYS]
    assert bodies[0] is not None
    assert all(body == bodies[0] for body in bodies)
    # The same again: unchanged, and counted so, by every way in.
    again = each_way(app, tmp_path, observation, "unchanged")
    assert again == dict.fromkeys(WAYS, ([], 1.0))


def test_an_invalid_resource_is_refused_with_the_same_issue_and_counted_alike(
    app: tuple[Parts, TestClient], tmp_path: Path
) -> None:
    parts, _ = app
    seen = each_way(app, tmp_path, lambda rid: observation(rid) | INVALID_STATUS, "refused")
    texts = {way: tuple(issues) for way, (issues, _) in seen.items()}
    assert all(texts[way] for way in WAYS), texts
    # The Bundle names the entry's path, the others the resource's: the words are the gate's, the same.
    first = [text.split(" (at ")[0] for text in texts["api"]]
    for way in WAYS:
        assert [text.split(" (at ")[0] for text in texts[way]] == first, (way, texts[way])
    assert {way: n for way, (_, n) in seen.items()} == dict.fromkeys(WAYS, 1.0)
    assert all(stored(parts, f"o-{way}") is None for way in WAYS)
