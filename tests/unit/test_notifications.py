"""The notification digest's content (pure) and the webhook signature scheme (issue 18, item 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date

import pytest

from service.adapters.notify_webhook import sign, verify
from service.domain.notifications import (
    DigestAlert,
    DigestPatient,
    PatientData,
    Section,
    build_digest,
    initials,
    select_items,
)
from service.platform.config import Settings

DAY = date(2026, 6, 1)
ALERTS = [
    DigestAlert("a-overdue", "p1", "denosumab-overdue", date(2026, 5, 1), "Organization/north", "Doe, Jane Q.", "MRN1"),
    DigestAlert("a-due-soon", "p2", "denosumab-dose-due", date(2026, 6, 10), None, "Roe, Ann", "MRN2"),
    DigestAlert("a-due-later", "p3", "denosumab-dose-due", date(2026, 6, 30), None, "Poe, Eve", "MRN3"),
    DigestAlert("a-gap", "p4", "treatment-gap", date(2026, 4, 1), None, "Loe, Max", "MRN4"),
    DigestAlert("a-dxa", "p5", "bmd-assessment-gap", date(2026, 4, 1), None, "Moe, Sam", "MRN5"),
]
HIGH = [DigestPatient("p6", None, "Zoe, Kim", "MRN6")]


def test_the_digest_lists_new_high_risk_doses_due_within_14_days_or_overdue_and_treatment_gaps() -> None:
    items = select_items(ALERTS, HIGH, DAY)
    assert [(i.key, i.section) for i in items] == [
        ("high-risk/p6", Section.HIGH_RISK),
        ("a-overdue", Section.DENOSUMAB),
        ("a-due-soon", Section.DENOSUMAB),  # due in 9 days; a-due-later (29 days) waits
        ("a-gap", Section.TREATMENT_GAP),
    ]


def test_minimum_data_none_carries_counts_and_the_worklist_link_only() -> None:
    digest = build_digest(
        "CareTeam/x", "FLS", select_items(ALERTS, HIGH, DAY), DAY, PatientData.NONE, "https://r/worklist"
    )
    everything = digest.subject + digest.text + json.dumps(digest.payload)
    for secret in ("Doe", "Jane", "J.Q.D.", "MRN1", "p1", "p6", "MRN6", "a-overdue"):
        assert secret not in everything
    assert "New high-risk patients: 1" in digest.text
    assert "Denosumab doses due within 14 days or overdue: 2" in digest.text
    assert "https://r/worklist" in digest.text
    assert [s["count"] for s in digest.payload["sections"]] == [1, 2, 1]
    assert digest.keys == ("high-risk/p6", "a-overdue", "a-due-soon", "a-gap")


def test_minimum_data_initials_mrn_adds_initials_mrn_and_a_link_but_never_the_name() -> None:
    mode = PatientData.INITIALS_MRN
    digest = build_digest("CareTeam/x", "FLS", select_items(ALERTS, HIGH, DAY), DAY, mode, "https://r/worklist")
    assert "J.Q.D. MRN MRN1 (denosumab-overdue, due 2026-05-01) https://r/worklist/patients/p1" in digest.text
    assert "Doe" not in digest.text
    assert "Jane" not in json.dumps(digest.payload)
    entry = digest.payload["sections"][1]["items"][0]
    assert entry == {
        "initials": "J.Q.D.",
        "mrn": "MRN1",
        "alert": "denosumab-overdue",
        "due": "2026-05-01",
        "link": "https://r/worklist/patients/p1",
    }


def test_initials_of_the_worklist_name() -> None:
    assert initials("Doe, Jane Q.") == "J.Q.D."
    assert initials("Madonna") == "M."
    assert initials(None) == ""


def test_the_signature_verifies_and_refuses_a_changed_body_a_wrong_secret_and_a_replay() -> None:
    body = b'{"owner":"CareTeam/x"}'
    header = sign(b"s3cret", 1_780_000_000, body)
    assert header.startswith("t=1780000000,v1=")
    assert verify(b"s3cret", header, body, now=1_780_000_100)
    assert not verify(b"s3cret", header, body + b" ", now=1_780_000_100)
    assert not verify(b"other", header, body, now=1_780_000_100)
    assert not verify(b"s3cret", header, body, now=1_780_000_000 + 301)  # too old: a replay
    assert not verify(b"s3cret", "v1=abc", body, now=1_780_000_000)


def test_the_demo_says_where_the_digests_go(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.entrypoints.demo import _notification_targets

    for name in ("SMTP_HOST", "WEBHOOK_URL", "WEBHOOK_SECRET", "PATIENT_DATA", "TIME"):
        monkeypatch.delenv(f"REFRACTURE_NOTIFY_{name}", raising=False)
    assert _notification_targets().startswith("nowhere (")
    monkeypatch.setenv("REFRACTURE_NOTIFY_SMTP_HOST", "mail.hospital.test")
    monkeypatch.setenv("REFRACTURE_NOTIFY_WEBHOOK_URL", "https://hooks.hospital.test/refracture")
    monkeypatch.setenv("REFRACTURE_NOTIFY_WEBHOOK_SECRET", "x")
    assert _notification_targets() == (
        "e-mail via mail.hospital.test:587, webhook https://hooks.hospital.test/refracture, daily at 07:00, "
        "patient data none"
    )


def test_a_webhook_without_a_secret_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="REFRACTURE_NOTIFY_WEBHOOK_SECRET"):
        Settings(environment="development", notify_webhook_url="https://hooks.hospital.test/x")


def test_the_smtp_password_and_the_webhook_secret_never_print() -> None:
    settings = Settings(
        environment="development",
        notify_smtp_password="smtp-s3cret",
        notify_webhook_url="https://hooks.hospital.test/x",
        notify_webhook_secret="hook-s3cret",
    )
    for text in (repr(settings), str(settings), str(settings.model_dump()), settings.model_dump_json()):
        assert "smtp-s3cret" not in text
        assert "hook-s3cret" not in text


def test_beat_sends_the_digest_daily_at_the_configured_time() -> None:
    # workers.celery_app reads the settings at import: a fresh interpreter with the time set.
    probe = (
        "from workers.celery_app import app; e = app.conf.beat_schedule['daily-notify']; "
        "print(e['task'], sorted(e['schedule'].hour), sorted(e['schedule'].minute))"
    )
    env = {**os.environ, "REFRACTURE_NOTIFY_TIME": "06:45", "REFRACTURE_ENVIRONMENT": "development"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "refracture.notify [6] [45]"
