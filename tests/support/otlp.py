"""An OTLP/HTTP collector stand-in: keeps every export's bytes, and reads the spans out of them."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.servers import HandlerServer, QuietHandler

__all__ = ["OtlpSink"]


class OtlpSink:
    """Point REFRACTURE_OTEL_ENDPOINT at ``url``; ``bodies`` holds what was exported, ``spans`` its spans."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        sink = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                sink.bodies.append(self.rfile.read(int(self.headers.get("content-length", "0"))))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

        self._server = HandlerServer(Handler)
        self.url = self._server.url

    @property
    def spans(self) -> list[tuple[str, int, bytes]]:
        """Every exported span: its name, trace id and parent span id."""
        found: list[tuple[str, int, bytes]] = []
        for body in list(self.bodies):
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    found += [(s.name, int.from_bytes(s.trace_id, "big"), s.parent_span_id) for s in scope.spans]
        return found

    def close(self) -> None:
        self._server.close()
