"""The notification digests' record in memory, as notifications.sql keeps it (migration 0021), and a channel that
records what it was asked to send and fails when told to."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Final

from service.domain.alert_types import AlertType
from service.domain.notifications import Digest, DigestAlert, DigestPatient
from service.usecases.ports.notifications import Candidates, NotificationStore, Sender, StoredNotification

__all__ = ["MemoryNotificationStore", "RecordingSender"]

# digest_alerts: the active statuses (a snoozed alert is not announced) and the digest's alert types.
_ACTIVE: Final = frozenset({"open", "acknowledged", "assigned"})
_CODES: Final = frozenset(
    {
        AlertType.DENOSUMAB_DOSE_DUE.value,
        AlertType.DENOSUMAB_OVERDUE.value,
        AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON.value,
        AlertType.TREATMENT_GAP.value,
    }
)


@dataclass(slots=True)
class _Row:
    message: StoredNotification
    leased_until: datetime | None
    sent_at: datetime | None = None


def _alert_order(alert: DigestAlert) -> tuple[date, int, str]:
    # ORDER BY a.due_date, a.id: the id is a bigint in the table.
    return alert.due_date, int(alert.alert_id) if alert.alert_id.isdigit() else 0, alert.alert_id


class MemoryNotificationStore:
    """The candidates a test puts in (``add_alert``, ``add_high_risk``), the messages and their items, the leases."""

    def __init__(self, lease_s: float = 600.0) -> None:
        self._lease = timedelta(seconds=lease_s)
        self._alerts: list[tuple[DigestAlert, str]] = []
        self._high_risk: list[DigestPatient] = []
        self._rows: dict[int, _Row] = {}
        self.items: list[tuple[str, str, date, str, int]] = []  # owner, channel, day, item, notification id

    def add_alert(self, alert: DigestAlert, status: str = "open") -> None:
        """An alert in the alert table, with its patient's summary and Organization already joined in."""
        self._alerts.append((alert, status))

    def add_high_risk(self, patient: DigestPatient) -> None:
        """A patient whose summary is in the high band."""
        self._high_risk.append(patient)

    def candidates(self) -> Candidates:
        """See NotificationStore."""
        alerts = [a for a, status in self._alerts if status in _ACTIVE and a.code in _CODES]
        return Candidates(
            alerts=sorted(alerts, key=_alert_order), high_risk=sorted(self._high_risk, key=lambda p: p.patient_id)
        )

    def recorded(self, owner: str, channel: str, day: date, keys: Sequence[str]) -> set[str]:
        """See NotificationStore: the day's items, and high-risk patients among ``keys`` announced on any day."""
        return {
            item
            for o, c, d, item, _ in self.items
            if o == owner and c == channel and (d == day or (item.startswith("high-risk/") and item in keys))
        }

    def claim(self, channel: str, digest: Digest, now: datetime) -> StoredNotification | None:
        """See NotificationStore."""
        if self.recorded(digest.owner, channel, digest.day, digest.keys) & set(digest.keys):
            return None
        message = StoredNotification(
            id=len(self._rows) + 1,
            owner=digest.owner,
            channel=channel,
            day=digest.day,
            alert_ids=list(digest.keys),
            status="pending",
            attempts=0,
            last_error=None,
            subject=digest.subject,
            body=digest.text,
            payload=digest.payload,
        )
        self._rows[message.id] = _Row(message, now + self._lease)
        self.items += [(digest.owner, channel, digest.day, key, message.id) for key in digest.keys]
        return message

    def take_unsent(self, day: date, now: datetime) -> list[StoredNotification]:
        """See NotificationStore: not sent, no lease or one that has ended; leased anew."""
        taken = [
            row
            for _, row in sorted(self._rows.items())
            if row.message.day == day
            and row.message.status != "sent"
            and (row.leased_until is None or row.leased_until <= now)
        ]
        for row in taken:
            row.leased_until = now + self._lease
        return [row.message for row in taken]

    def mark(
        self, notification_id: int, status: str, attempts: int, last_error: str | None, now: datetime, *, final: bool
    ) -> None:
        """See NotificationStore."""
        row = self._rows.get(notification_id)
        if row is None:
            return  # an UPDATE that matches nothing
        row.message = dataclasses.replace(row.message, status=status, attempts=attempts, last_error=last_error)
        if status == "sent":
            row.sent_at = now
        if final:
            row.leased_until = None

    def of_day(self, day: date) -> list[StoredNotification]:
        """See NotificationStore."""
        return [row.message for _, row in sorted(self._rows.items()) if row.message.day == day]

    def leased_until(self, notification_id: int) -> datetime | None:
        """The message's lease, for tests of its release."""
        return self._rows[notification_id].leased_until


@dataclass
class RecordingSender:
    """A channel: keeps each message it sent; raises the queued ``failures`` first, one per try.

    ``owners`` are the owners it reaches (None: everyone)."""

    owners: set[str] | None = None
    failures: list[Exception] = field(default_factory=list)
    sent: list[StoredNotification] = field(default_factory=list)
    tries: int = 0

    def fail(self, errors: Iterable[Exception]) -> None:
        """Queue failures for the next tries."""
        self.failures.extend(errors)

    def send(self, message: StoredNotification) -> None:
        """See Sender."""
        self.tries += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)

    def reaches(self, owner: str) -> bool:
        """See Sender."""
        return self.owners is None or owner in self.owners


_store: type[NotificationStore] = MemoryNotificationStore
_sender: type[Sender] = RecordingSender
