"""The patient-change outbox, for the relay and the change processor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol


class ChangeOutbox(Protocol):
    """The patient-change outbox, for the relay and the workers."""

    def claim_to_publish(self, now: datetime, redeliver_after_s: float, limit: int) -> list[str]:
        """Mark due rows as published and return their patient ids (committed by the caller's block)."""

    def claim_given(self, patient_ids: Sequence[str], now: datetime) -> list[str]:
        """Mark these patients' rows as published unless already rung; return those marked."""

    def pending(self, patient_ids: Sequence[str]) -> dict[str, int]:
        """The change sequence number of each patient with work not done."""

    def mark_done(self, done: Mapping[str, int], now: datetime) -> None:
        """Record that the work up to these sequence numbers is done."""

    def release(self, patient_ids: Sequence[str]) -> None:
        """Hand rows claimed in a write's transaction back to the relay: their doorbell could not be rung."""

    def backlog(self) -> tuple[int, datetime | None]:
        """How many patients wait, and since when the oldest."""


class OutboxStore(Protocol):
    """Transactions over the outbox."""

    def outbox(self) -> AbstractContextManager[ChangeOutbox]:
        """A transaction over the outbox."""
