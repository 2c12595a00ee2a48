"""The group-commit writer on in-memory ports: writes waiting together share one transaction and one doorbell, each
caller still gets its own result or its own refusal, and nothing queued is lost at close. The PostgreSQL side is
tests/integration/test_group_commit_postgres.py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from service.domain.audit_record import AuditRecord
from service.fhir.normalise import Normaliser
from service.fhir.terminology import Terminology
from service.platform.errors import Problem, RefractureError
from service.usecases.group_commit import GroupCommit
from service.usecases.ingest import EntryOutcome, Ingestor, IngestResult, WriteRequest
from tests.support.clock import ManualClock
from tests.support.doorbell import HeldDoorbell
from tests.support.fakes import MemoryIngestStore
from tests.support.records import t_score

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def store() -> MemoryIngestStore:
    return MemoryIngestStore()


@pytest.fixture
def doorbell() -> HeldDoorbell:
    return HeldDoorbell()


@pytest.fixture
def writer(store: MemoryIngestStore, doorbell: HeldDoorbell) -> Iterator[GroupCommit]:
    group = GroupCommit(Ingestor(store, Normaliser(Terminology()), ManualClock(T0)), doorbell)
    yield group
    doorbell.release.set()
    group.close()


def request(resource: dict[str, Any], if_match: str | None = None) -> WriteRequest:
    return WriteRequest(resource["resourceType"], resource["id"], resource, if_match)


def audit_of(tag: str) -> Any:
    def rows(result: IngestResult) -> list[AuditRecord]:
        outcome = result.outcomes[0]
        assert isinstance(outcome, EntryOutcome)
        return [AuditRecord(T0, "interface-engine", "update", tag, 201 if outcome.created else 200)]

    return rows


def hold_first_group(writer: GroupCommit, doorbell: HeldDoorbell) -> None:
    """Write one resource and keep the writer in its doorbell until ``doorbell.release`` is set."""
    writer.submit(request(t_score("o0", pid="p0")))
    assert doorbell.entered.wait(10)


def test_writes_waiting_together_share_one_transaction_and_one_doorbell(
    writer: GroupCommit, store: MemoryIngestStore, doorbell: HeldDoorbell
) -> None:
    hold_first_group(writer, doorbell)
    sessions = store.sessions
    futures = [writer.submit(request(t_score(f"o{i}", pid=f"p{i}")), audit_of(f"w{i}")) for i in (1, 2, 3)]
    doorbell.release.set()
    results = [f.result(timeout=10) for f in futures]

    assert store.sessions == sessions + 1  # the three in one transaction
    assert doorbell.rings == [["p0"], ["p1", "p2", "p3"]]  # one ring per group, after its commit
    assert [r.changed_patients for r in results] == [["p1"], ["p2"], ["p3"]]  # each names only its own patient
    assert [(o.created, o.version_id) for r in results for o in r.outcomes if isinstance(o, EntryOutcome)] == [
        (True, 1)
    ] * 3
    assert sorted(row.what for row in store.tables.audit) == ["w1", "w2", "w3"]  # in the writes' transaction
    assert {"p1", "p2", "p3"} <= store.tables.claimed  # marked rung: the doorbell above rang them


def test_a_refused_write_fails_alone_and_the_rest_of_its_group_is_written(
    writer: GroupCommit, store: MemoryIngestStore, doorbell: HeldDoorbell
) -> None:
    hold_first_group(writer, doorbell)
    good = writer.submit(request(t_score("o1", pid="p1")), audit_of("good"))
    stale = writer.submit(request(t_score("o0", -3.1, pid="p0"), if_match='W/"7"'), audit_of("stale"))
    other = writer.submit(request(t_score("o2", pid="p2")))
    doorbell.release.set()

    with pytest.raises(RefractureError) as refused:
        stale.result(timeout=10)
    assert refused.value.problem is Problem.PRECONDITION_FAILED
    assert good.result(timeout=10).changed_patients == ["p1"]
    assert other.result(timeout=10).changed_patients == ["p2"]
    assert [row.what for row in store.tables.audit] == ["good"]  # the refused write's audit is its route's to write
    assert store.tables.resources[("Observation", "o0")].version_id == 1  # unchanged by the refused write


def test_two_writes_of_one_resource_go_in_order_in_separate_groups(
    writer: GroupCommit, store: MemoryIngestStore, doorbell: HeldDoorbell
) -> None:
    hold_first_group(writer, doorbell)
    first = writer.submit(request(t_score("o5", -2.0, pid="p5")))
    second = writer.submit(request(t_score("o5", -2.8, pid="p5")))
    doorbell.release.set()

    versions = [
        o.version_id for f in (first, second) for o in f.result(timeout=10).outcomes if isinstance(o, EntryOutcome)
    ]
    assert versions == [1, 2]
    assert store.tables.resources[("Observation", "o5")].version_id == 2


def test_close_writes_what_is_queued_and_refuses_what_comes_after(
    writer: GroupCommit, store: MemoryIngestStore, doorbell: HeldDoorbell
) -> None:
    hold_first_group(writer, doorbell)
    queued = [writer.submit(request(t_score(f"q{i}", pid="p9"))) for i in range(5)]
    doorbell.release.set()
    writer.close()

    assert all(f.done() and f.exception() is None for f in queued)
    assert {("Observation", f"q{i}") for i in range(5)} <= set(store.tables.resources)
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(request(t_score("late", pid="p9")))


def test_a_failing_doorbell_does_not_fail_the_committed_writes(store: MemoryIngestStore) -> None:
    def broken(patients: Sequence[str]) -> None:
        raise ConnectionError("broker unreachable")

    group = GroupCommit(Ingestor(store, Normaliser(Terminology()), ManualClock(T0)), broken)
    try:
        result = group.submit(request(t_score("o1", pid="p1"))).result(timeout=10)
    finally:
        group.close()
    assert result.changed_patients == ["p1"]
    assert ("Observation", "o1") in store.tables.resources  # committed; the claimed row waits for the relay
