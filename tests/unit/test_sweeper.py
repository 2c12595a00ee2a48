"""The Sweeper on in-memory ports (tests/support/fakes/): it takes the patients whose next check date has come (and
no others), catches up a missed day, can take everyone, and runs batches side by side without missing anyone.
tests/integration/test_alerts.py runs the same on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from unittest.mock import patch

import pytest

from service.usecases.ports.alerts import AlertStore
from service.usecases.sweep import Sweeper
from tests.support.clinic import T0, Clinic, local_day
from tests.support.fakes import MemoryStore
from tests.support.records import denosumab_patient

DUE = (T0 - timedelta(days=170)).date()  # a denosumab dose due soon; overdue two months later


def test_time_alone_makes_alerts_fire_and_a_second_sweep_finds_nothing() -> None:
    clinic = Clinic()
    clinic.process(denosumab_patient("s1", DUE))
    assert clinic.store.alerts("s1") == {"denosumab-dose-due": "open"}
    next_check = clinic.store.tables.schedules["s1"]
    assert next_check is not None
    assert next_check > local_day(T0)
    assert clinic.sweeper.sweep().patients == 0  # nothing due yet: the index says when
    clinic.clock.now = T0 + timedelta(days=60)
    swept = clinic.sweeper.sweep()
    assert (swept.patients, swept.opened, swept.resolved, swept.care_plans) == (1, 1, 1, 1)
    assert clinic.store.alerts("s1") == {"denosumab-dose-due": "resolved", "denosumab-overdue": "open"}
    events = len(clinic.store.tables.alert_events)
    assert clinic.sweeper.sweep().patients == 0  # safe to run twice
    assert len(clinic.store.tables.alert_events) == events
    # A missed day is caught up: the next threshold passed while no sweep ran.
    clinic.clock.now = T0 + timedelta(days=160)
    assert clinic.sweeper.sweep().patients == 1
    assert clinic.store.alerts("s1")["denosumab-stopped-without-follow-on"] == "open"


def test_the_sweep_takes_only_due_patients() -> None:
    clinic = Clinic()
    clinic.process(denosumab_patient("s1", DUE))
    clinic.process(denosumab_patient("s2", (T0 - timedelta(days=20)).date()))  # a dose given lately
    clinic.clock.now = T0 + timedelta(days=60)
    assert clinic.store.due_for_sweep(local_day(clinic.clock.now), "", 10) == ["s1"]
    with patch.object(clinic.pipeline, "run", wraps=clinic.pipeline.run) as run:
        assert clinic.sweeper.sweep().patients == 1
    assert [c.args[0] for c in run.call_args_list] == [["s1"]]


def test_sweep_everyone_takes_patients_never_evaluated() -> None:
    clinic = Clinic()
    clinic.ingest(denosumab_patient("s3", (T0 - timedelta(days=240)).date()))
    assert clinic.sweeper.sweep().patients == 0  # never evaluated, so not in the index yet
    outcome = clinic.sweeper.sweep(everyone=True)
    assert (outcome.patients, outcome.opened) == (1, 1)
    assert clinic.store.alerts("s3") == {"denosumab-overdue": "open"}


def test_batches_side_by_side_miss_no_one() -> None:
    clinic = Clinic(sweep_batch_size=1, sweep_workers=2)
    pids = [f"sb{n}" for n in range(5)]
    for pid in pids:
        clinic.process(denosumab_patient(pid, DUE))
    clinic.clock.now = T0 + timedelta(days=60)
    swept = clinic.sweeper.sweep()
    assert (swept.patients, swept.opened, swept.resolved, swept.care_plans) == (5, 5, 5, 5)
    assert clinic.store.calls["patient_session"] == 5 + 5  # one per batch, after one per ingest
    for pid in pids:
        assert clinic.store.alerts(pid) == {"denosumab-dose-due": "resolved", "denosumab-overdue": "open"}
    assert clinic.sweeper.sweep().patients == 0


def test_a_failed_batch_stops_the_sweep_and_the_next_one_takes_up_what_is_due() -> None:
    clinic = Clinic(sweep_batch_size=1, sweep_workers=1)
    for pid in ("f1", "f2"):
        clinic.process(denosumab_patient(pid, DUE))
    clinic.clock.now = T0 + timedelta(days=60)
    with (
        patch.object(clinic.evaluator, "evaluate_in", side_effect=RuntimeError("connection lost")),
        pytest.raises(RuntimeError),
    ):
        clinic.sweeper.sweep()
    assert clinic.store.alerts("f1") == {"denosumab-dose-due": "open"}  # rolled back
    assert clinic.sweeper.sweep().patients == 2
    assert clinic.store.alerts("f2") == {"denosumab-dose-due": "resolved", "denosumab-overdue": "open"}


def test_the_store_is_the_port() -> None:
    clinic = Clinic()
    store: AlertStore = MemoryStore()
    assert Sweeper(store, clinic.pipeline, clinic.clock, local_day).sweep().patients == 0
