"""Spans sent over OTLP/HTTP (protobuf) to a real receiver on 127.0.0.1, and written as OTLP/JSON."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from executus import ExecutusError
from executus.otel import (
    ContentCapture,
    OtelExporter,
    OtlpJsonFileExporter,
    export_runs,
    span_id_for,
    trace_id_for,
)
from executus.storage import MemoryStore
from tests._observed_runs import demo_runs, record_family


@dataclass
class Receiver:
    """An OTLP/HTTP trace receiver: decodes each request with the protocol's own messages."""

    url: str
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    answer: int = 200

    def spans(self) -> list[tuple[str, ProtoSpan]]:
        """(service.name, span) for every span received."""
        found = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                service = next(
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                )
                found += [(service, span) for scope in resource_spans.scope_spans for span in scope.spans]
        return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.content_types.append(self.headers["Content-Type"])
                received.requests.append(ExportTraceServiceRequest.FromString(body))
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(received.answer if self.path == "/v1/traces" else 404)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def attributes(span: ProtoSpan) -> dict[str, object]:
    values: dict[str, object] = {}
    for attribute in span.attributes:
        value = attribute.value
        kind = value.WhichOneof("value")
        values[attribute.key] = (
            [item.string_value for item in value.array_value.values]
            if kind == "array_value"
            else getattr(value, kind)
        )
    return values


@pytest.fixture(scope="module")
def demo() -> MemoryStore:
    return demo_runs()[0]


def test_back_filled_spans_arrive_over_otlp_http(demo: MemoryStore, receiver: Receiver) -> None:
    exporter = OTLPSpanExporter(endpoint=receiver.url, timeout=10)
    count = export_runs(demo, ["demo-0002"], exporter, content=ContentCapture())
    exporter.shutdown()

    assert receiver.content_types == ["application/x-protobuf"]
    arrived = receiver.spans()
    assert count == len(arrived) == 3
    assert {service for service, _ in arrived} == {"executus"}
    by_name = {span.name: span for _, span in arrived}
    root = by_name["invoke_agent scraper"]
    assert root.trace_id == trace_id_for("demo-0002").to_bytes(16, "big")
    assert root.span_id == span_id_for("demo-0002", 1).to_bytes(8, "big")
    assert root.parent_span_id == b""
    assert root.kind == ProtoSpan.SPAN_KIND_INTERNAL
    assert root.status.code == 2  # STATUS_CODE_ERROR
    assert attributes(root)["error.type"] == "killed"
    assert attributes(root)["gen_ai.agent.name"] == "scraper"
    assert [event.name for event in root.events][-1] == "executus.run.cancelled"
    chat = by_name["chat fake-model"]
    assert chat.kind == ProtoSpan.SPAN_KIND_CLIENT
    assert chat.parent_span_id == root.span_id
    assert attributes(chat)["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert attributes(chat)["gen_ai.usage.input_tokens"] == 44
    tool = by_name["execute_tool fetch_page"]
    assert attributes(tool)["gen_ai.tool.call.id"] == "call-1"
    assert tool.end_time_unix_nano - tool.start_time_unix_nano == 388_800_000_000


def test_live_spans_arrive_over_otlp_http_with_the_back_fill_ids(receiver: Receiver) -> None:
    live = OtelExporter(OTLPSpanExporter(endpoint=receiver.url, timeout=10), content=ContentCapture())
    store = record_family(on_event=live)
    live.shutdown()  # the batch processor sends what it holds

    live_ids = sorted((span.trace_id, span.span_id, span.parent_span_id) for _, span in receiver.spans())
    receiver.requests.clear()
    exporter = OTLPSpanExporter(endpoint=receiver.url, timeout=10)
    export_runs(store, ["fam-0001", "fam-0002"], exporter, content=ContentCapture())
    exporter.shutdown()
    assert live_ids == sorted(
        (span.trace_id, span.span_id, span.parent_span_id) for _, span in receiver.spans()
    )
    assert len(live_ids) == 9


def test_a_refusing_endpoint_is_a_clear_error(demo: MemoryStore, receiver: Receiver) -> None:
    receiver.answer = 400
    exporter = OTLPSpanExporter(endpoint=receiver.url, timeout=10)
    with pytest.raises(ExecutusError, match="demo-0001"):
        export_runs(demo, ["demo-0001"], exporter, content=ContentCapture())
    exporter.shutdown()


def test_spans_written_to_a_file_are_otlp_json_lines(demo: MemoryStore, tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    exporter = OtlpJsonFileExporter.open(path)
    export_runs(demo, ["demo-0001", "demo-0002"], exporter, content=ContentCapture())
    exporter.shutdown()

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2  # one request per run
    spans = [
        span
        for line in lines
        for resource_spans in line["resourceSpans"]
        for scope in resource_spans["scopeSpans"]
        for span in scope["spans"]
    ]
    roots = {span["name"]: span for span in spans if "parentSpanId" not in span or not span["parentSpanId"]}
    assert roots["invoke_agent researcher"]["traceId"] == f"{trace_id_for('demo-0001'):032x}"
    assert roots["invoke_agent scraper"]["spanId"] == f"{span_id_for('demo-0002', 1):016x}"
    assert roots["invoke_agent scraper"]["kind"] == 1  # SPAN_KIND_INTERNAL
    assert len(spans) == 6 + 3
