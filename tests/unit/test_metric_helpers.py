"""Metric helpers, the scrape-time gauges, the task hooks and the tracing switch, without servers."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from service.adapters import metrics
from service.adapters.queue import REQUEST_ID_HEADER, headers_of, task_headers
from service.domain.risk_model import model_version
from service.platform import tracing
from service.platform.logs import REQUEST_ID

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from an exposition (0 when absent: a counter not yet incremented)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


def scrape(*collectors: Any) -> str:
    return metrics.render(collectors).decode()


def test_resource_type_labels_are_bounded() -> None:
    assert metrics.resource_type_label("Observation") == "Observation"
    assert metrics.resource_type_label("Bundle") == "Bundle"
    assert metrics.resource_type_label("Zyxquorthian") == "other"  # a type in a URL is the caller's choice
    assert metrics.resource_type_label(None) == "other"


def test_the_port_counts_by_type_outcome_mode_and_code() -> None:
    port = metrics.PrometheusMetrics()
    before = scrape()
    port.count_ingested("Observation", "created", 3)
    port.count_ingested("Made-up", "refused")
    port.count_ingested("Patient", "sideways")  # an unknown outcome cannot add a label value
    port.count_ingested("Patient", "created", 0)
    port.count_writeback("transaction", "delivered")
    port.count_alerts("opened", {"denosumab-overdue": 2, "treatment-gap": 0})
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    ingested = "refracture_ingested_resources_total"
    assert delta(ingested, resource_type="Observation", outcome="created") == 3
    assert delta(ingested, resource_type="other", outcome="refused") == 1
    assert delta(ingested, resource_type="Patient", outcome="other") == 1
    assert delta(ingested, resource_type="Patient", outcome="created") == 0
    assert delta("refracture_writebacks_total", mode="transaction", outcome="delivered") == 1
    assert delta("refracture_alerts_total", code="denosumab-overdue", transition="opened") == 2
    # A zero adds nothing (other tests in this process may have opened treatment-gap alerts before).
    assert delta("refracture_alerts_total", code="treatment-gap", transition="opened") == 0


def test_requests_and_tasks_are_counted_and_timed() -> None:
    before = scrape()
    metrics.observe_request("GET", "/fhir/{resource_type}/{resource_id}", 200, 0.003)
    metrics.observe_task("refracture.relay", "SUCCESS", 0.2)
    metrics.observe_task("refracture.relay", "FAILURE", 0.02)
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    route = "/fhir/{resource_type}/{resource_id}"
    assert delta("refracture_http_requests_total", method="GET", route=route, status="200") == 1
    assert delta("refracture_http_request_duration_seconds_count", method="GET", route=route) == 1
    assert delta("refracture_http_request_duration_seconds_bucket", method="GET", route=route, le="0.005") == 1
    assert delta("refracture_tasks_total", task="refracture.relay", outcome="success") == 1
    assert delta("refracture_tasks_total", task="refracture.relay", outcome="failure") == 1
    assert delta("refracture_task_duration_seconds_count", task="refracture.relay") == 2


def test_state_is_read_at_scrape_time() -> None:
    reads: list[str] = []

    def backlog() -> tuple[int, datetime | None]:
        reads.append("outbox")
        return 4, NOW - timedelta(seconds=90)

    collector = metrics.StateCollector(
        backlog,
        lambda: {"jobs": {"pending": 2, "dead": 1, "delivered": 7}, "oldest_pending_at": NOW - timedelta(minutes=5)},
        lambda: {"refracture": 12},
        lambda: NOW,
    )
    assert reads == []  # registering reads nothing: only a scrape does
    text = scrape(collector)
    assert reads == ["outbox"]
    assert sample(text, "refracture_outbox_pending_changes") == 4
    assert sample(text, "refracture_outbox_oldest_change_age_seconds") == 90
    assert sample(text, "refracture_writeback_jobs", status="pending") == 2
    assert sample(text, "refracture_writeback_jobs", status="dead") == 1
    assert sample(text, "refracture_writeback_jobs", status="delivering") == 0
    assert sample(text, "refracture_writeback_oldest_pending_age_seconds") == 300
    assert sample(text, "refracture_queue_depth", queue="refracture") == 12
    assert sample(text, "refracture_model_info", version=model_version()) == 1
    assert sample(text, "refracture_state_up", source="database") == 1
    assert sample(text, "refracture_state_up", source="broker") == 1


def test_a_source_that_does_not_answer_is_reported_not_zeroed() -> None:
    def down() -> Any:
        raise ConnectionError("no")

    text = scrape(metrics.StateCollector(down, down, down, lambda: NOW))
    assert sample(text, "refracture_state_up", source="database") == 0
    assert sample(text, "refracture_state_up", source="broker") == 0
    assert "refracture_outbox_pending_changes" not in text
    assert "refracture_queue_depth" not in text
    assert sample(text, "refracture_model_info", version=model_version()) == 1


def test_nothing_is_waiting_means_age_zero() -> None:
    text = scrape(metrics.StateCollector(lambda: (0, None), lambda: {"jobs": {}}, dict, lambda: NOW))
    assert sample(text, "refracture_outbox_oldest_change_age_seconds") == 0
    assert sample(text, "refracture_writeback_oldest_pending_age_seconds") == 0


def test_tracing_is_off_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not tracing.configure_tracing(None, "refracture-test")
    assert not tracing.active()
    assert tracing.begin("anything") is None
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {}
    with tracing.span("anything") as nothing:
        assert nothing is None


def test_a_task_carries_the_request_id_and_the_trace(spans: InMemorySpanExporter) -> None:
    assert task_headers() == {}  # sent from no request and no span: nothing to carry
    token = REQUEST_ID.set("req-42")
    try:
        with tracing.span("POST /fhir", "server") as server:
            assert server is not None
            carried = task_headers()
    finally:
        REQUEST_ID.reset(token)
    assert carried[REQUEST_ID_HEADER] == "req-42"
    version, trace_id, _, _ = carried["traceparent"].split("-")
    assert version == "00"
    assert int(trace_id, 16) == server.trace_id


class _RequestWithAttributes:
    refracture_request_id = "req-a"
    traceparent = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    headers = None


class _EagerRequest:
    def __init__(self) -> None:
        self.headers = {"refracture_request_id": "req-b", "other": "x"}


def test_carried_headers_are_found_where_celery_puts_them() -> None:
    assert headers_of(_RequestWithAttributes()) == {
        REQUEST_ID_HEADER: "req-a",
        "traceparent": _RequestWithAttributes.traceparent,
    }
    assert headers_of(_EagerRequest()) == {REQUEST_ID_HEADER: "req-b"}
    assert headers_of(object()) == {}


def test_a_task_runs_with_its_request_id_and_span_and_is_counted(spans: InMemorySpanExporter) -> None:
    import workers.observability  # noqa: F401 - connects the signals, as the worker does

    app = Celery("observability-test", broker="memory://")
    seen: list[str | None] = []

    @app.task(name="refracture.test_probe")
    def probe() -> None:
        seen.append(REQUEST_ID.get())
        logging.getLogger("refracture.test").info("probe ran")

    with tracing.span("POST /fhir", "server") as server:
        assert server is not None
        token = REQUEST_ID.set("req-77")
        try:
            headers = task_headers()
        finally:
            REQUEST_ID.reset(token)
    before = scrape()
    probe.apply(headers=headers)
    after = scrape()
    assert seen == ["req-77"]
    assert REQUEST_ID.get() is None  # reset after the task
    ran = [s for s in spans.get_finished_spans() if s.name == "task refracture.test_probe"]
    assert len(ran) == 1
    assert ran[0].context.trace_id == server.trace_id
    assert ran[0].parent is not None
    count = "refracture_tasks_total"
    assert (
        sample(after, count, task="refracture.test_probe", outcome="success")
        - sample(before, count, task="refracture.test_probe", outcome="success")
        == 1
    )
