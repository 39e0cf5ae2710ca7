"""The plain data :mod:`executus.otel` exports: spans, span events, content capture, and the ids.

Ids are derived, never random: a trace's from its root run's id, a span's from its run's id and
the seq of the event that opened it. That is what makes an export idempotent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, TypeAlias

__all__ = [
    "AttributeValue",
    "ContentCapture",
    "SpanEventRecord",
    "SpanKindName",
    "SpanRecord",
    "nanoseconds",
    "span_id_for",
    "trace_id_for",
]

AttributeValue: TypeAlias = str | bool | int | float | tuple[str, ...]
SpanKindName: TypeAlias = Literal["internal", "client"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class ContentCapture:
    """Whether message content (prompts, replies, tool arguments and results) goes into spans.

    Off by default, as the GenAI conventions ask; :func:`executus.otel.content_capture_from_env`
    turns it on from ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``.

    Attributes:
        enabled: whether content is exported at all.
        redact: applied to every piece of content (and to error messages and cancel details)
            before it leaves the process. The log is already redacted when it is written
            (DESIGN "Audit"), and a live exporter hears the events as they are stored; this is
            the seam for a second pass with the exporter's own rules.
    """

    enabled: bool = False
    redact: Callable[[str], str] = _identity


@dataclass(frozen=True, slots=True)
class SpanEventRecord:
    """A span event: something that happened during a span and is not a span itself."""

    name: str
    at: datetime
    attributes: dict[str, AttributeValue]


@dataclass(slots=True)
class SpanRecord:
    """One span, complete once ``end`` is set.

    Attributes:
        name: e.g. ``chat fake-model``.
        kind: ``internal`` or ``client`` (OpenTelemetry's span kinds).
        trace_id: 128-bit trace id, derived from the root run's id.
        span_id: 64-bit span id, derived from the run id and the seq of the opening event.
        parent_span_id: the parent span's id, or None for a trace's root.
        start: the opening event's time.
        end: the closing event's time (None while open).
        attributes: ``gen_ai.*``, ``error.type`` and ``executus.*`` attributes.
        events: span events, in seq order.
        error: the status description when the operation ended in an error, else None.
    """

    name: str
    kind: SpanKindName
    trace_id: int
    span_id: int
    parent_span_id: int | None
    start: datetime
    end: datetime | None = None
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    events: list[SpanEventRecord] = field(default_factory=list)
    error: str | None = None

    def fail(self, error_type: str, description: str) -> None:
        """Mark the span as ended by an error (``error.type`` and an ERROR status)."""
        self.attributes["error.type"] = error_type
        self.error = description


def nanoseconds(at: datetime) -> int:
    """An instant as integer nanoseconds since the Unix epoch (exact: no float in between)."""
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


def _digest(text: str, size: int) -> int:
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:size], "big")
    return value or 1  # an all-zero id is invalid in OpenTelemetry


def trace_id_for(root_run_id: str) -> int:
    """The trace id of a run and of all the child runs under it: derived from the root run's id."""
    return _digest(f"executus-trace\x00{root_run_id}", 16)


def span_id_for(run_id: str, seq: int) -> int:
    """The id of the span opened by event ``seq`` of a run (the run's own span is seq 1's)."""
    return _digest(f"executus-span\x00{run_id}\x00{seq}", 8)
