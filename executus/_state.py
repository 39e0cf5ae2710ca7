"""A run's state is the fold of its events.

Messages derived from events are built with :func:`trusted`: the events were validated when
they were made or decoded, and validating their parts again would double a rebuild's cost.

:func:`apply` is the only way a :class:`RunState` changes, for a live run and for a run rebuilt
from the store alike, so the two cannot disagree. It does no IO and reads no clock: everything
it knows comes from the event. For speed it updates the state in place and returns it (a
10,000-step transcript is appended to, not copied, on every event); :func:`rebuild` starts from
nothing, so callers that want an independent copy rebuild.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal, TypeAlias

from pydantic import JsonValue

from executus._errors import EventOrderError
from executus._events import (
    AgentSpec,
    ArtifactRef,
    ChildRunStarted,
    CriticDecided,
    ErrorInfo,
    Event,
    InFlight,
    ModelAttemptFailed,
    ModelChunk,
    ModelFailed,
    ModelRequested,
    ModelResponded,
    PostRunFinished,
    RunCancelled,
    RunFinished,
    RunResumed,
    RunStarted,
    RunStatus,
    SteerInjected,
    ToolFinished,
    ToolStarted,
    canonical_json,
    sha256_hex,
)
from executus._messages import (
    AssistantMessage,
    Message,
    ModelSettings,
    SystemMessage,
    TextPart,
    ToolMessage,
    Usage,
    UserMessage,
    trusted,
)

__all__ = [
    "PendingModelCall",
    "PendingTool",
    "RunState",
    "apply",
    "check_order",
    "rebuild",
    "request_fingerprint",
]

StateStatus: TypeAlias = Literal["running"] | RunStatus


@dataclass(slots=True)
class PendingTool:
    """A tool call that started and has not finished."""

    call_id: str
    name: str
    arguments: dict[str, JsonValue]
    started_at: datetime


@dataclass(slots=True)
class PendingModelCall:
    """A model call that was requested and has not been answered."""

    step: int
    started_at: datetime
    streamed_text: list[str] = field(default_factory=list)
    """The text of this attempt's ``model_chunk`` events so far, in order (streaming only)."""
    attempt: int = 1
    """The attempt being made (or waited for): 1 until an attempt fails and is retried."""
    retry_at: datetime | None = None
    """When the next attempt is due, once an attempt failed; None before any did."""


@dataclass(slots=True)
class RunState:
    """Everything known about a run, derived from its events alone."""

    run_id: str
    agent: AgentSpec
    input: str
    caller_id: str | None
    parent_run_id: str | None
    started_at: datetime
    deadline: datetime | None
    """When the run times out; the critic may move it."""
    max_steps: int
    """Model calls allowed; the critic may raise it."""
    transcript: list[Message]
    """Only ever appended to (a :class:`MessagesSnapshot` of it relies on that)."""
    tools_hash: str
    last_seq: int
    last_activity_at: datetime
    """Time of the last event other than a critic decision: what idleness is measured from."""
    status: StateStatus = "running"
    steps: int = 0
    """Model calls requested so far."""
    usage: Usage = field(default_factory=Usage)
    pending_tools: dict[str, PendingTool] = field(default_factory=dict)
    pending_model: PendingModelCall | None = None
    pending_nudges: list[str] = field(default_factory=list)
    """Critic nudges decided but not yet injected into the transcript."""
    decisions_since_activity: int = 0
    """Critic decisions since the last activity: the escalation level of the current stall."""
    last_decision_at: datetime | None = None
    critic_decisions: list[CriticDecided] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    cancellation: RunCancelled | None = None
    kill_reason: str | None = None
    output: str | None = None
    error: ErrorInfo | None = None
    artifacts: tuple[ArtifactRef, ...] = ()
    post_run_metadata: dict[str, JsonValue] = field(default_factory=dict)
    post_run_done: bool = False
    resumes: int = 0
    finished_at: datetime | None = None
    duration: float | None = None
    # The transcript's chained sha256 is extended lazily, when a fingerprint is asked for: a
    # live run asks every step (O(1) each), a rebuild that never asks does not pay for it.
    _chain_hash: str = field(default="", compare=False, repr=False)
    _chained: int = field(default=0, compare=False, repr=False)

    @property
    def finished(self) -> bool:
        """Whether the log ends with ``run_finished``."""
        return self.status != "running"

    @property
    def last_event_at(self) -> datetime:
        """Time of the log's last event (critic decisions are the only events not activity)."""
        if self.last_decision_at is not None and self.last_decision_at > self.last_activity_at:
            return self.last_decision_at
        return self.last_activity_at

    @property
    def in_flight(self) -> tuple[InFlight, ...]:
        """The model call and tool calls that started and have not finished, model first."""
        model = self.pending_model
        return (
            *([InFlight(kind="model", name=self.agent.model, started_at=model.started_at)] if model else []),
            *(
                InFlight(
                    kind="tool",
                    name=tool.name,
                    call_id=tool.call_id,
                    arguments=tool.arguments,
                    started_at=tool.started_at,
                )
                for tool in self.pending_tools.values()
            ),
        )

    @property
    def transcript_hash(self) -> str:
        """Chained sha256 over the transcript's messages."""
        for message in self.transcript[self._chained :]:
            self._chain_hash = _chain(self._chain_hash, message)
        self._chained = len(self.transcript)
        return self._chain_hash

    @property
    def fingerprint(self) -> str:
        """The fingerprint of the model request the current transcript makes."""
        return request_fingerprint(
            self.agent.model, self.tools_hash, self.transcript_hash, self.agent.model_settings
        )


def request_fingerprint(
    model: str, tools_hash: str, transcript_hash: str, settings: ModelSettings | None = None
) -> str:
    """sha256 identifying a model request by model name, tool schemas, messages and settings.

    Without settings the print is what 0.1.0 computed, so recorded runs keep replaying.
    """
    text = f"{model}\n{tools_hash}\n{transcript_hash}"
    if settings is not None:
        text += "\n" + canonical_json(settings.model_dump(mode="json"))
    return sha256_hex(text)


def _chain(previous: str, message: Message) -> str:
    return sha256_hex(previous + canonical_json(message_data(message)))


def message_data(message: Message) -> dict[str, Any]:
    """``message.model_dump(mode="json")``, built by hand: the fingerprint hashes every message
    of a run once, and pydantic's serializer was most of that cost (a test pins the two equal)."""
    if message.role == "tool":
        return {
            "role": "tool",
            "call_id": message.call_id,
            "name": message.name,
            "content": message.content,
            "is_error": message.is_error,
        }
    if message.role == "assistant":
        return {
            "role": "assistant",
            "text": message.text,
            "tool_calls": [
                {"id": call.id, "name": call.name, "arguments": call.arguments} for call in message.tool_calls
            ],
        }
    if message.role == "user":
        return {
            "role": "user",
            "parts": [
                {"kind": "text", "text": part.text}
                if part.kind == "text"
                else {
                    "kind": "image",
                    "media_type": part.media_type,
                    "sha256": part.sha256,
                    "size": part.size,
                }
                for part in message.parts
            ],
            "source": message.source,
        }
    return {"role": "system", "content": message.content}


def _start(event: RunStarted) -> RunState:
    agent = event.agent
    deadline = None
    if agent.max_runtime is not None:
        deadline = event.at + timedelta(seconds=agent.max_runtime)
    state = RunState(
        run_id=event.run_id,
        agent=agent,
        input=event.input,
        caller_id=event.caller_id,
        parent_run_id=event.parent_run_id,
        started_at=event.at,
        deadline=deadline,
        max_steps=agent.max_iterations,
        transcript=[],
        tools_hash=sha256_hex(canonical_json([tool.model_dump(mode="json") for tool in agent.tools])),
        last_seq=event.seq,
        last_activity_at=event.at,
    )
    state.transcript.append(SystemMessage(content=agent.system_prompt))
    state.transcript.append(UserMessage(parts=(TextPart(text=event.input),)))
    return state


def _child_run_started(state: RunState, event: ChildRunStarted) -> None:
    state.children.append(event.child_run_id)


def _model_requested(state: RunState, event: ModelRequested) -> None:
    state.steps = event.step
    state.pending_model = PendingModelCall(step=event.step, started_at=event.at)


def _model_chunk(state: RunState, event: ModelChunk) -> None:
    if state.pending_model is not None and event.text:
        state.pending_model.streamed_text.append(event.text)


def _model_responded(state: RunState, event: ModelResponded) -> None:
    state.pending_model = None
    state.usage = state.usage + event.usage
    state.transcript.append(trusted(AssistantMessage, text=event.text, tool_calls=event.tool_calls))


def _model_attempt_failed(state: RunState, event: ModelAttemptFailed) -> None:
    pending = state.pending_model
    if pending is not None and pending.step == event.step:
        pending.attempt = event.attempt + 1
        pending.retry_at = event.next_attempt_at
        pending.streamed_text.clear()  # the next attempt's reply starts afresh


def _model_failed(state: RunState, event: ModelFailed) -> None:
    state.pending_model = None
    state.error = event.error


def _tool_started(state: RunState, event: ToolStarted) -> None:
    state.pending_tools[event.call_id] = PendingTool(
        call_id=event.call_id, name=event.name, arguments=event.arguments, started_at=event.at
    )


def _tool_finished(state: RunState, event: ToolFinished) -> None:
    state.pending_tools.pop(event.call_id, None)
    state.transcript.append(
        trusted(
            ToolMessage,
            call_id=event.call_id,
            name=event.name,
            content=event.content,
            is_error=event.error is not None,
        )
    )


def _steer_injected(state: RunState, event: SteerInjected) -> None:
    for message in event.messages:
        state.transcript.append(
            trusted(
                UserMessage,
                parts=(trusted(TextPart, text=message.text), *message.images),
                source=event.source,
            )
        )
    if event.source == "critic":
        del state.pending_nudges[: len(event.messages)]


def _critic_decided(state: RunState, event: CriticDecided) -> None:
    state.critic_decisions.append(event)
    state.decisions_since_activity += 1
    state.last_decision_at = event.at
    if event.decision == "nudge" and event.nudge is not None:
        state.pending_nudges.append(event.nudge)
    elif event.decision == "extend":
        state.deadline = event.new_deadline
    elif event.decision == "raise_steps" and event.new_max_steps is not None:
        state.max_steps = event.new_max_steps
    elif event.decision == "kill":
        state.kill_reason = event.reason


def _run_cancelled(state: RunState, event: RunCancelled) -> None:
    state.cancellation = event


def _run_resumed(state: RunState, event: RunResumed) -> None:
    state.deadline = event.new_deadline
    if state.pending_model is not None:
        # The interrupted call is made again under the same step number.
        state.steps = state.pending_model.step - 1
        state.pending_model = None
    state.resumes += 1


def _post_run_finished(state: RunState, event: PostRunFinished) -> None:
    state.post_run_done = True
    state.artifacts = event.artifacts
    state.post_run_metadata = event.metadata


def _run_finished(state: RunState, event: RunFinished) -> None:
    state.status = event.status
    state.output = event.output
    state.error = event.error
    state.finished_at = event.at
    state.duration = event.duration


_APPLIERS: Final[dict[str, Callable[[RunState, Any], None]]] = {
    "child_run_started": _child_run_started,
    "model_requested": _model_requested,
    "model_chunk": _model_chunk,
    "model_responded": _model_responded,
    "model_attempt_failed": _model_attempt_failed,
    "model_failed": _model_failed,
    "tool_started": _tool_started,
    "tool_finished": _tool_finished,
    "steer_injected": _steer_injected,
    "critic_decided": _critic_decided,
    "run_cancelled": _run_cancelled,
    "run_resumed": _run_resumed,
    "post_run_finished": _post_run_finished,
    "run_finished": _run_finished,
}


def apply(state: RunState | None, event: Event) -> RunState:
    """Fold one event into a run's state and return the state.

    Args:
        state: the state so far, or None before the first event.
        event: the next event of the run.

    Raises:
        EventOrderError: the event does not continue this run: the first event is not
            ``run_started``, the seq is not the next one, it belongs to another run, or the
            run has already finished.
    """
    if state is None:
        if not isinstance(event, RunStarted) or event.seq != 1:
            raise EventOrderError(
                event.run_id, f"a run must begin with run_started at seq 1, got {event.kind}"
            )
        return _start(event)
    _check_next(state.run_id, state.last_seq, state.finished, event)
    _APPLIERS[event.kind](state, event)
    state.last_seq = event.seq
    if event.kind != "critic_decided":  # kinds, not isinstance: pydantic's ABC check costs µs
        state.last_activity_at = event.at
        state.decisions_since_activity = 0
    return state


def _check_next(run_id: str, last_seq: int, finished: bool, event: Event) -> None:
    if event.run_id != run_id:
        raise EventOrderError(run_id, f"event seq {event.seq} belongs to run {event.run_id}")
    if event.seq != last_seq + 1:
        raise EventOrderError(run_id, f"expected seq {last_seq + 1}, got {event.seq} ({event.kind})")
    if finished:
        raise EventOrderError(run_id, f"{event.kind} at seq {event.seq} after run_finished")
    if event.kind == "run_started":
        raise EventOrderError(run_id, f"second run_started at seq {event.seq}")


def check_order(events: Sequence[Event]) -> None:
    """Refuse a log that :func:`rebuild` would refuse for its order, without folding it.

    Raises:
        EventOrderError: as :func:`apply` would.
    """
    if not events:
        raise EventOrderError("?", "no events to rebuild a run from")
    first = events[0]
    if not isinstance(first, RunStarted) or first.seq != 1:
        raise EventOrderError(first.run_id, f"a run must begin with run_started at seq 1, got {first.kind}")
    for previous, event in itertools.pairwise(events):
        _check_next(first.run_id, previous.seq, previous.kind == "run_finished", event)


def rebuild(events: Iterable[Event]) -> RunState:
    """Fold a run's whole log into its state.

    Raises:
        EventOrderError: the log is empty or out of order.
    """
    state: RunState | None = None
    for event in events:
        state = apply(state, event)
    if state is None:
        raise EventOrderError("?", "no events to rebuild a run from")
    return state
