"""The daily notification digest per owner, by e-mail and webhook (issue 18, item 2).

An item's owner is the Tasks' routing table's owner for its alert type at the patient's site (a new high-risk
patient routes as alert type ``high-risk``: a site row or the ``*``/``*`` row). Each message is recorded as pending
before it is sent and marked sent after (at least once: a crash between the send and the mark sends it again on the
next run); its items are recorded with it, so a second run on a day sends nothing new.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from service.domain.backoff import RetryPolicy
from service.domain.notifications import (
    DigestItem,
    PatientData,
    build_digest,
    select_items,
)
from service.fhir.task import TaskRoute, route_owner
from service.usecases.ports.clock import Clock
from service.usecases.ports.notifications import (
    NotificationStore,
    PermanentSendError,
    Sender,
    StoredNotification,
    TransientSendError,
)

__all__ = ["CHANNELS", "UNROUTED", "Notifier", "NotifyOutcome"]

log = logging.getLogger(__name__)

CHANNELS = ("email", "webhook")
# Items no route matches go to this owner (recipients configurable like any owner's).
UNROUTED = "*"


@dataclass(slots=True)
class NotifyOutcome:
    """What a run did (counts and owners only: no patient data)."""

    day: date
    planned: list[tuple[str, str, int]] = field(default_factory=list)  # (owner, channel, items) of new messages
    sent: int = 0
    failed: int = 0


class Notifier:
    """Builds each owner's digest and sends it on every channel that reaches the owner."""

    def __init__(
        self,
        store: NotificationStore,
        senders: Mapping[str, Sender],
        clock: Clock,
        today: Callable[[datetime], date],
        *,
        routes: Sequence[TaskRoute],
        organization_sites: Mapping[str, str],
        patient_data: PatientData,
        worklist_url: str,
        policy: RetryPolicy,
        max_attempts: int,
        sleep: Callable[[float], None] = time.sleep,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._senders = dict(senders)
        self._clock = clock
        self._today = today
        self._routes = list(routes)
        self._sites = dict(organization_sites)
        self._mode = patient_data
        self._worklist_url = worklist_url.rstrip("/")
        self._policy = policy
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._random = random_fraction

    def _site(self, organization: str | None) -> str | None:
        return self._sites.get(organization, organization.removeprefix("Organization/")) if organization else None

    def owners_items(self, day: date) -> list[tuple[str, str, list[DigestItem]]]:
        """Each owner's reference, display and items for ``day``, before anything already sent is taken out."""
        found = self._store.candidates()
        items = select_items(found.alerts, found.high_risk, day)
        by_owner: dict[str, list[DigestItem]] = {}
        displays: dict[str, str] = {}
        for item in items:
            owner = route_owner(self._routes, item.code, self._site(item.site))
            reference = owner.get("reference", UNROUTED) if owner else UNROUTED
            by_owner.setdefault(reference, []).append(item)
            displays.setdefault(reference, (owner or {}).get("display") or reference)
        return [(owner, displays[owner], owned) for owner, owned in sorted(by_owner.items())]

    def run(self, *, dry_run: bool = False) -> NotifyOutcome:
        """Send today's digests: first anything of today's still unsent (a crash, a failure), then what is new."""
        now = self._clock()
        day = self._today(now)
        outcome = NotifyOutcome(day)
        if not dry_run:
            for message in self._store.take_unsent(day, now):
                self._deliver(message, outcome)
        for owner, display, items in self.owners_items(day):
            for channel, sender in sorted(self._senders.items()):
                if not sender.reaches(owner):
                    continue
                already = self._store.recorded(owner, channel, day, [i.key for i in items])
                fresh = [i for i in items if i.key not in already]
                if not fresh:
                    continue
                outcome.planned.append((owner, channel, len(fresh)))
                if dry_run:
                    continue
                digest = build_digest(owner, display, fresh, day, self._mode, self._worklist_url)
                claimed = self._store.claim(channel, digest, self._clock())
                if claimed is not None:
                    self._deliver(claimed, outcome)
        return outcome

    def _deliver(self, message: StoredNotification, outcome: NotifyOutcome) -> None:
        sender = self._senders.get(message.channel)
        if sender is None:
            return
        attempts = message.attempts
        while True:
            attempts += 1
            try:
                sender.send(message)
            except TransientSendError as error:
                final = attempts - message.attempts >= self._max_attempts
                self._store.mark(message.id, "failed", attempts, error.reason, self._clock(), final=final)
                if final:
                    log.warning(
                        "notification not sent", extra={"fields": self._fields(message, attempts, error.reason)}
                    )
                    outcome.failed += 1
                    return
                self._sleep(self._policy.delay(attempts - message.attempts, error.retry_after, self._random))
                continue
            except PermanentSendError as error:
                self._store.mark(message.id, "failed", attempts, error.reason, self._clock(), final=True)
                log.warning("notification refused", extra={"fields": self._fields(message, attempts, error.reason)})
                outcome.failed += 1
                return
            self._store.mark(message.id, "sent", attempts, None, self._clock(), final=True)
            log.info("notification sent", extra={"fields": self._fields(message, attempts, None)})
            outcome.sent += 1
            return

    @staticmethod
    def _fields(message: StoredNotification, attempts: int, reason: str | None) -> dict[str, str | int | None]:
        # The row's id, channel and counts, the error's class or status: no patient, address or reply text.
        return {
            "notification": message.id,
            "channel": message.channel,
            "items": len(message.alert_ids),
            "attempts": attempts,
            "reason": reason,
        }
