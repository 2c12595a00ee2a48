"""The group-commit writer and the direct PUT path over real PostgreSQL: writes waiting together commit in one
transaction with their audit rows and claimed outbox rows; a refused one fails alone; a PUT with a known token takes
the direct path and is answered exactly as through FastAPI's routing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.domain.audit_record import AuditRecord
from service.entrypoints.api import direct_writes
from service.platform.errors import Problem, RefractureError
from service.usecases.group_commit import GroupCommit
from service.usecases.ingest import EntryOutcome, IngestResult, WriteRequest
from tests.support.databases import query_one
from tests.support.doorbell import HeldDoorbell
from tests.support.http import FHIR_JSON
from tests.support.records import t_score

pytestmark = pytest.mark.integration


@pytest.fixture
def doorbell() -> HeldDoorbell:
    return HeldDoorbell()


@pytest.fixture
def writer(parts: Parts, doorbell: HeldDoorbell) -> Iterator[GroupCommit]:
    group = GroupCommit(parts.ingestor, doorbell)
    yield group
    doorbell.release.set()
    group.close()


def request(resource: dict[str, Any], if_match: str | None = None) -> WriteRequest:
    return WriteRequest(resource["resourceType"], resource["id"], resource, if_match)


def audited(tag: str) -> Any:
    def rows(result: IngestResult) -> list[AuditRecord]:
        outcome = result.outcomes[0]
        assert isinstance(outcome, EntryOutcome)
        return [AuditRecord(outcome.last_updated, "interface-engine", "update", tag, 201 if outcome.created else 200)]

    return rows


def test_a_group_commits_together_with_its_audit_rows_and_claimed_outbox_rows(
    writer: GroupCommit, doorbell: HeldDoorbell, database_url: str
) -> None:
    writer.submit(request(t_score("g0", pid="gp0")))
    assert doorbell.entered.wait(10)
    futures = [writer.submit(request(t_score(f"g{i}", pid=f"gp{i}")), audited(f"group-{i}")) for i in range(1, 21)]
    doorbell.release.set()
    results = [f.result(timeout=30) for f in futures]

    assert [r.changed_patients for r in results] == [[f"gp{i}"] for i in range(1, 21)]
    assert doorbell.rings[1] == sorted(f"gp{i}" for i in range(1, 21))  # one ring for the twenty
    assert query_one(database_url, "SELECT count(*) FROM resource WHERE id LIKE %s", "g%") == 21
    assert query_one(database_url, "SELECT count(*) FROM fact WHERE patient_id LIKE %s", "gp%") == 21
    assert query_one(database_url, "SELECT count(*) FROM audit_event WHERE what LIKE %s", "group-%") == 20
    claimed = query_one(
        database_url,
        "SELECT count(*) FROM patient_change WHERE patient_id LIKE %s AND published_at IS NOT NULL",
        "gp%",
    )
    assert claimed == 21  # marked rung in the writes' transaction: the relay does not ring them again
    transactions = query_one(
        database_url, "SELECT count(DISTINCT xmin::text) FROM resource WHERE id LIKE %s AND id <> 'g0'", "g%"
    )
    assert transactions == 1  # the twenty rows were written by one transaction


def test_a_refused_write_in_a_group_fails_alone(writer: GroupCommit, doorbell: HeldDoorbell, database_url: str) -> None:
    writer.submit(request(t_score("r0", pid="rp0")))
    assert doorbell.entered.wait(10)
    good = [writer.submit(request(t_score(f"r{i}", pid=f"rp{i}")), audited(f"kept-{i}")) for i in (1, 2)]
    stale = writer.submit(request(t_score("r0", -3.3, pid="rp0"), if_match='W/"4"'), audited("stale"))
    again = writer.submit(request(t_score("r1", -2.2, pid="rp1")), audited("again"))  # r1 twice: the next group
    doorbell.release.set()

    with pytest.raises(RefractureError) as refused:
        stale.result(timeout=30)
    assert refused.value.problem is Problem.PRECONDITION_FAILED
    assert all(f.result(timeout=30).changed_patients for f in good)
    again.result(timeout=30)  # the same resource again: a second version, written after the first
    assert query_one(database_url, "SELECT version_id FROM resource WHERE id = 'r1'") == 2
    assert query_one(database_url, "SELECT version_id FROM resource WHERE id = 'r0'") == 1
    assert query_one(database_url, "SELECT count(*) FROM audit_event WHERE what = 'stale'") == 0


def put(client: TestClient, resource: dict[str, Any], query: str = "") -> Any:
    return client.put(
        f"/fhir/{resource['resourceType']}/{resource['id']}{query}", content=json.dumps(resource), headers=FHIR_JSON
    )


def test_a_put_with_a_known_token_takes_the_direct_path_and_is_answered_as_through_fastapi(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    direct: list[str] = []
    writes_of = direct_writes.writes_of
    monkeypatch.setattr(direct_writes, "writes_of", lambda services: direct.append("direct") or writes_of(services))
    put(client, {"resourceType": "Patient", "id": "dp1", "gender": "female", "birthDate": "1950-01-01"})
    fast = put(client, t_score("d1", pid="dp1"))
    routed = put(client, t_score("d2", pid="dp1"), query="?_pretty=false")  # a query string: FastAPI's route
    assert direct == ["direct", "direct"]

    assert (fast.status_code, routed.status_code) == (201, 201)
    assert sorted(fast.headers) == sorted(routed.headers)
    for name in ("content-type", "etag", "cache-control", "x-content-type-options"):
        assert fast.headers.get(name) == routed.headers.get(name)
    assert fast.headers["location"].endswith("/fhir/Observation/d1/_history/1")

    def without_meta(body: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k not in ("id", "meta")}

    assert without_meta(fast.json()) == without_meta(routed.json())
    audit = query_one(
        database_url, "SELECT count(DISTINCT what) FROM audit_event WHERE resource_id IN ('d1', 'd2') AND outcome = 201"
    )
    assert audit == 1  # both audited as the same route, in the write's transaction

    refused = client.put("/fhir/Observation/d3", content=b"{", headers=FHIR_JSON)
    assert refused.status_code == 400  # the app's own OperationOutcome for malformed JSON, from the direct path
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert direct == ["direct", "direct", "direct"]

    anonymous = client.put(
        "/fhir/Observation/d4", content=json.dumps(t_score("d4", pid="dp1")), headers={**FHIR_JSON, "Authorization": ""}
    )
    assert anonymous.status_code == 401  # no token: FastAPI's route, as before
    assert len(direct) == 3
