"""RefusalCounter over the in-memory store: counted per minute, truncated, purged at most hourly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.usecases.ports.refusals import RefusalStore, RefusedRequests
from service.usecases.refusals import RefusalCounter
from tests.support.clock import ManualClock
from tests.support.fakes import MemoryRefusalStore

T0 = datetime(2026, 3, 2, 9, 0, 12, 345, tzinfo=UTC)


def _counter(retention_days: int = 30) -> tuple[RefusalCounter, MemoryRefusalStore, ManualClock[datetime]]:
    store = MemoryRefusalStore()
    port: RefusalStore = store
    clock = ManualClock(T0)
    return RefusalCounter(port, clock, retention_days), store, clock


def test_requests_of_one_minute_address_route_and_status_are_one_row() -> None:
    counter, _, clock = _counter()
    counter.count("10.0.0.1", "/fhir/Patient", 401)
    clock.now = T0 + timedelta(seconds=30)
    counter.count("10.0.0.1", "/fhir/Patient", 401)
    counter.count("10.0.0.1", "/fhir/Patient", 404)
    counter.count("10.0.0.2", "/fhir/Patient", 401)
    minute = T0.replace(second=0, microsecond=0)
    assert counter.since(minute) == [
        RefusedRequests(minute, "10.0.0.1", "/fhir/Patient", 401, 2),
        RefusedRequests(minute, "10.0.0.1", "/fhir/Patient", 404, 1),
        RefusedRequests(minute, "10.0.0.2", "/fhir/Patient", 401, 1),
    ]


def test_the_next_minute_is_a_new_row_and_since_reads_from_its_minute_on() -> None:
    counter, _, clock = _counter()
    counter.count("10.0.0.1", "/", 401)
    clock.now = T0 + timedelta(minutes=1)
    counter.count("10.0.0.1", "/", 401)
    later = (T0 + timedelta(minutes=1)).replace(second=0, microsecond=0)
    assert [r.minute for r in counter.since(T0.replace(second=0, microsecond=0))] == [
        later - timedelta(minutes=1),
        later,
    ]
    assert counter.since(later) == [RefusedRequests(later, "10.0.0.1", "/", 401, 1)]


def test_a_missing_address_is_empty_and_long_values_are_cut_to_the_columns() -> None:
    counter, store, _ = _counter()
    counter.count(None, "x" * 500, 404)
    counter.count("a" * 100, "/", 404)
    assert {(ip, len(what)) for _, ip, what, _ in store.counts} == {("", 200), ("a" * 64, 1)}


def test_rows_past_the_retention_are_purged_at_most_hourly() -> None:
    counter, store, clock = _counter(retention_days=30)
    counter.count("10.0.0.1", "/", 401)
    assert store.purges == [T0 - timedelta(days=30)]
    clock.now = T0 + timedelta(days=31)
    counter.count("10.0.0.2", "/", 401)
    assert [r.source_ip for r in counter.since(T0 - timedelta(days=1))] == ["10.0.0.2"]
    clock.now += timedelta(minutes=59)
    counter.count("10.0.0.3", "/", 401)
    assert len(store.purges) == 2
    clock.now += timedelta(minutes=2)
    counter.count("10.0.0.4", "/", 401)
    assert len(store.purges) == 3
