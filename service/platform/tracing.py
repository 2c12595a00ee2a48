"""OpenTelemetry tracing, only when configured: a span per request, per task and per EHR call, joined by W3C
``traceparent`` across the API, the queue and the EHR.

Off unless REFRACTURE_OTEL_ENDPOINT (an OTLP/HTTP collector's base URL) or the standard
OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. Off costs one ``is None`` check per call,
and the OpenTelemetry packages (the ``otel`` extra) are imported only when it is on.

Spans carry route templates, task names, resource types, methods and statuses: never patient ids, names or URLs
with identifiers. refracture keeps its own TracerProvider rather than the global one, so nothing else in the
process starts sending spans because refracture does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "OpenSpan",
    "active",
    "begin",
    "configure_tracing",
    "flush",
    "inject",
    "install",
    "shutdown",
    "span",
]

log = logging.getLogger(__name__)

_STANDARD_ENDPOINTS: Final = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


@dataclass(slots=True)
class _Tracing:
    provider: Any  # opentelemetry.sdk.trace.TracerProvider
    tracer: Any
    propagator: Any
    kinds: Mapping[str, Any]


_state: _Tracing | None = None


def active() -> bool:
    """Whether spans are being made."""
    return _state is not None


def configure_tracing(endpoint: str | None, service_name: str) -> bool:
    """Turn tracing on when an endpoint is configured (and it is not on already).

    Args:
        endpoint: REFRACTURE_OTEL_ENDPOINT, the collector's base URL (``/v1/traces`` is added); when None, the
            standard OTEL_EXPORTER_OTLP_* variables are used if set.
        service_name: the resource's service.name, unless OTEL_SERVICE_NAME says otherwise.

    Returns:
        Whether this call turned tracing on (the caller then calls ``shutdown`` when it stops).
    """
    if _state is not None or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if not endpoint and not any(os.environ.get(name) for name in _STANDARD_ENDPOINTS):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    exporter = (
        OTLPSpanExporter(endpoint=endpoint.rstrip("/").removesuffix("/v1/traces") + "/v1/traces")
        if endpoint
        else OTLPSpanExporter()
    )
    install(BatchSpanProcessor(exporter), service_name)
    log.info("tracing: spans go to the OTLP collector")
    return True


def install(processor: Any, service_name: str = "refracture") -> None:
    """Turn tracing on with this span processor (tests pass an InMemorySpanExporter behind a SimpleSpanProcessor).

    Raises:
        ImportError: the ``otel`` extra is not installed.
    """
    global _state  # noqa: PLW0603 - one tracing set-up per process, like logging's
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.trace import SpanKind  # noqa: PLC0415
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator  # noqa: PLC0415

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(processor)
    _state = _Tracing(
        provider,
        provider.get_tracer("refracture"),
        TraceContextTextMapPropagator(),
        {
            "server": SpanKind.SERVER,
            "client": SpanKind.CLIENT,
            "consumer": SpanKind.CONSUMER,
            "producer": SpanKind.PRODUCER,
            "internal": SpanKind.INTERNAL,
        },
    )


def flush() -> None:
    """Send the spans still buffered (before a process exits)."""
    if _state is not None:
        _state.provider.force_flush()


def shutdown() -> None:
    """Flush and turn tracing off."""
    global _state
    state, _state = _state, None
    if state is not None:
        state.provider.shutdown()


def inject(carrier: MutableMapping[str, str]) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) to outgoing headers."""
    if _state is not None:
        _state.propagator.inject(carrier)


class OpenSpan:
    """A span that is current until ``end``: for work that starts and ends in different callbacks (Celery's
    task_prerun and task_postrun), in the same thread or task."""

    __slots__ = ("_span", "_token")

    def __init__(self, otel_span: Any, token: object) -> None:
        self._span = otel_span
        self._token = token

    @property
    def trace_id(self) -> int:
        """The trace's id."""
        return int(self._span.get_span_context().trace_id)

    def rename(self, name: str) -> None:
        """A better name, once known (a request's route template is known only after routing)."""
        self._span.update_name(name)

    def set(self, key: str, value: str | int | float | bool) -> None:
        """One attribute: never patient data."""
        self._span.set_attribute(key, value)

    def end(self, error: str | None = None) -> None:
        """End the span (marked as failed with the error's type, never its message) and make its parent current."""
        from opentelemetry import context  # noqa: PLC0415
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

        if error is not None:
            self._span.set_status(Status(StatusCode.ERROR, error))
            self._span.set_attribute("error.type", error)
        self._span.end()
        context.detach(self._token)  # type: ignore[arg-type]


def begin(
    name: str,
    kind: str = "internal",
    carrier: Mapping[str, str] | None = None,
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> OpenSpan | None:
    """Start a span and make it current (None when tracing is off).

    Args:
        name: a low-cardinality name (route template, task name, EHR method and type).
        kind: server, client, consumer, producer or internal.
        carrier: incoming headers whose ``traceparent`` is the parent (a request's, a task's); else the current span.
        attributes: no patient data.
    """
    state = _state
    if state is None:
        return None
    from opentelemetry import context, trace  # noqa: PLC0415

    parent = state.propagator.extract(carrier) if carrier is not None else context.get_current()
    otel_span = state.tracer.start_span(name, context=parent, kind=state.kinds[kind], attributes=dict(attributes or {}))
    token = context.attach(trace.set_span_in_context(otel_span, parent))
    return OpenSpan(otel_span, token)


@contextmanager
def span(
    name: str,
    kind: str = "internal",
    carrier: Mapping[str, str] | None = None,
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Iterator[OpenSpan | None]:
    """``begin`` … ``end`` around a block; an exception marks the span failed with its type and goes on."""
    opened = begin(name, kind, carrier, attributes)
    if opened is None:
        yield None
        return
    try:
        yield opened
    except BaseException as exc:
        opened.end(type(exc).__name__)
        raise
    opened.end()
