"""The record of notification digests, and the channels that send them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from service.domain.notifications import Digest, DigestAlert, DigestPatient


class TransientSendError(Exception):
    """A failure worth retrying (a connection refused or dropped, SMTP 4xx, HTTP 5xx/429/timeouts)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentSendError(Exception):
    """A failure a retry would repeat (SMTP 5xx, HTTP 4xx): recorded as failed at once."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StoredNotification:
    """A message of the record."""

    id: int
    owner: str
    channel: str
    day: date
    alert_ids: list[str]
    status: str  # pending | sent | failed
    attempts: int
    last_error: str | None
    subject: str
    body: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Candidates:
    """What today's digests may list, before routing."""

    alerts: list[DigestAlert]
    high_risk: list[DigestPatient]


class NotificationStore(Protocol):
    """The record of digests sent (migration 0021)."""

    def candidates(self) -> Candidates:
        """Active alerts of the digest's types and patients in the high band, with their Organization as site."""
        ...

    def recorded(self, owner: str, channel: str, day: date, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` are recorded for the owner and channel on ``day`` (high-risk patients: on any day)."""
        ...

    def claim(self, channel: str, digest: Digest, now: datetime) -> StoredNotification | None:
        """Record ``digest`` as pending with its items, unless another run recorded one of them meanwhile (None)."""
        ...

    def take_unsent(self, day: date, now: datetime) -> list[StoredNotification]:
        """The day's messages still pending or failed and held by no other run, oldest first, held for this run
        (a lease: a crashed run's messages are taken again once it ends)."""
        ...

    def mark(
        self, notification_id: int, status: str, attempts: int, last_error: str | None, now: datetime, *, final: bool
    ) -> None:
        """Record the outcome of a try; ``final`` releases the message's lease (sent, or given up for this run)."""
        ...

    def of_day(self, day: date) -> list[StoredNotification]:
        """The day's messages."""
        ...


class Sender(Protocol):
    """A channel: sends one message to an owner's recipients, raising Transient/PermanentSendError on failure."""

    def send(self, message: StoredNotification) -> None: ...

    def reaches(self, owner: str) -> bool:
        """Whether this channel has somewhere to send the owner's digest."""
        ...
