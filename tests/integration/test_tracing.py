"""One trace from the API request through the task to the EHR call, and the request id on the task's log lines:
in-process (every span in memory) and across real processes (a Celery worker exporting over OTLP/HTTP)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.adapters.queue import task_headers
from service.devtools.local_services import LocalServices
from service.usecases.task_names import TASK_PATIENTS_CHANGED
from tests.ehr_standin import RunningStandIn
from tests.integration.test_writeback import T0, build, patient
from tests.support.clock import ManualClock
from tests.support.http import FHIR_JSON
from tests.support.otlp import OtlpSink
from tests.support.parts import api_app, build_parts
from tests.support.paths import ARTIFACTS
from tests.support.processes import WorkerProcess
from tests.support.settings import make_settings, worker_env
from tests.support.tokens import AUTH
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FHIR = {**AUTH, **FHIR_JSON}


class CarryingQueue:
    """A doorbell that keeps what a real one would carry: the task, its arguments and its headers."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any], dict[str, str]]] = []

    def send(self, task_name: str, args: Sequence[Any]) -> None:
        self.sent.append((task_name, list(args), task_headers()))


def trace_of(traceparent: str) -> int:
    return int(traceparent.split("-")[1], 16)


def attribute_values(found: Sequence[ReadableSpan]) -> list[str]:
    return [str(v) for s in found for v in (s.attributes or {}).values()] + [s.name for s in found]


def test_one_trace_from_the_request_through_the_task_to_the_ehr(
    spans: InMemorySpanExporter, services: LocalServices, database_url: str, ehr: RunningStandIn
) -> None:
    queue = CarryingQueue()
    parts = build(services, database_url, ehr, ManualClock(T0))
    parts.relay._queue = queue  # the API's doorbell, carrying its headers
    # The worker's side: a task by the real name, run through Celery (its signals start the task's span).
    celery = Celery("tracing-test", broker="memory://")
    import workers.observability  # noqa: F401 - the worker's task hooks

    @celery.task(name=TASK_PATIENTS_CHANGED)
    def patients_changed(patient_ids: list[str]) -> int:
        return parts.changes.process(patient_ids)

    try:
        with TestClient(app=api_app(parts), raise_server_exceptions=False) as client:
            answer = client.post("/fhir", content=json.dumps(patient("t1")), headers=FHIR)
            assert answer.status_code == 200
            [(name, args, headers)] = queue.sent
            assert name == TASK_PATIENTS_CHANGED
            patients_changed.apply(args=args, headers=headers)  # while the app (and its pool) is up
    finally:
        parts.close()

    finished = spans.get_finished_spans()
    [server] = [s for s in finished if s.name == "POST /fhir"]
    [task] = [s for s in finished if s.name == f"task {TASK_PATIENTS_CHANGED}"]
    [write] = [s for s in finished if s.name == "EHR POST"]  # the transaction Bundle
    trace_id = server.context.trace_id
    assert {s.context.trace_id for s in (server, task, write)} == {trace_id}
    assert task.parent is not None
    assert task.parent.span_id == server.context.span_id
    assert write.parent is not None
    assert write.parent.span_id == task.context.span_id
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/fhir"
    assert server.attributes["http.response.status_code"] == 200
    # The EHR received the client span's context.
    [received] = [r for r in ehr.app.writes() if r.method == "POST"]
    assert trace_of(received.headers["traceparent"]) == trace_id
    assert received.headers["traceparent"].split("-")[2] == f"{write.context.span_id:016x}"
    # No patient in any span's name or attribute.
    assert not [v for v in attribute_values(finished) if "t1" in v.split("/") or v == "t1"]


@pytest.mark.worker
def test_a_real_worker_continues_the_trace_and_logs_the_request_id(
    spans: InMemorySpanExporter,
    services: LocalServices,
    database_url: str,
    ehr: RunningStandIn,
    request: pytest.FixtureRequest,
) -> None:
    sink = OtlpSink()
    settings = make_settings(services, database_url, ehr_base_url=ehr.base_url)
    env = {
        **worker_env(settings),
        "REFRACTURE_EHR_BASE_URL": ehr.base_url,
        "REFRACTURE_OTEL_ENDPOINT": sink.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "REFRACTURE_LOG_FORMAT": "json",
        "REFRACTURE_LOG_LEVEL": "INFO",
    }
    worker = WorkerProcess(env, ARTIFACTS / "logs" / f"worker-{request.node.name}.log")
    parts = build_parts(settings)  # the real doorbell: Celery over Redis
    try:
        worker.wait_ready()
        with TestClient(app=api_app(parts), raise_server_exceptions=False) as client:
            answer = client.post(
                "/fhir", content=json.dumps(patient("w1")), headers={**FHIR, "X-Request-Id": "req-w1-trace"}
            )
            assert answer.status_code == 200
        assert wait_for(lambda: any(r.method == "POST" for r in ehr.app.writes()), timeout_s=60)
        [server] = [s for s in spans.get_finished_spans() if s.name == "POST /fhir"]
        trace_id = server.context.trace_id
        [received] = [r for r in ehr.app.writes() if r.method == "POST"]
        assert trace_of(received.headers["traceparent"]) == trace_id
        assert wait_for(
            lambda: {"EHR POST", f"task {TASK_PATIENTS_CHANGED}"} <= {n for n, t, _ in sink.spans if t == trace_id}
        )
    finally:
        parts.close()
        worker.stop()
        sink.close()
    lines = [json.loads(line) for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
    handled = [line for line in lines if line["message"].startswith("handled changes of")]
    assert handled, "the task logged its work"
    assert {line.get("request_id") for line in handled} == {"req-w1-trace"}
    assert all("w1" not in line["message"] for line in lines)
