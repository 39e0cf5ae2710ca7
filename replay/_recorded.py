"""Stand-ins that play a recorded run back: its model, its tools, its critic and its session.

Each waits on the replay's virtual clock until the *recorded* instant of what it plays back
(a reply, a tool's end, a critic decision, the post-run hook's end), so every deadline and
critic check happens at the same virtual instant as in the recording, and nothing drifts
even when the recording was made on the wall clock. Something that was still in flight when
the recorded run stopped (a model call, a tool) hangs until the replay stops it the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, JsonValue

from executus import (
    Agent,
    Artifact,
    Blob,
    Clock,
    CriticDecided,
    CriticDecision,
    CriticSpec,
    ErrorInfo,
    InvalidArgumentsError,
    Invocation,
    Message,
    ModelFailed,
    ModelRequest,
    ModelResponse,
    PostRun,
    PostRunFinished,
    RunState,
    Session,
    Tool,
    ToolContext,
    ToolSpec,
)
from replay._recording import SETTLE_YIELDS, Recording

__all__ = [
    "RecordedCritic",
    "RecordedModel",
    "RecordedSession",
    "RecordedTool",
    "RecordingMissError",
    "raise_recorded",
]

_NEVER = 30.0 * 24 * 3600
"""A wait long enough to mean "until stopped" (the replay's horizon ends it long before).

Not longer: past about 2**24 seconds a float clock can no longer tell asyncio's timer
resolution apart, and the virtual clock would spin at one instant."""


class RecordingMissError(Exception):
    """The replay asked for something the recording does not hold (a step, a tool call)."""


@functools.cache
def _error_class(name: str) -> type[Exception]:
    return type(name, (Exception,), {"__module__": "replay.recorded"})


def raise_recorded(error: ErrorInfo) -> Exception:
    """An exception that the executor records as exactly ``error`` (same type name and message)."""
    if error.type == "InvalidArguments":
        return InvalidArgumentsError(error.message)
    return _error_class(error.type)(error.message)


async def sleep_until(clock: Clock, instant: datetime) -> None:
    """Wait on ``clock`` until ``instant``; return at once (without yielding) if it has passed."""
    seconds = (instant - clock.now()).total_seconds()
    if seconds > 0:
        await clock.sleep(seconds)


async def hang(clock: Clock) -> None:
    """Wait until the replay stops this task (it was in flight when the recorded run stopped)."""
    await clock.sleep(_NEVER)


class RecordedModel:
    """Serves the recorded reply (or failure) for each step, at its recorded instant."""

    def __init__(self, name: str, recording: Recording, clock: Clock) -> None:
        self._name = name
        self._recording = recording
        self._clock = clock
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return self._name

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        key = (self._recording.segment, request.step)
        reply = self._recording.replies.get(key)
        if reply is None:
            if key in self._recording.requests:
                await hang(self._clock)
            raise RecordingMissError(f"the recording has no model reply for step {request.step}")
        await sleep_until(self._clock, reply.at)
        await self._recording.settle(reply.seq - 1)
        if isinstance(reply, ModelFailed):
            raise raise_recorded(reply.error)
        return ModelResponse(text=reply.text, tool_calls=reply.tool_calls, usage=reply.usage)


class _NoArguments(BaseModel):
    model_config = ConfigDict(extra="allow")


class RecordedTool(Tool):
    """A tool with a given schema that returns its calls' recorded results (no side effects)."""

    __slots__ = ("_clock", "_recording", "_spec", "on_context")

    def __init__(
        self,
        spec: ToolSpec,
        recording: Recording,
        clock: Clock,
        on_context: Callable[[ToolContext], None] | None = None,
    ) -> None:
        super().__init__(
            self._play,
            name=spec.name,
            description=spec.description,
            args_model=_NoArguments,
            context_param="context",
        )
        self.parameters = dict(spec.parameters)
        self._spec = spec
        self._recording = recording
        self._clock = clock
        self.on_context = on_context

    def spec(self) -> ToolSpec:
        return self._spec

    def bind(self, arguments: Mapping[str, JsonValue], context: ToolContext) -> tuple[dict[str, Any], bool]:
        return {"context": context}, True

    async def _play(self, context: ToolContext) -> str:
        began = self._clock.now()
        if self.on_context is not None:
            self.on_context(context)
        recording = self._recording
        started = recording.tool_starts.get(context.call_id)
        if started is None:
            raise RecordingMissError(f"the recording has no tool call {context.call_id}")
        for child in recording.children.get(context.call_id, []):
            if recording.segment_of(child.seq) == recording.segment:
                await sleep_until(self._clock, child.at)
                await context.start_child(
                    _CHILD, "(replayed child run)", Invocation(run_id=child.child_run_id)
                )
        finished = recording.tool_ends.get(context.call_id)
        if finished is not None and recording.segment_of(finished.seq) != recording.segment:
            finished = None  # it was in flight when the process died; resume records it as failed
        if finished is None:
            await hang(self._clock)
            raise RecordingMissError(f"the recording has no result for tool call {context.call_id}")
        # The tool takes its recorded duration from its own start (the replay's clock has been
        # moved to the recorded start of the batch, see Recording.continued_at).
        await sleep_until(self._clock, began + timedelta(seconds=finished.duration))
        await recording.settle(recording.batch_start(finished.seq) - 1)
        if finished.error is not None:
            raise raise_recorded(finished.error)
        return finished.result or ""


class _InstantModel:
    name = "replayed-child"

    async def request(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(text="")


_CHILD = Agent(name="replayed-child", model=_InstantModel())
"""Stands in for a delegated child agent: the parent's log only records the child's id."""


class RecordedCritic:
    """Re-issues the recorded critic decisions at their recorded instants.

    It reports the recorded critic's spec, and its check interval is always the time until
    the next recorded decision, so each decision lands on the same virtual instant.
    """

    def __init__(self, spec: CriticSpec, decisions: Sequence[CriticDecided], clock: Clock) -> None:
        self._spec = spec
        self._decisions = list(decisions)
        self._clock = clock
        self._issued = 0
        self._held = 0
        """Consecutive checks at which the next decision was due but its turn had not come."""

    @property
    def check_interval(self) -> float:
        if self._issued >= len(self._decisions):
            return _NEVER
        if 0 < self._held < SETTLE_YIELDS:
            return 0.0  # due now, after the events recorded before it at this same instant
        wait = (self._decisions[self._issued].at - self._clock.now()).total_seconds()
        return max(wait, 1e-6)

    def spec(self) -> CriticSpec:
        return self._spec

    def decide(self, state: RunState, now: datetime) -> CriticDecision | None:
        self._issued = len(state.critic_decisions)
        if self._issued >= len(self._decisions):
            return None
        recorded = self._decisions[self._issued]
        if (recorded.at - now).total_seconds() > 1e-6:
            return None
        if state.last_seq < recorded.seq - 1 and self._held < SETTLE_YIELDS:
            self._held += 1
            return None
        self._held = 0
        self._issued += 1
        return decision_of(recorded)


def decision_of(event: CriticDecided) -> CriticDecision:
    """The critic decision a ``critic_decided`` event records."""
    seconds = 0.0
    if event.old_deadline is not None and event.new_deadline is not None:
        seconds = (event.new_deadline - event.old_deadline).total_seconds()
    steps = 0
    if event.old_max_steps is not None and event.new_max_steps is not None:
        steps = event.new_max_steps - event.old_max_steps
    return CriticDecision(event.decision, event.reason, nudge=event.nudge, seconds=seconds, steps=steps)


class RecordedSession(Session):
    """Plays back the post-run hook and cleanup: the recorded artifacts, metadata and errors."""

    def __init__(self, recording: Recording, blobs: Callable[[str], Blob], clock: Clock) -> None:
        self._recording = recording
        self._blobs = blobs
        self._clock = clock

    @property
    def _recorded(self) -> PostRunFinished | None:
        return self._recording.post_runs.get(self._recording.segment)

    async def post_run(
        self, transcript: Sequence[Message], output: str | None, error: ErrorInfo | None
    ) -> PostRun:
        recorded = self._recorded
        if recorded is None:
            await hang(self._clock)  # the process died while the hook ran
            raise RecordingMissError("the recording has no post-run outcome here")
        await sleep_until(self._clock, recorded.at)
        if recorded.error is not None:
            raise raise_recorded(recorded.error)
        artifacts = [
            Artifact(ref.name, ref.media_type, self._blobs(ref.sha256).data) for ref in recorded.artifacts
        ]
        return PostRun(artifacts=artifacts, metadata=dict(recorded.metadata))

    async def cleanup(self) -> None:
        recorded = self._recorded
        if recorded is not None and recorded.cleanup_error is not None:
            raise raise_recorded(recorded.cleanup_error)
