"""The outbox ports (OutboxStore, ChangeOutbox) in memory: one ``patient_change`` row per patient.

Each method does what its query in service/adapters/postgres/queries.sql does (mark_patient_changed,
claim_changes_to_publish, claim_given_changes, pending_changes, mark_changes_done, release_changes, change_backlog);
a transaction that raises leaves the rows as they were. The SQL itself is tested in tests/integration.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.usecases.ports.outbox import ChangeOutbox, OutboxStore

__all__ = ["ChangeRow", "MemoryOutboxStore"]


@dataclass
class ChangeRow:
    """A ``patient_change`` row."""

    changed_seq: int
    changed_at: datetime
    done_seq: int = 0
    done_at: datetime | None = None
    published_at: datetime | None = None
    publish_count: int = 0

    @property
    def pending(self) -> bool:
        return self.changed_seq > self.done_seq


class MemoryOutboxStore:
    """The OutboxStore port over a dictionary of rows; tests read and set ``rows`` directly."""

    def __init__(self) -> None:
        self.rows: dict[str, ChangeRow] = {}
        self.seq = 0  # patient_change_seq
        self.transactions = 0
        self._lock = threading.Lock()

    def mark_changed(self, patient_ids: Iterable[str], now: datetime, claimed: bool = False) -> None:
        """What an ingest's mark_patients_changed commits (mark_patient_changed): a new sequence number each."""
        for patient in sorted(set(patient_ids)):
            self.seq += 1
            row = self.rows.get(patient)
            if row is None:
                row = self.rows[patient] = ChangeRow(self.seq, now)
            row.changed_seq, row.changed_at = self.seq, now
            # a new change re-opens the doorbell unless the write rings it itself
            row.published_at = now if claimed else None
            row.publish_count += 1 if claimed else 0

    @contextmanager
    def outbox(self) -> Iterator[ChangeOutbox]:
        with self._lock:
            self.transactions += 1
            working = copy.deepcopy(self.rows)
            yield _MemoryOutbox(working)
            self.rows = working


class _MemoryOutbox:
    def __init__(self, rows: dict[str, ChangeRow]) -> None:
        self._rows = rows

    def claim_to_publish(self, now: datetime, redeliver_after_s: float, limit: int) -> list[str]:
        lost_before = now - timedelta(seconds=redeliver_after_s)
        due = sorted(
            (r.changed_seq, p)
            for p, r in self._rows.items()
            if r.pending and (r.published_at is None or r.published_at < lost_before)
        )[:limit]
        return sorted(self._claim([p for _, p in due], now))

    def claim_given(self, patient_ids: Sequence[str], now: datetime) -> list[str]:
        given = {p for p in patient_ids if (r := self._rows.get(p)) and r.pending and r.published_at is None}
        return sorted(self._claim(given, now))

    def _claim(self, patient_ids: Iterable[str], now: datetime) -> list[str]:
        claimed = []
        for p in patient_ids:
            self._rows[p].published_at = now
            self._rows[p].publish_count += 1
            claimed.append(p)
        return claimed

    def pending(self, patient_ids: Sequence[str]) -> dict[str, int]:
        return {p: r.changed_seq for p in patient_ids if (r := self._rows.get(p)) and r.pending}

    def mark_done(self, done: Mapping[str, int], now: datetime) -> None:
        for p, seq in done.items():
            if (r := self._rows.get(p)) is not None:
                # greatest(): a stale doorbell never moves done_seq back, and a newer change stays pending
                r.done_seq, r.done_at = max(r.done_seq, seq), now

    def release(self, patient_ids: Sequence[str]) -> None:
        for p in patient_ids:
            if (r := self._rows.get(p)) is not None and r.pending:
                r.published_at = None

    def backlog(self) -> tuple[int, datetime | None]:
        waiting = [r.changed_at for r in self._rows.values() if r.pending]
        return len(waiting), min(waiting, default=None)


def _typed(store: MemoryOutboxStore) -> OutboxStore:
    return store  # mypy checks the fake against the port here
