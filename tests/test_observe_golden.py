"""Runs recorded by executus 0.1.0 back-fill into OpenTelemetry and render as reports."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from executus.otel import ContentCapture, export_runs, trace_id_for
from executus.report import blob_hashes, render_report
from store import SqlStore
from tests.test_golden_v0_1_0 import golden_store  # noqa: F401 - the fixture


def test_every_golden_run_back_fills_once_and_renders(golden_store: SqlStore) -> None:  # noqa: F811
    golden = golden_store  # a copy: the golden files themselves are never written to
    runs = golden.list_runs()
    assert runs
    memory = InMemorySpanExporter()
    export_runs(golden, [run.run_id for run in runs], memory, content=ContentCapture())
    spans = memory.get_finished_spans()

    assert len({span.context.span_id for span in spans}) == len(spans)
    roots = [span for span in spans if span.parent is None]
    finished = [run for run in runs if run.status != "running"]
    assert sorted(span.attributes["executus.run.id"] for span in roots) == sorted(r.run_id for r in finished)
    for root in roots:
        assert root.context.trace_id == trace_id_for(str(root.attributes["executus.run.id"]))
    for run in runs:
        events = golden.read_run(run.run_id)
        html = render_report(events, blobs={h: golden.get_blob(h) for h in blob_hashes(events)})
        assert f"<code>{run.run_id}</code>" in html
