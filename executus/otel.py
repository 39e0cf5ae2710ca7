"""OpenTelemetry export of runs, generated from their event logs (the ``executus[otel]`` extra).

A run becomes an ``invoke_agent {agent}`` span, each model step a ``chat {model}`` span and
each tool call an ``execute_tool {tool}`` span, following the OpenTelemetry GenAI semantic
conventions; a child run's span hangs under the tool call that started it, in its root run's
trace; steer injections, critic decisions, retries, resumes and the cancel cause are span
events. Span times are the events' ``at``, and trace and span ids are derived from run ids and
seqs, so a run exported live, back-filled later, exported twice, or replayed or resumed and
exported again, always yields the same spans with the same ids: a backend sees one span, never
a duplicate.

Two ways in:

* back-fill: :func:`export_runs` (or :func:`readable_spans` for one run's events) reads the
  log and hands the spans to any OpenTelemetry ``SpanExporter`` (OTLP/HTTP, in-memory,
  :class:`OtlpJsonFileExporter`);
* live: ``Executor(on_event=OtelExporter(span_exporter))`` ends each span when its closing
  event is recorded, with the same ids a later back-fill would give it.

Message content (prompts, replies, tool arguments and results) is exported only when
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` says so (:func:`content_capture_from_env`)
or a :class:`ContentCapture` is passed, and always through its ``redact`` hook first.

The OpenTelemetry SDK is imported here only, so the rest of executus runs without it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any, Final, Protocol

from executus._errors import ConfigurationError, ExecutusError
from executus._events import ChildRunStarted, Event, RunStarted, ToolStarted
from executus._otel_records import ContentCapture, SpanRecord, nanoseconds, span_id_for, trace_id_for
from executus._otel_spans import RunSpans
from executus._store import RunSummary

try:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event as SpanEvent
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("executus.otel needs the OpenTelemetry SDK: pip install 'executus[otel]'") from error

__all__ = [
    "CAPTURE_CONTENT_ENV",
    "ContentCapture",
    "OtelExporter",
    "OtlpJsonFileExporter",
    "RunLookup",
    "content_capture_from_env",
    "default_resource",
    "export_runs",
    "readable_spans",
    "span_id_for",
    "trace_id_for",
]

logger = logging.getLogger(__name__)

CAPTURE_CONTENT_ENV: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""The standard switch for exporting message content: ``true`` (or ``span_only``,
``span_and_event``) turns it on; unset, ``false`` or ``no_content`` leaves it off."""
_CONTENT_ON: Final = frozenset({"true", "1", "yes", "span_only", "span_and_event"})
_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_KINDS: Final = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}
_MAX_ANCESTORS: Final = 64


def _executus_version() -> str:
    try:
        return version("executus")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


_SCOPE: Final = InstrumentationScope("executus", _executus_version())


class RunLookup(Protocol):
    """What export needs from a store to place a child run under its parent (an EventStore has it)."""

    def get_run(self, run_id: str) -> RunSummary:
        """A run's summary row. Raises :class:`~executus.RunNotFoundError`."""
        ...

    def read_run(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """A run's events. Raises :class:`~executus.RunNotFoundError`."""
        ...


def content_capture_from_env(redact: Callable[[str], str] | None = None) -> ContentCapture:
    """Content capture as ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` sets it (off if unset).

    Args:
        redact: applied to every piece of content before export; by default nothing: a
            back-filled log was redacted when it was written, and a live exporter hears each
            event as the store keeps it (``Executor(on_event=...)`` is given redacted events).
            Pass one for a second pass under your own rules, or for an executor that does not
            redact (``redaction=None``).
    """
    enabled = os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in _CONTENT_ON
    return ContentCapture(enabled, redact or _as_is)


def _as_is(text: str) -> str:
    return text


def default_resource() -> Resource:
    """The SDK's resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), named ``executus``
    when the environment names no service."""
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "executus"}))
    return resource


def _readable(record: SpanRecord, resource: Resource) -> ReadableSpan:
    assert record.end is not None, "only ended spans are exported"
    parent = (
        SpanContext(record.trace_id, record.parent_span_id, is_remote=False, trace_flags=_SAMPLED)
        if record.parent_span_id is not None
        else None
    )
    return ReadableSpan(
        name=record.name,
        context=SpanContext(record.trace_id, record.span_id, is_remote=False, trace_flags=_SAMPLED),
        parent=parent,
        resource=resource,
        attributes=dict(record.attributes),
        events=[
            SpanEvent(event.name, dict(event.attributes), nanoseconds(event.at)) for event in record.events
        ],
        kind=_KINDS[record.kind],
        status=Status(StatusCode.ERROR, record.error)
        if record.error is not None
        else Status(StatusCode.UNSET),
        start_time=nanoseconds(record.start),
        end_time=nanoseconds(record.end),
        instrumentation_scope=_SCOPE,
    )


def _ancestry(started: RunStarted, lookup: RunLookup | None) -> tuple[int, int | None]:
    """A run's trace id and parent span id, from its ancestors' logs when ``lookup`` has them.

    Without them (no store, or the parent's log is elsewhere), the run is placed under its
    parent's run span, in the trace of the highest ancestor known.
    """
    parent = started.parent_run_id
    if parent is None:
        return trace_id_for(started.run_id), None
    root, parent_span = parent, span_id_for(parent, 1)
    if lookup is None:
        return trace_id_for(root), parent_span
    try:
        for _ in range(_MAX_ANCESTORS):
            above = lookup.get_run(root).parent_run_id
            if above is None:
                break
            root = above
        parent_span = _starting_tool_span(lookup.read_run(parent), started.run_id) or parent_span
    except ExecutusError as error:
        logger.debug("run %s: ancestors not found (%s); placed under its parent's run", started.run_id, error)
    return trace_id_for(root), parent_span


def _starting_tool_span(parent_events: Sequence[Event], child_run_id: str) -> int | None:
    """The id of the parent's ``execute_tool`` span that started ``child_run_id``."""
    started = next(
        (e for e in parent_events if isinstance(e, ChildRunStarted) and e.child_run_id == child_run_id), None
    )
    if started is None:
        return None
    tool = next(
        (
            e
            for e in reversed(parent_events)
            if isinstance(e, ToolStarted) and e.call_id == started.call_id and e.seq < started.seq
        ),
        None,
    )
    return span_id_for(tool.run_id, tool.seq) if tool is not None else None


def _records(events: Iterable[Event], lookup: RunLookup | None, content: ContentCapture) -> list[SpanRecord]:
    iterator = iter(events)
    first = next(iterator, None)
    if not isinstance(first, RunStarted):
        raise ConfigurationError("a run's events must begin with run_started")
    trace_id, parent_span = _ancestry(first, lookup)
    spans = RunSpans(first, trace_id=trace_id, parent_span_id=parent_span, content=content)
    return [record for event in iterator for record in spans.add(event)]


def readable_spans(
    events: Iterable[Event],
    *,
    lookup: RunLookup | None = None,
    content: ContentCapture | None = None,
    resource: Resource | None = None,
) -> list[ReadableSpan]:
    """The spans of one run's log that have ended, ready for any ``SpanExporter``.

    A run that has not finished gives the spans of its finished steps only; export it again
    when it has finished (the same ids make that safe).

    Args:
        events: the run's log, from ``run_started`` on.
        lookup: a store to find a child run's ancestors in (so it is nested under the tool call
            that started it, in its root run's trace).
        content: whether to export message content; off unless the environment opts in.
        resource: the OpenTelemetry resource; :func:`default_resource` by default.

    Raises:
        ConfigurationError: the events do not begin with ``run_started``.
    """
    resource = resource or default_resource()
    capture = content if content is not None else content_capture_from_env()
    return [_readable(record, resource) for record in _records(events, lookup, capture)]


def export_runs(
    store: RunLookup,
    run_ids: Iterable[str],
    exporter: SpanExporter,
    *,
    content: ContentCapture | None = None,
    resource: Resource | None = None,
) -> int:
    """Back-fill runs from a store into ``exporter``; return how many spans were exported.

    Raises:
        RunNotFoundError: a run is not in the store.
        ExecutusError: the exporter reported a failure (the endpoint refused or is unreachable).
    """
    resource = resource or default_resource()
    capture = content if content is not None else content_capture_from_env()
    count = 0
    for run_id in run_ids:
        spans = [_readable(r, resource) for r in _records(store.read_run(run_id), store, capture)]
        if not spans:
            continue
        if exporter.export(spans) is not SpanExportResult.SUCCESS:
            raise ExecutusError(f"the span exporter refused the spans of run {run_id}")
        count += len(spans)
    return count


class OtelExporter:
    """Live export: pass it as ``Executor(on_event=...)``; each span ends with its closing event.

    The ids are those :func:`export_runs` gives the same log, so a later back-fill (or a resume
    in another process) adds nothing twice. Spans go through a ``BatchSpanProcessor`` (export on
    its own thread, off the event loop) unless another processor is given. Call :meth:`shutdown`
    before the process exits so the last spans are sent.

    Args:
        exporter: where spans go (e.g. ``OTLPSpanExporter()``).
        processor: a span processor to use instead of a batch processor around ``exporter``.
        lookup: the store, to place a resumed run or a child of a run this process did not see.
        content: whether to export message content; from the environment by default.
        resource: the OpenTelemetry resource; :func:`default_resource` by default.
    """

    def __init__(
        self,
        exporter: SpanExporter | None = None,
        *,
        processor: SpanProcessor | None = None,
        lookup: RunLookup | None = None,
        content: ContentCapture | None = None,
        resource: Resource | None = None,
    ) -> None:
        if (exporter is None) == (processor is None):
            raise ConfigurationError("give OtelExporter a span exporter or a span processor, not both")
        self._processor: SpanProcessor = processor or BatchSpanProcessor(exporter)  # type: ignore[arg-type]
        self._lookup = lookup
        self._content = content if content is not None else content_capture_from_env()
        self._resource = resource or default_resource()
        self._runs: dict[str, RunSpans] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        """Take one recorded event (any run's); end and export the spans it closes."""
        with self._lock:
            spans = self._spans_for(event)
            if spans is None:
                return
            closed = spans.add(event) if event.seq > 1 else []
            if spans.finished:
                del self._runs[event.run_id]
        for record in closed:
            self._processor.on_end(_readable(record, self._resource))

    def _spans_for(self, event: Event) -> RunSpans | None:
        spans = self._runs.get(event.run_id)
        if spans is not None:
            return spans
        if isinstance(event, RunStarted):
            spans = self._start(event)
        elif self._lookup is not None:
            spans = self._catch_up(event)
        if spans is None:
            logger.debug("run %s: event seq %s of a run not seen from its start", event.run_id, event.seq)
            return None
        self._runs[event.run_id] = spans
        return spans

    def _start(self, started: RunStarted) -> RunSpans:
        parent = self._runs.get(started.parent_run_id or "")
        parent_span: int | None
        if parent is not None:
            tool_span = parent.tool_span_id(started.parent_call_id or "")
            trace_id, parent_span = parent.trace_id, tool_span or parent.run_span.span_id
        else:
            trace_id, parent_span = _ancestry(started, self._lookup)
        return RunSpans(started, trace_id=trace_id, parent_span_id=parent_span, content=self._content)

    def _catch_up(self, event: Event) -> RunSpans | None:
        """A run this exporter did not see start (resumed here): rebuild its open spans from the log.

        Spans that ended before ``event`` were exported by the process that recorded them (or
        are back-filled by ``executus otel export``), so they are not sent again.
        """
        assert self._lookup is not None
        try:
            earlier = [e for e in self._lookup.read_run(event.run_id) if e.seq < event.seq]
        except ExecutusError:
            return None
        if not earlier or not isinstance(earlier[0], RunStarted):
            return None
        spans = self._start(earlier[0])
        for previous in earlier[1:]:
            spans.add(previous)
        return spans

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Send the spans queued so far; True if they all went out in time."""
        return self._processor.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Send what is queued and stop the processor's thread."""
        self._processor.shutdown()


class OtlpJsonFileExporter(SpanExporter):
    """Writes spans as OTLP/JSON, one ``ExportTraceServiceRequest`` per line (``.jsonl``).

    The OpenTelemetry Collector's ``otlpjsonfile`` receiver reads this format, so a file
    written offline can be sent on later.
    """

    def __init__(self, file: IO[str]) -> None:
        self._file = file

    @classmethod
    def open(cls, path: Path) -> OtlpJsonFileExporter:
        """An exporter writing to a new file at ``path`` (closed by :meth:`shutdown`)."""
        return cls(path.open("w", encoding="utf-8"))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        # protobuf ships no type stubs; this is its documented JSON mapping.
        from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

        request = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
        _hex_ids(request)
        self._file.write(json.dumps(request, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self._file.flush()
        return True


def _hex_ids(value: Any) -> None:
    """OTLP/JSON writes trace and span ids as hex, where protobuf's JSON mapping writes base64."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(item, str):
                value[key] = base64.b64decode(item).hex()
            else:
                _hex_ids(item)
    elif isinstance(value, list):
        for item in value:
            _hex_ids(item)
