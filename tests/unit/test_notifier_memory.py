"""Notifier over the in-memory record and recording channels: a digest per owner and channel, once a day; retries
with backoff; failures picked up by the next run; a crashed run's messages after its lease; the dry run."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import pytest

from service.domain.backoff import RetryPolicy
from service.domain.notifications import DigestAlert, DigestPatient, PatientData, build_digest, select_items
from service.fhir.task import TaskRoute
from service.usecases.notify import UNROUTED, Notifier
from service.usecases.ports.notifications import (
    NotificationStore,
    PermanentSendError,
    Sender,
    TransientSendError,
)
from tests.support.clock import ManualClock
from tests.support.fakes import MemoryNotificationStore, RecordingSender

T0 = datetime(2026, 4, 7, 6, 30, tzinfo=UTC)
NORTH = "CareTeam/fls-north"
BONE = "Organization/bone-health"
ROUTES = [
    TaskRoute("*", "*", {"reference": BONE, "display": "Bone health"}),
    TaskRoute("denosumab-overdue", "north", {"reference": NORTH}),
]


class Rig:
    """A notifier over a fresh store, an e-mail and a webhook channel, a manual clock; waits kept, not slept."""

    def __init__(self, *, max_attempts: int = 3, mode: PatientData = PatientData.NONE) -> None:
        self.clock = ManualClock(T0)
        self.store = MemoryNotificationStore(lease_s=600)
        self.email = RecordingSender()
        self.webhook = RecordingSender()
        self.waits: list[float] = []
        store: NotificationStore = self.store
        senders: dict[str, Sender] = {"email": self.email, "webhook": self.webhook}
        self.notifier = Notifier(
            store,
            senders,
            self.clock,
            lambda now: now.date(),
            routes=ROUTES,
            organization_sites={"Organization/org-north": "north"},
            patient_data=mode,
            worklist_url="https://refracture.hospital.test/worklist/",
            policy=RetryPolicy(base_s=2.0, max_s=60.0),
            max_attempts=max_attempts,
            sleep=self.waits.append,
            random_fraction=lambda: 0.5,
        )

    def overdue(self, alert_id: str = "7", patient: str = "n1", site: str | None = "Organization/org-north") -> None:
        self.store.add_alert(
            DigestAlert(alert_id, patient, "denosumab-overdue", T0.date(), site, "Testperson, Ada Q.", "MRN-4711")
        )

    def records(self) -> list[tuple[str, str, str, int, str | None, list[str]]]:
        return [
            (m.owner, m.channel, m.status, m.attempts, m.last_error, m.alert_ids) for m in self.store.of_day(T0.date())
        ]


def test_a_digest_goes_to_each_owner_on_each_channel_and_a_second_run_sends_nothing_new() -> None:
    rig = Rig()
    rig.overdue("7", "n1")
    rig.store.add_alert(DigestAlert("8", "n2", "treatment-gap", date(2026, 1, 1), None, None, None))
    rig.store.add_alert(DigestAlert("9", "n3", "treatment-gap", date(2026, 1, 1), None, None, None), "snoozed")
    rig.store.add_alert(DigestAlert("10", "n4", "denosumab-dose-due", date(2026, 6, 1), None, None, None))
    first = rig.notifier.run()
    assert (first.sent, first.failed) == (4, 0)
    assert sorted(first.planned) == [
        (NORTH, "email", 1),
        (NORTH, "webhook", 1),
        (BONE, "email", 1),
        (BONE, "webhook", 1),
    ]
    assert (NORTH, "email", "sent", 1, None, ["7"]) in rig.records()
    assert (BONE, "webhook", "sent", 1, None, ["8"]) in rig.records()
    (north,) = [m for m in rig.email.sent if m.owner == NORTH]
    assert "Denosumab doses due within 14 days or overdue: 1" in north.body
    for withheld in ("Testperson", "A.Q.T.", "MRN-4711", "n1"):  # minimum necessary by default
        assert withheld not in north.body

    rows = rig.records()
    again = rig.notifier.run()
    assert (again.sent, again.planned) == (0, [])
    assert (len(rig.email.sent), len(rig.webhook.sent)) == (2, 2)
    assert rig.records() == rows


def test_a_new_alert_later_that_day_is_a_new_message_with_only_itself() -> None:
    rig = Rig()
    rig.overdue("7", "n1")
    rig.notifier.run()
    rig.overdue("11", "n5")
    rig.clock.now += timedelta(hours=3)
    outcome = rig.notifier.run()
    assert outcome.planned == [(NORTH, "email", 1), (NORTH, "webhook", 1)]
    assert [m.alert_ids for m in rig.email.sent] == [["7"], ["11"]]


def test_a_high_risk_patient_is_announced_once_ever_and_alerts_again_the_next_day() -> None:
    rig = Rig()
    rig.overdue("7", "n1")
    rig.store.add_high_risk(DigestPatient("n1", "Organization/org-north", None, None))
    rig.notifier.run()
    assert sorted(m.alert_ids[0] for m in rig.email.sent) == ["7", "high-risk/n1"]
    rig.clock.now += timedelta(days=1)
    rig.notifier.run()
    assert [m.alert_ids for m in rig.email.sent[2:]] == [["7"]]


def test_unrouted_items_and_channels_that_do_not_reach_an_owner() -> None:
    rig = Rig()
    rig.notifier._routes = []
    rig.webhook.owners = {NORTH}
    rig.overdue("7", "n1")
    outcome = rig.notifier.run()
    assert outcome.planned == [(UNROUTED, "email", 1)]
    assert rig.webhook.tries == 0


def test_initials_and_mrn_when_configured() -> None:
    rig = Rig(mode=PatientData.INITIALS_MRN)
    rig.overdue("7", "n2")
    rig.notifier.run()
    (north,) = [m for m in rig.email.sent if m.owner == NORTH]
    assert "A.Q.T. MRN MRN-4711 (denosumab-overdue" in north.body
    assert "https://refracture.hospital.test/worklist/patients/n2" in north.body
    assert "Testperson" not in north.body


def test_transient_failures_are_retried_with_backoff_and_recorded() -> None:
    rig = Rig(max_attempts=3)
    rig.overdue()
    rig.email.fail([TransientSendError("smtp 451"), TransientSendError("smtp 451")])
    rig.webhook.fail([TransientSendError("http 503"), TransientSendError("http 429", retry_after=30.0)])
    outcome = rig.notifier.run()
    assert (outcome.sent, outcome.failed) == (2, 0)
    assert {(r[1], r[2], r[3], r[4]) for r in rig.records()} == {
        ("email", "sent", 3, None),
        ("webhook", "sent", 3, None),
    }
    # Full jitter at half the ceiling (4 s after the first failure, 8 s after the second), a Retry-After as the floor.
    assert rig.waits == [2.0, 4.0, 2.0, 30.0]
    assert all(rig.store.leased_until(m.id) is None for m in rig.store.of_day(T0.date()))


def test_a_channel_down_fails_after_the_tries_and_the_next_run_sends_it(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(max_attempts=2)
    rig.overdue()
    rig.email.fail([TransientSendError("smtp ConnectionRefusedError")] * 2)
    with caplog.at_level(logging.WARNING):
        first = rig.notifier.run()
    assert (first.sent, first.failed) == (1, 1)
    assert (NORTH, "email", "failed", 2, "smtp ConnectionRefusedError", ["7"]) in rig.records()
    (line,) = [r for r in caplog.records if r.getMessage() == "notification not sent"]
    assert line.fields == {  # type: ignore[attr-defined]
        "notification": 1,
        "channel": "email",
        "items": 1,
        "attempts": 2,
        "reason": "smtp ConnectionRefusedError",
    }
    # Back up: the next run the same day sends the failed message as it was built, once; its tries go on counting.
    again = rig.notifier.run()
    assert (again.sent, again.failed, again.planned) == (1, 0, [])
    assert (NORTH, "email", "sent", 3, None, ["7"]) in rig.records()
    assert rig.notifier.run().sent == 0
    assert len(rig.email.sent) == 1


def test_a_permanent_failure_is_not_retried_in_the_run() -> None:
    rig = Rig(max_attempts=5)
    rig.overdue()
    rig.email.fail([PermanentSendError("smtp 550")])
    outcome = rig.notifier.run()
    assert (outcome.sent, outcome.failed) == (1, 1)
    assert (rig.email.tries, rig.waits) == (1, [])
    assert (NORTH, "email", "failed", 1, "smtp 550", ["7"]) in rig.records()


def test_a_crash_between_claim_and_send_sends_again_after_the_lease_never_loses_it() -> None:
    rig = Rig()
    rig.overdue()
    # A run that recorded its message as pending and died before sending it.
    items = select_items(rig.store.candidates().alerts, [], T0.date())
    digest = build_digest(NORTH, NORTH, items, T0.date(), PatientData.NONE, "https://refracture.hospital.test/worklist")
    assert rig.store.claim("email", digest, T0) is not None
    rig.webhook.owners = set()
    # Another run while the crashed one's lease holds (it may only be slow): nothing is sent, nothing new claimed.
    assert (rig.notifier.run().sent, rig.email.sent) == (0, [])
    rig.clock.now += timedelta(minutes=11)
    outcome = rig.notifier.run()
    assert outcome.sent == 1
    assert rig.records() == [(NORTH, "email", "sent", 1, None, ["7"])]


def test_dry_run_says_what_would_go_and_sends_nothing() -> None:
    rig = Rig()
    rig.overdue()
    outcome = rig.notifier.run(dry_run=True)
    assert (NORTH, "email", 1) in outcome.planned
    assert (NORTH, "webhook", 1) in outcome.planned
    assert (rig.email.sent, rig.webhook.sent, rig.records()) == ([], [], [])
