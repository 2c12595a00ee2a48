"""The in-memory fakes (tests/support/fakes/) answer as the PostgreSQL adapters do: one script of ingests, pipeline
runs, sweeps, people's actions and deliveries through faults, run on each, must see the same thing through every port
the use cases read. This is what lets the unit tests of the use cases stand in for PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.adapters.postgres.pool import make_pool
from service.domain.alert_lifecycle import ActionRequest, AlertAction
from service.domain.facts import Fact
from service.domain.latest_only import AsOf
from service.fhir.bundle import plan_bundle
from service.platform.config import Settings
from service.usecases.alert_actions import AlertActions
from tests.support.clinic import T0, ClinicStore, local_day, wire
from tests.support.clock import ManualClock
from tests.support.fakes import EhrFault, FakeEhr, MemoryStore, RecordingMetrics
from tests.support.postgres_clinic import PostgresClinic
from tests.support.records import ZOLEDRONIC, administration, bundle, denosumab_patient, gap_patient, patient

pytestmark = pytest.mark.integration

PATIENTS = ["p1", "p2", "p3", "p4", "p5"]
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture
def postgres(database_url: str) -> Iterator[PostgresClinic]:
    pool = make_pool(Settings(database_url=database_url, database_pool_max=2, environment="test"))
    try:
        yield PostgresClinic(pool)
    finally:
        pool.close()


def observe(store: ClinicStore, now: datetime) -> dict[str, Any]:
    """Everything the use cases can read back, in an order-free form."""
    with store.patient_session() as session:
        session.lock_patients(PATIENTS)
        facts = session.facts_for_assessment(PATIENTS, AsOf.at(now, local_day(now)))
        alerts = session.alerts_of(PATIENTS, EPOCH)
        seen: dict[str, Any] = {
            "facts": {p: sorted(fs, key=_fact_key) for p, fs in facts.items() if fs},
            "coverage": {p: c for p, c in session.coverage_of(PATIENTS).items() if c},
            "latest": session.latest_assessments(PATIENTS),
            "alerts": {p: sorted(a, key=lambda x: (x.opened_at, x.code)) for p, a in alerts.items() if a},
            "history": {a.id: session.alert_history(a.id) for al in alerts.values() for a in al},
            "dismissed": session.dismissed_episodes(PATIENTS),
            "views": session.latest_assessment_views(PATIENTS),
            "plans": session.care_plans(PATIENTS),
            "tasks": session.tasks_of(PATIENTS),
            "organizations": session.patient_organizations(PATIENTS),
        }
    seen["states"] = {p: store.writeback_state(p) for p in PATIENTS}
    seen["counts"] = store.writeback_counts()
    seen["dead"] = store.dead_writebacks(10)
    seen["ehr_state"] = store.read_ehr_state()
    seen["due"] = store.due_for_sweep(local_day(now) + timedelta(days=800), "", 100)
    seen["everyone"] = store.all_patients("", 100)
    seen["rescore"] = store.patients_to_rescore("", 100)
    seen["risk"] = {p: [json.loads(r) for r in store.risk_assessments_of(p, 10)] for p in PATIENTS}
    plans = {p: store.care_plan_of(p) for p in PATIENTS}
    seen["care_plan_of"] = {p: json.loads(t) for p, t in plans.items() if t}
    read = {p: store.read_care_plan(plan.id) for p, plan in seen["plans"].items()}
    seen["read_care_plan"] = {p: (json.loads(t.body), t.version_id, t.last_updated) for p, t in read.items() if t}
    return seen


def _fact_key(fact: Fact) -> str:
    # A repr would name the datetimes' tzinfo, which differs (UTC, Etc/UTC) where the moments do not.
    return json.dumps([fact.source, fact.kind.value, fact.effective_date, fact.value_num, fact.attrs], default=str)


def script(store: ClinicStore) -> list[Any]:
    """The same story on either store; returns what was seen at each step."""
    clock = ManualClock(T0)
    ehr = FakeEhr()
    metrics = RecordingMetrics()
    cases = wire(store, clock, ehr, metrics, sweep_batch_size=2, sweep_workers=1)
    actions = AlertActions(store, cases.evaluator, clock, local_day)
    seen: list[Any] = []

    def ingest(resources: list[dict[str, Any]]) -> list[str]:
        return cases.ingestor.transaction(plan_bundle(bundle(resources), 100)).changed_patients

    ingest(denosumab_patient("p1", (T0 - timedelta(days=170)).date(), organization="Organization/north"))
    ingest(denosumab_patient("p2", (T0 - timedelta(days=240)).date()))
    ingest(gap_patient("p3", (T0 - timedelta(weeks=20)).date(), 25.0, (T0 - timedelta(days=30)).date()))
    ingest([patient("p4")])
    ingest(denosumab_patient("p5", (T0 - timedelta(days=240)).date()))
    seen.append(cases.pipeline.run(PATIENTS))
    ehr.faults = [EhrFault(status=503, retry_after=60), EhrFault(status=422, body={"resourceType": "OperationOutcome"})]
    seen.append(cases.deliverer.deliver_due())
    seen.append(observe(store, clock.now))
    clock.now += timedelta(minutes=5)
    seen.append(cases.deliverer.deliver_due())
    seen.append(store.replay_writebacks(None, clock.now))
    seen.append(cases.deliverer.deliver_due())
    # People act; time passes; a new dose; the sweep; a CarePlan edited at the EHR; deliveries again.
    p5 = store.due_for_sweep(local_day(clock.now) + timedelta(days=800), "", 100)
    with store.alert_session() as session:
        (alert,) = session.alerts_of(["p5"], EPOCH)["p5"]
    seen.append(p5)
    seen.append(actions.act(alert.id, ActionRequest(AlertAction.DISMISS, reason="moved away"), "dr.d"))
    clock.now = T0 + timedelta(days=60)
    ingest([administration("p2", "zol-1", local_day(clock.now), ZOLEDRONIC)])
    seen.append(cases.pipeline.run(["p2"]))
    seen.append(cases.sweeper.sweep())
    ehr.edit("CarePlan", lambda plan: plan.update(note=[{"text": "seen at the EHR"}]))
    seen.append(cases.deliverer.deliver_due())
    seen.append(cases.sweeper.sweep(everyone=True))
    seen.append(cases.deliverer.deliver_due())
    seen.append(observe(store, clock.now))
    # Jobs due at the same moment are claimed in no particular order: what was sent is compared, not its order.
    seen.append(sorted(json.dumps([r.method, r.path, r.body, r.headers], sort_keys=True) for r in ehr.requests))
    seen.append((metrics.alerts, metrics.writebacks))
    return seen


def test_the_fakes_see_what_postgresql_sees(postgres: PostgresClinic) -> None:
    memory = script(MemoryStore())
    stored = script(postgres)
    assert len(memory) == len(stored)
    for step, (ours, theirs) in enumerate(zip(memory, stored, strict=True)):
        if isinstance(ours, dict):
            for key in ours:
                assert ours[key] == theirs[key], f"step {step}: {key}"
        assert ours == theirs, f"step {step}"
