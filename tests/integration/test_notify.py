"""The daily notification digest (issue 18, item 2): a real SMTP sink (aiosmtpd) and a webhook server in a thread.

Done when: a digest arrives in the SMTP sink and at the webhook with a valid signature; sending twice sends nothing
new. Also the minimum-data modes, retries on a failing sink, a crash between send and record, and --dry-run.
"""

from __future__ import annotations

import contextlib
import email
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from service.adapters.notify_webhook import SIGNATURE_HEADER, verify
from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from tests.integration.test_writeback import T0, build, patient, post
from tests.support.clock import ManualClock
from tests.support.parts import api_app
from tests.support.servers import HandlerServer, QuietHandler
from tests.support.tokens import AUTH

pytestmark = pytest.mark.integration

SECRET = "webhook-test-secret"
ROUTES = {
    "routes": [
        {"alert": "*", "site": "*", "owner": {"reference": "Organization/bone-health", "display": "Bone health"}},
        {"alert": "denosumab-overdue", "site": "north", "owner": {"reference": "CareTeam/fls-north"}},
    ]
}
RECIPIENTS = {"CareTeam/fls-north": ["fls-north@hospital.test"], "Organization/bone-health": ["bone@hospital.test"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sink:
    """aiosmtpd's handler: keeps each message; answers 451 (try later) while ``refuse`` is above zero."""

    messages: list[tuple[list[str], Message]] = field(default_factory=list)
    refuse: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        del server, session
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 try again later"
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


@dataclass
class Hook:
    """The webhook receiver's state: what arrived, and the statuses to answer with first."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


def hook_server(hook: Hook) -> HandlerServer:
    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = hook.statuses.pop(0) if hook.statuses else 200
            if status == 200:
                hook.received.append((dict(self.headers.items()), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return HandlerServer(Handler)


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
def hook() -> Iterator[tuple[Hook, str]]:
    state = Hook()
    server = hook_server(state)
    yield state, f"{server.url}/hooks/refracture"
    server.close()


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as exits:
        yield exits


CLIENTS: dict[int, TestClient] = {}


@dataclass
class Rig:
    """What a notification test runs against: the SMTP sink and the webhook receiver, and parts made for them."""

    stack: contextlib.ExitStack
    services: LocalServices
    database_url: str
    tmp_path: Path
    mails: Sink
    smtp_port: int
    received: Hook
    hook_url: str

    def make(self, clock: ManualClock, smtp_port: int | None = None, **settings: Any) -> Parts:
        """Parts that send to the sink (or to ``smtp_port``) and the receiver, served by a client until the end."""
        port = self.smtp_port if smtp_port is None else smtp_port
        return make(self.stack, self.services, self.database_url, self.tmp_path, port, self.hook_url, clock, **settings)


@pytest.fixture
def rig(
    stack: contextlib.ExitStack,
    services: LocalServices,
    database_url: str,
    tmp_path: Path,
    sink: tuple[Sink, int],
    hook: tuple[Hook, str],
) -> Rig:
    (mails, smtp_port), (received, hook_url) = sink, hook
    return Rig(stack, services, database_url, tmp_path, mails, smtp_port, received, hook_url)


def make(
    stack: contextlib.ExitStack,
    services: LocalServices,
    database_url: str,
    tmp_path: Path,
    smtp_port: int,
    hook_url: str,
    clock: ManualClock,
    **settings: Any,
) -> Parts:
    routes = tmp_path / "task-routes.json"
    routes.write_text(json.dumps(ROUTES))
    recipients = tmp_path / "recipients.json"
    recipients.write_text(json.dumps(RECIPIENTS))
    parts = build(
        services,
        database_url,
        None,
        clock,
        task_routing_file=routes,
        sites={"north": ["Organization/org-north"]},
        cds_base_url="https://refracture.hospital.test",
        notify_smtp_host="127.0.0.1",
        notify_smtp_port=smtp_port,
        notify_smtp_starttls=False,
        notify_from="refracture@hospital.test",
        notify_recipients_file=recipients,
        notify_webhook_url=hook_url,
        notify_webhook_secret=SECRET,
        **settings,
    )
    parts.digests._sleep = lambda seconds: None  # the backoff's waits, not its count
    # The app's lifespan closes the parts when the client exits (at the test's end).
    client = stack.enter_context(TestClient(headers=AUTH, app=api_app(parts), raise_server_exceptions=False))
    CLIENTS[id(parts)] = client
    return parts


def north_patient(pid: str, mrn: str) -> dict[str, Any]:
    body = patient(pid)
    resource = body["entry"][0]["resource"]
    resource["managingOrganization"] = {"reference": "Organization/org-north"}
    resource["name"] = [{"use": "official", "family": "Testperson", "given": ["Ada", "Q."]}]
    resource["identifier"] = [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": mrn}]
    return body


def ingest(parts: Parts, pid: str, mrn: str) -> None:
    post(parts, CLIENTS[id(parts)], north_patient(pid, mrn), pid)


def records(database_url: str) -> list[tuple[str, str, str, int, str | None, list[str]]]:
    with psycopg.connect(database_url) as conn:
        return [
            (r[0], r[1], r[2], r[3], r[4], list(r[5]))
            for r in conn.execute(
                "SELECT owner, channel, status, attempts, last_error, alert_ids FROM notification ORDER BY id"
            )
        ]


def overdue_alert_id(database_url: str, pid: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT id::text FROM alert WHERE patient_id = %s AND code = 'denosumab-overdue'", (pid,)
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_a_digest_arrives_by_email_and_signed_webhook_and_sending_twice_sends_nothing_new(
    rig: Rig,
    database_url: str,
) -> None:
    mails, received = rig.mails, rig.received
    clock = ManualClock(T0)
    parts = rig.make(clock)
    ingest(parts, "n1", "MRN-4711")
    first = parts.digests.run()
    assert first.failed == 0
    assert first.sent >= 2

    # E-mail: the overdue dose at a north patient goes to FLS North's address (the Tasks' routing table).
    to_north = [m for rcpt, m in mails.messages if rcpt == ["fls-north@hospital.test"]]
    assert len(to_north) == 1
    text = to_north[0].get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "Denosumab doses due within 14 days or overdue: 1" in text
    assert "https://refracture.hospital.test/worklist" in text
    # Minimum necessary, by default: no name, initials, MRN or patient id.
    for withheld in ("Testperson", "Ada", "A.Q.T.", "MRN-4711", "n1"):
        assert withheld not in text
    assert to_north[0]["From"] == "refracture@hospital.test"

    # Webhook: one POST per owner, each with a signature the receiver can verify.
    assert received.received
    for headers, body in received.received:
        assert verify(SECRET.encode(), headers[SIGNATURE_HEADER], body, now=int(clock().timestamp()))
    bodies = [json.loads(body) for _, body in received.received]
    north = next(b for b in bodies if b["owner"] == "CareTeam/fls-north")
    assert north["day"] == T0.date().isoformat()
    assert north["sections"][1]["count"] == 1
    assert north["patient_data"] == "none"

    alert_id = overdue_alert_id(database_url, "n1")
    rows = records(database_url)
    assert ("CareTeam/fls-north", "email", "sent", 1, None, [alert_id]) in rows
    assert ("CareTeam/fls-north", "webhook", "sent", 1, None, [alert_id]) in rows

    # The same day again (beat twice, or an operator's `refracture notify`): nothing new is sent.
    mails_before, hooks_before = len(mails.messages), len(received.received)
    again = parts.digests.run()
    assert (again.sent, again.planned) == (0, [])
    assert (len(mails.messages), len(received.received)) == (mails_before, hooks_before)
    assert records(database_url) == rows


def test_initials_and_mrn_when_configured(
    rig: Rig,
    database_url: str,
) -> None:
    mails, received = rig.mails, rig.received
    parts = rig.make(ManualClock(T0), notify_patient_data="initials-mrn")
    ingest(parts, "n2", "MRN-0815")
    parts.digests.run()
    (north,) = [m for rcpt, m in mails.messages if rcpt == ["fls-north@hospital.test"]]
    text = north.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "A.Q.T. MRN MRN-0815 (denosumab-overdue" in text
    assert "https://refracture.hospital.test/worklist/patients/n2" in text
    assert "Testperson" not in text
    body = next(json.loads(b) for _, b in received.received if json.loads(b)["owner"] == "CareTeam/fls-north")
    assert body["sections"][1]["items"][0]["mrn"] == "MRN-0815"
    assert "Testperson" not in json.dumps(body)


def test_transient_failures_are_retried_with_backoff_and_recorded(
    rig: Rig,
    database_url: str,
) -> None:
    mails, received = rig.mails, rig.received
    parts = rig.make(ManualClock(T0), notify_max_attempts=3)
    waits: list[float] = []
    parts.digests._sleep = waits.append
    ingest(parts, "n3", "MRN-1")
    mails.refuse = 2  # the SMTP server says 451 twice
    received.statuses = [503, 503]  # the webhook answers 503 twice
    outcome = parts.digests.run()
    assert outcome.failed == 0
    rows = {(r[0], r[1]): r for r in records(database_url)}
    assert rows["CareTeam/fls-north", "email"][2:5] == ("sent", 3, None)
    assert rows["CareTeam/fls-north", "webhook"][2:5] == ("sent", 3, None)
    assert len(waits) == 4
    assert all(0.5 <= w <= 60.0 for w in waits)


def test_a_sink_down_fails_after_the_tries_and_the_next_run_sends_it(
    rig: Rig,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mails, _received = rig.mails, rig.received
    parts = rig.make(ManualClock(T0), smtp_port=free_port(), notify_max_attempts=2)  # nothing listens there
    ingest(parts, "n4", "MRN-2")
    first = parts.digests.run()
    assert first.failed >= 1
    failed = [r for r in records(database_url) if r[1] == "email"]
    assert failed
    assert {(r[2], r[3], r[4]) for r in failed} == {("failed", 2, "smtp ConnectionRefusedError")}
    assert "MRN-2" not in str(failed)
    # The log says which row failed and why, in words with no patient, address or server reply in them.
    (line, *_) = [r for r in caplog.records if r.getMessage() == "notification not sent"]
    assert line.fields == {  # type: ignore[attr-defined]
        "notification": line.fields["notification"],  # type: ignore[attr-defined]
        "channel": "email",
        "items": line.fields["items"],  # type: ignore[attr-defined]
        "attempts": 2,
        "reason": "smtp ConnectionRefusedError",
    }
    for record in caplog.records:
        assert "MRN-2" not in f"{record.getMessage()} {getattr(record, 'fields', '')}"
        assert "hospital.test" not in f"{record.getMessage()} {getattr(record, 'fields', '')}"
    # The relay is back: the next run (same day) sends the failed messages as they were built, once.
    parts = rig.make(ManualClock(T0), notify_max_attempts=2)
    again = parts.digests.run()
    assert again.failed == 0
    assert again.sent == len(failed)
    assert {r[2] for r in records(database_url)} == {"sent"}
    assert len(mails.messages) == len(failed)
    assert parts.digests.run().sent == 0


def test_a_crash_between_send_and_record_sends_again_never_loses_it(
    rig: Rig,
    database_url: str,
) -> None:
    mails, _received = rig.mails, rig.received
    clock = ManualClock(T0)
    parts = rig.make(clock)
    ingest(parts, "n5", "MRN-3")
    # A run that recorded its messages as pending and died before marking them (or before sending at all).
    notifier = parts.digests
    real = notifier._deliver
    notifier._deliver = lambda message, outcome: None  # type: ignore[method-assign]
    notifier.run()
    assert {r[2] for r in records(database_url)} == {"pending"}
    assert not mails.messages
    notifier._deliver = real  # type: ignore[method-assign]
    # Another run while the crashed one's lease holds (it may only be slow): it sends nothing.
    assert (notifier.run().sent, mails.messages) == (0, [])
    clock.now += timedelta(minutes=11)  # the lease (REFRACTURE_NOTIFY_LEASE_S, 10 minutes) is over
    outcome = notifier.run()
    assert outcome.sent == len(records(database_url))
    assert {r[2] for r in records(database_url)} == {"sent"}


def test_dry_run_says_what_would_go_and_sends_nothing(
    rig: Rig,
    database_url: str,
) -> None:
    mails, received = rig.mails, rig.received
    parts = rig.make(ManualClock(T0))
    ingest(parts, "n6", "MRN-4")
    outcome = parts.digests.run(dry_run=True)
    assert ("CareTeam/fls-north", "email", 1) in outcome.planned
    assert ("CareTeam/fls-north", "webhook", 1) in outcome.planned
    assert (mails.messages, received.received, records(database_url)) == ([], [], [])


def test_the_command_says_what_would_go_then_sends_once(
    rig: Rig,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mails, received = rig.mails, rig.received
    parts = rig.make(ManualClock(T0))
    ingest(parts, "n7", "MRN-5")

    from service.entrypoints.cli import main
    from service.platform.config import get_settings

    settings = {
        "DATABASE_URL": database_url,
        "REDIS_URL": rig.services.redis_url,
        "TASK_ROUTING_FILE": str(rig.tmp_path / "task-routes.json"),
        "SITES": json.dumps({"north": ["Organization/org-north"]}),
        "NOTIFY_SMTP_HOST": "127.0.0.1",
        "NOTIFY_SMTP_PORT": str(rig.smtp_port),
        "NOTIFY_SMTP_STARTTLS": "false",
        "NOTIFY_RECIPIENTS_FILE": str(rig.tmp_path / "recipients.json"),
        "NOTIFY_WEBHOOK_URL": rig.hook_url,
        "NOTIFY_WEBHOOK_SECRET": SECRET,
    }
    for name, value in settings.items():
        monkeypatch.setenv(f"REFRACTURE_{name}", value)
    get_settings.cache_clear()
    try:
        assert main(["notify", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "would send: email to CareTeam/fls-north, 1 item" in out
        assert "MRN-5" not in out
        assert (mails.messages, received.received) == ([], [])
        assert main(["notify"]) == 0
        assert "0 failed" in capsys.readouterr().out
        sent = (len(mails.messages), len(received.received))
        assert sent[0] >= 1
        assert sent[1] >= 1
        assert main(["notify"]) == 0  # the same day again: nothing new
        assert "notifications of" in capsys.readouterr().out
        assert (len(mails.messages), len(received.received)) == sent

    finally:
        get_settings.cache_clear()
