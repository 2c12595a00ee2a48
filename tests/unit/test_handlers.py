"""The relay and the change processor, with an in-memory outbox and queue (no servers)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from service.usecases.changes import ChangeProcessor
from service.usecases.relay import Relay
from service.usecases.task_names import TASK_PATIENTS_CHANGED
from tests.support.clock import ManualClock
from tests.support.queue import RecordingQueue


@dataclass
class Row:
    changed: int
    done: int = 0
    published_at: datetime | None = None


@dataclass
class FakeOutbox:
    rows: dict[str, Row] = field(default_factory=dict)

    def claim_to_publish(self, now: datetime, redeliver_after_s: float, limit: int) -> list[str]:
        due = [
            p
            for p, r in sorted(self.rows.items())
            if r.changed > r.done
            and (r.published_at is None or r.published_at < now - timedelta(seconds=redeliver_after_s))
        ][:limit]
        for p in due:
            self.rows[p].published_at = now
        return due

    def claim_given(self, patient_ids: Sequence[str], now: datetime) -> list[str]:
        due = [
            p
            for p in sorted(patient_ids)
            if p in self.rows and self.rows[p].changed > self.rows[p].done and self.rows[p].published_at is None
        ]
        for p in due:
            self.rows[p].published_at = now
        return due

    def pending(self, patient_ids: Sequence[str]) -> dict[str, int]:
        return {
            p: self.rows[p].changed for p in patient_ids if p in self.rows and self.rows[p].changed > self.rows[p].done
        }

    def mark_done(self, done: Mapping[str, int], now: datetime) -> None:
        for p, seq in done.items():
            self.rows[p].done = max(self.rows[p].done, seq)

    def release(self, patient_ids: Sequence[str]) -> None:
        for p in patient_ids:
            if p in self.rows and self.rows[p].changed > self.rows[p].done:
                self.rows[p].published_at = None

    def backlog(self) -> tuple[int, datetime | None]:
        return sum(1 for r in self.rows.values() if r.changed > r.done), None


@dataclass
class FakeStore:
    box: FakeOutbox = field(default_factory=FakeOutbox)

    @contextlib.contextmanager
    def outbox(self) -> Iterator[FakeOutbox]:
        snapshot = {p: Row(r.changed, r.done, r.published_at) for p, r in self.box.rows.items()}
        try:
            yield self.box
        except Exception:
            self.box.rows = snapshot  # a rolled-back transaction
            raise


def relay(store: FakeStore, queue: RecordingQueue, clock: ManualClock, batch: int = 2, chunk: int = 2) -> Relay:
    return Relay(store, queue, clock, redeliver_after_s=60, batch_size=batch, chunk_size=chunk)


def test_relay_publishes_in_chunks_and_batches() -> None:
    store, queue, clock = FakeStore(), RecordingQueue(), ManualClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    store.box.rows = {f"p{i}": Row(changed=i + 1) for i in range(5)}
    assert relay(store, queue, clock).ring() == 5
    assert [args for _, args in queue.sent] == [[["p0", "p1"]], [["p2", "p3"]], [["p4"]]]
    assert {name for name, _ in queue.sent} == {TASK_PATIENTS_CHANGED}
    assert relay(store, queue, clock).ring() == 0  # rung already, not yet due again
    clock.now += timedelta(seconds=61)
    assert relay(store, queue, clock).ring() == 5  # the doorbells may have been lost: ring again


def test_relay_leaves_the_rows_when_the_broker_is_down() -> None:
    store, clock = FakeStore(), ManualClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    store.box.rows = {"p": Row(changed=1)}
    assert relay(store, RecordingQueue(fail=True), clock).ring() == 0
    assert store.box.rows["p"].published_at is None
    working = RecordingQueue()
    assert relay(store, working, clock).ring() == 1
    assert working.sent == [(TASK_PATIENTS_CHANGED, [["p"]])]


def test_the_doorbell_after_ingest_rings_only_for_its_patients_once() -> None:
    store, queue, clock = FakeStore(), RecordingQueue(), ManualClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    store.box.rows = {"a": Row(changed=1), "b": Row(changed=2)}
    assert relay(store, queue, clock).ring(["a"]) == 1
    assert relay(store, queue, clock).ring(["a"]) == 0
    assert queue.sent == [(TASK_PATIENTS_CHANGED, [["a"]])]


def test_change_processor_runs_the_work_and_marks_done() -> None:
    store, clock = FakeStore(), ManualClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    store.box.rows = {"a": Row(changed=3), "b": Row(changed=1, done=1)}
    seen: list[list[str]] = []
    processor = ChangeProcessor(store, clock, [lambda ids: seen.append(list(ids))])
    assert processor.process(["a", "b", "zz"]) == 1
    assert seen == [["a"]]
    assert store.box.rows["a"].done == 3
    assert processor.process(["a"]) == 0


def test_work_that_fails_leaves_the_change_pending() -> None:
    store, clock = FakeStore(), ManualClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    store.box.rows = {"a": Row(changed=1)}

    def broken(_: Sequence[str]) -> None:
        raise RuntimeError("model crashed")

    processor = ChangeProcessor(store, clock, [broken])
    with contextlib.suppress(RuntimeError):
        processor.process(["a"])
    assert store.box.rows["a"].done == 0


def test_a_claimed_doorbell_that_cannot_ring_is_handed_back_to_the_relay() -> None:
    store, clock = FakeStore(), ManualClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    store.box.rows = {"a": Row(changed=1, published_at=clock.now)}  # claimed in the write's transaction
    assert relay(store, RecordingQueue(fail=True), clock).publish_claimed(["a"]) == 0
    assert store.box.rows["a"].published_at is None  # released: the relay's next run rings it
    working = RecordingQueue()
    assert relay(store, working, clock).ring() == 1
    assert working.sent == [(TASK_PATIENTS_CHANGED, [["a"]])]


class GatedQueue(RecordingQueue):
    """Holds the first publish until released, as a slow broker round trip would."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def send(self, task_name: str, args: Sequence[Any]) -> None:
        self.entered.set()
        assert self.gate.wait(10)
        super().send(task_name, args)


def test_doorbells_rung_while_one_is_publishing_go_out_together_after_it() -> None:
    store, queue, clock = FakeStore(), GatedQueue(), ManualClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    doorbell = relay(store, queue, clock, chunk=10)
    first = threading.Thread(target=doorbell.publish_claimed, args=(["a"],))
    first.start()
    assert queue.entered.wait(10)
    assert doorbell.publish_claimed(["c", "b"]) == 0  # handed to the call publishing now
    assert doorbell.publish_claimed(["b", "d"]) == 0
    queue.gate.set()
    first.join(10)
    assert queue.sent == [(TASK_PATIENTS_CHANGED, [["a"]]), (TASK_PATIENTS_CHANGED, [["b", "c", "d"]])]
    assert doorbell.publish_claimed(["e"]) == 1  # nobody publishing: this call does
