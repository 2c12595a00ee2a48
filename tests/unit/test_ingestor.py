"""The Ingestor on in-memory ports (tests/support/fakes/): versions, unchanged re-sends, If-Match, facts replaced,
the outbox marked, all-or-nothing transactions and batches with an entry each. The SQL is tested in
tests/integration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.fhir.bundle import plan_bundle
from service.fhir.normalise import Normaliser
from service.fhir.terminology import Terminology
from service.platform.errors import Problem, RefractureError
from service.usecases.ingest import EntryOutcome, Ingestor, WriteRequest
from tests.support.clock import ManualClock
from tests.support.fakes import MemoryIngestStore
from tests.support.records import t_score

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def patient(pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1950-02-03"}


@pytest.fixture
def store() -> MemoryIngestStore:
    return MemoryIngestStore()


@pytest.fixture
def clock() -> ManualClock[datetime]:
    return ManualClock(T0)


@pytest.fixture
def ingestor(store: MemoryIngestStore, clock: ManualClock[datetime]) -> Ingestor:
    return Ingestor(store, Normaliser(Terminology()), clock)


def put(ingestor: Ingestor, resource: dict[str, Any], if_match: str | None = None) -> EntryOutcome:
    request = WriteRequest(resource["resourceType"], resource["id"], resource, if_match)
    outcome = ingestor.write(request).outcomes[0]
    assert isinstance(outcome, EntryOutcome)
    return outcome


def test_a_new_resource_is_version_1_and_a_changed_one_version_2(
    ingestor: Ingestor, store: MemoryIngestStore, clock: ManualClock[datetime]
) -> None:
    put(ingestor, patient())
    first = put(ingestor, t_score("o1", -2.5))
    assert (first.created, first.changed, first.version_id) == (True, True, 1)
    assert first.body is not None
    assert first.body["meta"]["versionId"] == "1"
    clock.now += timedelta(minutes=5)
    second = put(ingestor, t_score("o1", -2.9))
    assert (second.created, second.changed, second.version_id, second.last_updated) == (False, True, 2, clock.now)
    assert [w.version_id for w in store.tables.history if w.id == "o1"] == [1, 2]
    # One fact per version: the old value's fact is replaced, not kept beside the new one.
    values = [f.fact.value_num for f in store.facts_of("p1") if f.source_id == "o1"]
    assert values == [-2.9]


def test_the_same_content_again_is_unchanged_and_rings_nobody(ingestor: Ingestor, store: MemoryIngestStore) -> None:
    put(ingestor, patient())
    put(ingestor, t_score("o1", -2.5))
    changes = dict(store.tables.changed)
    again = put(ingestor, t_score("o1", -2.5))
    assert (again.created, again.changed, again.version_id) == (False, False, 1)
    assert store.tables.changed == changes  # no outbox row touched
    assert len(store.tables.history) == 2


def test_if_match_must_name_the_stored_version(ingestor: Ingestor, store: MemoryIngestStore) -> None:
    put(ingestor, patient())
    put(ingestor, t_score("o1", -2.5))
    with pytest.raises(RefractureError) as refused:
        put(ingestor, t_score("o1", -3.0), if_match='W/"7"')
    assert refused.value.problem is Problem.PRECONDITION_FAILED
    assert store.read_text(("Observation", "o1")).version_id == 1  # type: ignore[union-attr]
    assert put(ingestor, t_score("o1", -3.0), if_match='W/"1"').version_id == 2


def test_a_write_marks_its_patient_changed_in_the_same_transaction(
    ingestor: Ingestor, store: MemoryIngestStore
) -> None:
    put(ingestor, patient())
    before = store.sessions
    result = ingestor.write(WriteRequest("Observation", "o1", t_score("o1", -2.5)), claim=True)
    assert store.sessions == before + 1  # the resource, its facts and the outbox row: one transaction
    assert result.changed_patients == ["p1"]
    assert "p1" in store.tables.claimed  # the caller rings the doorbell itself after the commit


def bundle(kind: str, *resources: dict[str, Any]) -> dict[str, Any]:
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources
    ]
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def test_a_transaction_writes_every_entry_or_none(ingestor: Ingestor, store: MemoryIngestStore) -> None:
    ingestor.transaction(plan_bundle(bundle("transaction", patient(), t_score("o1", -2.5)), 100))
    assert store.read_text(("Observation", "o1")) is not None
    # The second entry names the wrong version: the whole transaction is refused, the first entry is not kept.
    planned = plan_bundle(bundle("transaction", t_score("o2", -1.0), t_score("o1", -3.0)), 100)
    planned.entries[1].if_match = 'W/"9"'
    with pytest.raises(RefractureError):
        ingestor.transaction(planned)
    assert store.read_text(("Observation", "o2")) is None
    assert store.read_text(("Observation", "o1")).version_id == 1  # type: ignore[union-attr]


def test_a_batch_keeps_the_good_entries_and_answers_each_bad_one(ingestor: Ingestor, store: MemoryIngestStore) -> None:
    put(ingestor, patient())
    put(ingestor, t_score("o1", -2.5))
    planned = plan_bundle(bundle("batch", t_score("o2", -1.0), t_score("o1", -3.0)), 100)
    planned.entries[1].if_match = 'W/"9"'
    result = ingestor.batch(planned)
    good, bad = result.outcomes
    assert isinstance(good, EntryOutcome)
    assert good.created
    assert isinstance(bad, RefractureError)
    assert bad.problem is Problem.PRECONDITION_FAILED
    assert store.read_text(("Observation", "o2")) is not None
    assert store.read_text(("Observation", "o1")).version_id == 1  # type: ignore[union-attr]
