"""The spans a run's log describes, as plain data: what :mod:`executus.otel` hands to OpenTelemetry.

Pure and incremental: :class:`RunSpans` takes a run's events one at a time (live, from
``Executor(on_event=...)``, or all at once from the store) and returns each span when the event
that closes it arrives. Everything about a span comes from the log: its times are the events'
``at``, and its ids are derived from the run id and the seq of the event that opened it, so the
same log always gives the same spans, whether it is exported live, back-filled later, exported
twice, or exported again after a replay or a resume.

The spans follow the OpenTelemetry GenAI semantic conventions: ``invoke_agent {agent}`` per run
(INTERNAL), ``chat {model}`` per model step (CLIENT), ``execute_tool {tool}`` per tool call
(INTERNAL, parallel calls as siblings under the run), and a child run's ``invoke_agent`` span
under the ``execute_tool`` span that started it, in its root run's trace. What is not a span
(steer injections, critic decisions, retries, the cancel cause, resumes) is a span event.

Adding an event kind: give it a handler in ``_HANDLERS`` below (a span it opens or closes,
or a span event); until then it is exported as a generic span event named ``executus.{kind}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from executus._effects import STATUS_OF_CAUSE
from executus._errors import EventOrderError
from executus._events import (
    ChildRunStarted,
    CriticDecided,
    Event,
    ModelFailed,
    ModelRequested,
    ModelResponded,
    PostRunFinished,
    RunCancelled,
    RunFinished,
    RunStarted,
    SteerInjected,
    ToolFinished,
    ToolStarted,
    canonical_json,
)
from executus._otel_content import messages_json, reply_json, system_json, text_messages_json
from executus._otel_records import (
    AttributeValue,
    ContentCapture,
    SpanEventRecord,
    SpanKindName,
    SpanRecord,
    span_id_for,
)
from executus._state import RunState, apply

__all__ = ["RunSpans"]

_NO_CONTENT: Final = ContentCapture()
"""``error.type`` of the spans a cancel cut short, by the cancel's cause."""
_GENERIC_TEXT_LIMIT: Final = 500
_PROVIDER_NAMES: Final[Mapping[str, str]] = {"anthropic": "anthropic", "openai": "openai"}
"""``gen_ai.provider.name`` (the conventions' well-known value) by the provider prefix of a
recorded model name, as :mod:`executus.models` names its adapters (``openai:gpt-4.1-mini``)."""


def _provider_and_model(recorded: str) -> tuple[str | None, str]:
    """The provider (``gen_ai.provider.name``) and the model's own name (``gen_ai.request.model``)
    a recorded model name says.

    Only a known prefix is taken off: a name such as ``llama3.2:8b`` keeps its colon. A model
    with no known provider (a test double, an adapter given its own name) has no provider:
    the log does not say who served it, and a guess would be wrong telemetry.
    """
    prefix, colon, model = recorded.partition(":")
    provider = _PROVIDER_NAMES.get(prefix) if colon and model else None
    return (provider, model) if provider is not None else (None, recorded)


class RunSpans:
    """The spans of one run, built event by event.

    Args:
        started: the run's ``run_started`` event.
        trace_id: the trace the run belongs to (see :func:`trace_id_for`; a child run is in its
            root run's trace).
        parent_span_id: the span the run's span hangs under (the parent's ``execute_tool`` span
            for a child run), or None for a root run.
        content: whether and how message content is exported.
    """

    def __init__(
        self,
        started: RunStarted,
        *,
        trace_id: int,
        parent_span_id: int | None = None,
        content: ContentCapture = _NO_CONTENT,
    ) -> None:
        self.run_id = started.run_id
        self.trace_id = trace_id
        self._content = content
        self._provider, self._model = _provider_and_model(started.agent.model)
        self._open_chat: SpanRecord | None = None
        self._open_tools: dict[str, SpanRecord] = {}
        agent = started.agent
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent.name,
            "gen_ai.request.model": self._model,
            "executus.run.id": started.run_id,
            "executus.executor.version": started.executor_version,
            "executus.agent.max_iterations": agent.max_iterations,
        }
        if self._provider is not None:
            attributes["gen_ai.provider.name"] = self._provider
        if agent.max_runtime is not None:
            attributes["executus.agent.max_runtime"] = agent.max_runtime
        if started.caller_id is not None:
            attributes["executus.caller.id"] = started.caller_id
        if started.parent_run_id is not None:
            attributes["executus.parent_run.id"] = started.parent_run_id
        # With content on, the run's fold gives each model step the chat history it was sent.
        self._state: RunState | None = None
        if content.enabled:
            self._state = apply(None, started)
            attributes["gen_ai.system_instructions"] = system_json(agent.system_prompt, content.redact)
            attributes["gen_ai.input.messages"] = text_messages_json("user", started.input, content.redact)
        self.run_span = SpanRecord(
            name=f"invoke_agent {agent.name}",
            kind="internal",
            trace_id=trace_id,
            span_id=span_id_for(started.run_id, started.seq),
            parent_span_id=parent_span_id,
            start=started.at,
            attributes=attributes,
        )

    def tool_span_id(self, call_id: str) -> int | None:
        """The id of the open ``execute_tool`` span of a call: where a child run it starts hangs."""
        span = self._open_tools.get(call_id)
        return span.span_id if span is not None else None

    @property
    def finished(self) -> bool:
        """Whether ``run_finished`` has closed the run's span."""
        return self.run_span.end is not None

    def add(self, event: Event) -> list[SpanRecord]:
        """Take the run's next event; return the spans it closed (the run's own span last)."""
        if self._state is not None:
            try:
                apply(self._state, event)
            except (EventOrderError, KeyError):  # a kind the fold does not know yet
                self._state = None
        handler = _HANDLERS.get(event.kind)
        if handler is None:
            self._generic(event)
            return []
        return handler(self, event)

    # -- helpers -----------------------------------------------------------------------------

    def _child(self, name: str, kind: SpanKindName, event: Event) -> SpanRecord:
        return SpanRecord(
            name=name,
            kind=kind,
            trace_id=self.trace_id,
            span_id=span_id_for(self.run_id, event.seq),
            parent_span_id=self.run_span.span_id,
            start=event.at,
            attributes={"executus.run.id": self.run_id, "executus.event.seq": event.seq},
        )

    def _span_event(
        self, name: str, event: Event, attributes: dict[str, AttributeValue], on: SpanRecord | None = None
    ) -> None:
        (on or self.run_span).events.append(
            SpanEventRecord(name, event.at, {"executus.event.seq": event.seq, **attributes})
        )

    def _close_open(self, at: datetime, error_type: str, description: str) -> list[SpanRecord]:
        """End every open chat and tool span at ``at``, as cut short by ``error_type``."""
        closed = [*([self._open_chat] if self._open_chat else []), *self._open_tools.values()]
        self._open_chat = None
        self._open_tools = {}
        for span in closed:
            span.end = at
            span.fail(error_type, description)
        return closed

    def _text(self, text: str) -> str:
        return self._content.redact(text)

    # -- handlers, one per event kind --------------------------------------------------------

    def _model_requested(self, event: ModelRequested) -> list[SpanRecord]:
        # A resume re-requests an interrupted step: the earlier request never got its reply.
        closed = self._close_open_chat(event.at, "interrupted", "the process stopped before the reply")
        span = self._child(f"chat {self._model}", "client", event)
        span.attributes.update(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": self._model,
                "executus.step": event.step,
                "executus.request.fingerprint": event.fingerprint,
                "executus.request.message_count": event.message_count,
            }
        )
        if self._provider is not None:
            span.attributes["gen_ai.provider.name"] = self._provider
        if self._state is not None:
            span.attributes["gen_ai.input.messages"] = messages_json(self._state.transcript, self._text)
        self._open_chat = span
        return closed

    def _end_chat(self, at: datetime) -> SpanRecord | None:
        """End the open chat span (if any) at ``at`` and hand it over."""
        span, self._open_chat = self._open_chat, None
        if span is not None:
            span.end = at
        return span

    def _close_open_chat(self, at: datetime, error_type: str, description: str) -> list[SpanRecord]:
        span = self._end_chat(at)
        if span is None:
            return []
        span.fail(error_type, description)
        return [span]

    def _model_responded(self, event: ModelResponded) -> list[SpanRecord]:
        span = self._end_chat(event.at)
        if span is None:
            return []
        finish_reason = getattr(event, "finish_reason", None) or (
            "tool_calls" if event.tool_calls else "stop"
        )
        span.attributes.update(
            {
                "gen_ai.response.model": self._model,
                "gen_ai.response.finish_reasons": (str(finish_reason),),
                "executus.latency": event.latency,
            }
        )
        usage = event.usage
        for key, value in (
            ("gen_ai.usage.input_tokens", usage.input_tokens),
            ("gen_ai.usage.output_tokens", usage.output_tokens),
        ):
            if value is not None:  # unknown when the provider did not report it
                span.attributes[key] = value
        if self._content.enabled:
            span.attributes["gen_ai.output.messages"] = reply_json(
                event.text, event.tool_calls, str(finish_reason), self._text
            )
        return [span]

    def _model_failed(self, event: ModelFailed) -> list[SpanRecord]:
        return self._close_open_chat(event.at, event.error.type, self._text(str(event.error)))

    def _model_attempt_failed(self, event: Event) -> list[SpanRecord]:
        # Recorded by the executor's retry policy (one event per failed attempt): a span event
        # on the step's chat span, named as the GenAI conventions name an exception event.
        error = getattr(event, "error", None)
        attributes: dict[str, AttributeValue] = {}
        for key, name in (("attempt", "executus.attempt"), ("status", "http.response.status_code")):
            value = getattr(event, key, None)
            if isinstance(value, int):
                attributes[name] = value
        if error is not None:
            attributes["error.type"] = str(getattr(error, "type", error))
        self._span_event("executus.model.attempt_failed", event, attributes, on=self._open_chat)
        return []

    def _tool_started(self, event: ToolStarted) -> list[SpanRecord]:
        span = self._child(f"execute_tool {event.name}", "internal", event)
        span.attributes.update(
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": event.name,
                "gen_ai.tool.call.id": event.call_id,
                "gen_ai.tool.type": "function",
            }
        )
        if self._content.enabled:
            span.attributes["gen_ai.tool.call.arguments"] = self._text(canonical_json(event.arguments))
        closed = []
        previous = self._open_tools.pop(event.call_id, None)
        if previous is not None:  # the same call started again (a resume re-ran it)
            previous.end = event.at
            previous.fail("interrupted", "the process stopped before the tool finished")
            closed.append(previous)
        self._open_tools[event.call_id] = span
        return closed

    def _tool_finished(self, event: ToolFinished) -> list[SpanRecord]:
        span = self._open_tools.pop(event.call_id, None)
        if span is None:
            return []
        span.end = event.at
        span.attributes["executus.tool.duration"] = event.duration
        if event.error is not None:
            span.fail(event.error.type, self._text(str(event.error)))
        elif self._content.enabled and event.result is not None:
            span.attributes["gen_ai.tool.call.result"] = self._text(event.result)
        return [span]

    def _child_run_started(self, event: ChildRunStarted) -> list[SpanRecord]:
        attributes: dict[str, AttributeValue] = {
            "executus.child_run.id": event.child_run_id,
            "gen_ai.tool.call.id": event.call_id,
        }
        self._span_event(
            "executus.child_run.started", event, attributes, on=self._open_tools.get(event.call_id)
        )
        return []

    def _steer_injected(self, event: SteerInjected) -> list[SpanRecord]:
        attributes: dict[str, AttributeValue] = {
            "executus.steer.source": event.source,
            "executus.steer.messages": len(event.messages),
            "executus.steer.images": sum(len(message.images) for message in event.messages),
        }
        if self._content.enabled:
            attributes["executus.steer.text"] = tuple(self._text(m.text) for m in event.messages)
        self._span_event("executus.steer.injected", event, attributes)
        return []

    def _critic_decided(self, event: CriticDecided) -> list[SpanRecord]:
        attributes: dict[str, AttributeValue] = {
            "executus.critic.decision": event.decision,
            "executus.critic.reason": event.reason,
            "executus.critic.idle_seconds": event.idle_seconds,
        }
        for key, value in (
            ("executus.critic.old_deadline", event.old_deadline),
            ("executus.critic.new_deadline", event.new_deadline),
            ("executus.critic.old_max_steps", event.old_max_steps),
            ("executus.critic.new_max_steps", event.new_max_steps),
        ):
            if isinstance(value, datetime):
                attributes[key] = value.isoformat()
            elif value is not None:
                attributes[key] = value
        if self._content.enabled and event.nudge is not None:
            attributes["executus.critic.nudge"] = self._text(event.nudge)
        self._span_event("executus.critic.decided", event, attributes)
        return []

    def _run_cancelled(self, event: RunCancelled) -> list[SpanRecord]:
        attributes: dict[str, AttributeValue] = {
            "executus.cancel.cause": event.cause,
            "executus.cancel.in_flight": len(event.in_flight),
        }
        if event.detail:
            attributes["executus.cancel.detail"] = self._text(event.detail)
        self._span_event("executus.run.cancelled", event, attributes)
        error_type = STATUS_OF_CAUSE[event.cause]  # the status the cause ends a run with
        return self._close_open(event.at, error_type, f"cut short: {event.cause}")

    def _run_resumed(self, event: Event) -> list[SpanRecord]:
        # run_resumed today; run_claimed (a worker took the run over) reads the same way.
        attributes: dict[str, AttributeValue] = {}
        downtime = getattr(event, "downtime", None)
        if isinstance(downtime, int | float):
            attributes["executus.resume.downtime"] = float(downtime)
        for key in ("worker_id", "executor_version"):
            value = getattr(event, key, None)
            if isinstance(value, str):
                attributes[f"executus.resume.{key}"] = value
        self._span_event(f"executus.{event.kind.replace('_', '.', 1)}", event, attributes)
        # The interrupted model call is made again under a new seq; its old span ends here.
        return self._close_open_chat(event.at, "interrupted", "the process stopped before the reply")

    def _post_run_finished(self, event: PostRunFinished) -> list[SpanRecord]:
        attributes: dict[str, AttributeValue] = {
            "executus.artifacts": tuple(artifact.name for artifact in event.artifacts),
        }
        if event.error is not None:
            attributes["error.type"] = event.error.type
        if event.cleanup_error is not None:
            attributes["executus.cleanup.error.type"] = event.cleanup_error.type
        self._span_event("executus.post_run.finished", event, attributes)
        return []

    def _run_finished(self, event: RunFinished) -> list[SpanRecord]:
        closed = self._close_open(event.at, "interrupted", "still open when the run finished")
        span = self.run_span
        span.end = event.at
        span.attributes.update(
            {
                "executus.run.status": event.status,
                "executus.run.steps": event.steps,
                "gen_ai.usage.input_tokens": event.usage.input_tokens,
                "gen_ai.usage.output_tokens": event.usage.output_tokens,
            }
        )
        if event.status != "ok":
            error_type: str = event.status
            if event.status == "error" and event.error is not None:
                error_type = event.error.type
            span.fail(error_type, self._text(str(event.error)) if event.error else event.status)
        elif self._content.enabled and event.output is not None:
            span.attributes["gen_ai.output.messages"] = text_messages_json(
                "assistant", event.output, self._text, finish_reason="stop"
            )
        return [*closed, span]

    def _generic(self, event: Event) -> None:
        """A kind with no handler yet: a span event with its scalar fields (content only if opted in)."""
        attributes: dict[str, AttributeValue] = {}
        if self._content.enabled:
            body: dict[str, Any] = event.model_dump(mode="json")
            for key, value in sorted(body.items()):
                if key in ("run_id", "seq", "at", "kind", "schema_version"):
                    continue
                if isinstance(value, str):
                    attributes[f"executus.{key}"] = self._text(value)[:_GENERIC_TEXT_LIMIT]
                elif isinstance(value, bool | int | float):
                    attributes[f"executus.{key}"] = value
        self._span_event(f"executus.{event.kind}", event, attributes)


_HANDLERS: Final[dict[str, Callable[[RunSpans, Any], list[SpanRecord]]]] = {
    "model_requested": RunSpans._model_requested,
    "model_responded": RunSpans._model_responded,
    "model_failed": RunSpans._model_failed,
    "model_attempt_failed": RunSpans._model_attempt_failed,
    # Streaming chunks repeat what model_responded says whole; a span event per chunk would
    # only flood the trace.
    "model_chunk": lambda spans, event: [],
    "tool_started": RunSpans._tool_started,
    "tool_finished": RunSpans._tool_finished,
    "child_run_started": RunSpans._child_run_started,
    "steer_injected": RunSpans._steer_injected,
    "critic_decided": RunSpans._critic_decided,
    "run_cancelled": RunSpans._run_cancelled,
    "run_resumed": RunSpans._run_resumed,
    "run_claimed": RunSpans._run_resumed,
    "post_run_finished": RunSpans._post_run_finished,
    "run_finished": RunSpans._run_finished,
}
"""Where each event kind goes; a kind not listed becomes a generic span event."""
