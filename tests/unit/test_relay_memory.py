"""The relay and the change processor over the in-memory outbox (tests/support/fakes/outbox.py): no servers.

Mirrors tests/integration/test_outbox_worker.py; the SQL itself is tested there.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from service.usecases.changes import ChangeProcessor
from service.usecases.relay import Relay
from service.usecases.task_names import TASK_PATIENTS_CHANGED
from tests.support.clock import ManualClock
from tests.support.fakes import MemoryOutboxStore
from tests.support.queue import RecordingQueue

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def relay(
    store: MemoryOutboxStore, queue: RecordingQueue, clock: ManualClock[datetime], batch: int = 2, chunk: int = 2
) -> Relay:
    return Relay(store, queue, clock, redeliver_after_s=60, batch_size=batch, chunk_size=chunk)


def rung(queue: RecordingQueue) -> list[str]:
    assert {name for name, _ in queue.sent} == {TASK_PATIENTS_CHANGED}
    return [p for _, args in queue.sent for p in args[0]]


def test_a_change_is_rung_once_in_change_order_and_again_only_once_it_may_be_lost() -> None:
    store, queue, clock = MemoryOutboxStore(), RecordingQueue(), ManualClock(START)
    store.mark_changed(["c", "a"], START)
    store.mark_changed(["b"], START)
    assert relay(store, queue, clock, batch=2).ring() == 3  # batches until one comes back short
    assert rung(queue) == ["a", "c", "b"]  # oldest changes first, sorted within a batch
    assert relay(store, queue, clock).ring() == 0
    clock.now += timedelta(seconds=60)
    assert relay(store, queue, clock).ring() == 0  # strictly older than the wait
    clock.now += timedelta(seconds=1)
    assert relay(store, queue, clock).ring() == 3  # a lost doorbell is rung again
    assert store.rows["a"].publish_count == 2


def test_nothing_is_lost_when_the_broker_is_down_as_data_arrives() -> None:
    store, clock = MemoryOutboxStore(), ManualClock(START)
    store.mark_changed(["p"], START)
    assert relay(store, RecordingQueue(fail=True), clock).ring() == 0
    assert store.rows["p"].published_at is None  # the claim rolled back with the refused send
    working = RecordingQueue()
    assert relay(store, working, clock).ring() == 1
    assert rung(working) == ["p"]


def test_the_doorbell_after_an_ingest_rings_only_its_patients_and_only_once() -> None:
    store, queue, clock = MemoryOutboxStore(), RecordingQueue(), ManualClock(START)
    store.mark_changed(["a", "b"], START)
    assert relay(store, queue, clock).ring(["a", "unknown"]) == 1
    assert relay(store, queue, clock).ring(["a"]) == 0
    assert rung(queue) == ["a"]
    store.mark_changed(["a"], START)  # a new change re-opens its doorbell
    assert relay(store, queue, clock).ring(["a"]) == 1


def test_a_claimed_doorbell_that_cannot_ring_is_released_to_the_relay() -> None:
    store, clock = MemoryOutboxStore(), ManualClock(START)
    store.mark_changed(["a"], START, claimed=True)  # rung in the write's own transaction
    assert relay(store, RecordingQueue(), clock).ring() == 0
    assert relay(store, RecordingQueue(fail=True), clock).publish_claimed(["a"]) == 0
    assert store.rows["a"].published_at is None
    working = RecordingQueue()
    assert relay(store, working, clock).ring() == 1
    assert rung(working) == ["a"]


def test_a_claimed_doorbell_that_rings_is_not_rung_again_by_the_relay() -> None:
    store, queue, clock = MemoryOutboxStore(), RecordingQueue(), ManualClock(START)
    store.mark_changed(["a"], START, claimed=True)
    assert relay(store, queue, clock).publish_claimed(["a"]) == 1
    assert relay(store, queue, clock).ring() == 0
    assert rung(queue) == ["a"]


def test_processing_is_safe_to_repeat_and_keeps_a_change_that_arrives_meanwhile() -> None:
    store, clock = MemoryOutboxStore(), ManualClock(START)
    store.mark_changed(["w4"], START)
    seen: list[list[str]] = []

    def a_change_arrives_during_the_work(ids: Sequence[str]) -> None:
        seen.append(list(ids))
        if len(seen) == 1:
            store.mark_changed(["w4"], clock.now)

    processor = ChangeProcessor(store, clock, [a_change_arrives_during_the_work])
    assert processor.process(["w4", "w4"]) == 1
    assert store.rows["w4"].pending  # done only up to the change read before the work
    assert processor.process(["w4"]) == 1
    assert processor.process(["w4"]) == 0  # a duplicate doorbell is a no-op
    assert processor.process(["never-seen"]) == 0
    assert seen == [["w4"], ["w4"]]
    with store.outbox() as outbox:
        assert outbox.backlog() == (0, None)


def test_a_stale_doorbell_never_moves_done_back() -> None:
    store = MemoryOutboxStore()
    store.mark_changed(["a"], START)
    store.mark_changed(["a"], START)
    with store.outbox() as outbox:
        outbox.mark_done({"a": 2}, START)
        outbox.mark_done({"a": 1}, START)
    assert store.rows["a"].done_seq == 2


def test_work_that_fails_leaves_the_change_pending_for_the_next_doorbell() -> None:
    store, clock = MemoryOutboxStore(), ManualClock(START)
    store.mark_changed(["a"], START)

    def broken(_: Sequence[str]) -> None:
        raise RuntimeError("model crashed")

    with contextlib.suppress(RuntimeError):
        ChangeProcessor(store, clock, [broken]).process(["a"])
    assert store.rows["a"].pending
    assert ChangeProcessor(store, clock).process(["a"]) == 1


def test_the_backlog_counts_waiting_patients_since_the_oldest_change() -> None:
    store, clock = MemoryOutboxStore(), ManualClock(START)
    store.mark_changed(["a"], START)
    store.mark_changed(["b"], START + timedelta(minutes=5))
    ChangeProcessor(store, clock).process(["a"])
    with store.outbox() as outbox:
        assert outbox.backlog() == (1, START + timedelta(minutes=5))


def test_the_relay_sends_a_task_per_chunk_and_claims_a_batch_per_transaction() -> None:
    store, queue, clock = MemoryOutboxStore(), RecordingQueue(), ManualClock(START)
    store.mark_changed([f"p{i}" for i in range(5)], START)
    assert relay(store, queue, clock, batch=4, chunk=3).ring() == 5
    assert [args for _, args in queue.sent] == [[["p0", "p1", "p2"]], [["p3"]], [["p4"]]]
    assert store.transactions == 2


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
    store, queue, clock = MemoryOutboxStore(), GatedQueue(), ManualClock(START)
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
