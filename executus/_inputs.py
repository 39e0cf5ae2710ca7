"""What happens to a run from outside its own decisions: the core's inputs.

Each input is a frozen fact carrying the instant it happened (``at``, from the run's clock).
The driver makes them from what its tasks, timers and callers report; the replayer makes them
from a recorded log. :func:`executus._core.decide` turns each into events and effects.

Text in an input has been through :mod:`executus._text` already: the driver cleans what it
receives from models, tools and sessions before it builds an input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeAlias

from pydantic import JsonValue, ValidationError

from executus._events import AgentSpec, ArtifactRef, ErrorInfo, SteerMessage, ToolCallFragment
from executus._messages import ModelResponse, ToolCall, Usage, sharing_fields_set
from executus._storable import clean_json, clean_text

__all__ = [
    "NOT_AN_OBJECT",
    "CallerCancelled",
    "ChildRunRequested",
    "Input",
    "ModelCallFailed",
    "ModelChunksArrived",
    "ModelReplied",
    "ParentStopped",
    "PostRunDone",
    "RetryDue",
    "RunRequested",
    "RunResumeRequested",
    "ShutdownRequested",
    "SteerArrived",
    "StoreFailed",
    "TimerFired",
    "ToolCallFinished",
    "reply_input",
]

NOT_AN_OBJECT: Final = "__executus_arguments_not_an_object__"
"""The key under which a call's arguments are kept when the model sent no JSON object."""


@dataclass(frozen=True, slots=True)
class RunRequested:
    """A caller asked for a new run; set-up (model, session, tools) is done or failed."""

    at: datetime
    spec: AgentSpec
    input: str
    caller_id: str | None
    parent_run_id: str | None
    parent_call_id: str | None
    executor_version: str
    setup_error: ErrorInfo | None = None
    """Why the run could not be set up (it ends as an error at once), or None."""
    cancelled: str | None = None
    """The detail of a cancel asked for before the run started (it ends cancelled at once,
    before any side effect), or None."""


@dataclass(frozen=True, slots=True)
class RunResumeRequested:
    """A process took over an interrupted run (its state is the fold of its log)."""

    at: datetime
    executor_version: str
    setup_error: ErrorInfo | None = None
    worker_id: str | None = None
    """The worker taking the run over (None: the store keeps no leases)."""
    previous_owner: str | None = None
    """The worker whose lease on the run expired (or was overridden), if any."""
    lease_expired_at: datetime | None = None
    """When that lease ran out (None for a forced takeover of a live lease)."""
    forced: bool = False
    """Taken over while the previous owner's lease was live (``resume --force``)."""
    cancelled: str | None = None
    """The detail of a cancel asked for before the run was taken over (a cross-process cancel
    waiting for a worker): it ends cancelled at once, re-running and starting nothing."""


@dataclass(frozen=True, slots=True)
class ModelReplied:
    """The model answered the call for ``step``."""

    at: datetime
    step: int
    text: str | None
    tool_calls: tuple[ToolCall, ...]
    usage: Usage
    latency: float
    """Seconds the call took, as the driver measured it."""
    finish_reason: str | None = None
    """Why the model stopped, in the provider's words (None: it did not say)."""


@dataclass(frozen=True, slots=True)
class ModelChunksArrived:
    """Part of the streamed reply for ``step`` arrived (a batch of deltas; text already clean)."""

    at: datetime
    step: int
    text: str
    tool_calls: tuple[ToolCallFragment, ...]


@dataclass(frozen=True, slots=True)
class ModelCallFailed:
    """An attempt at the model call for ``step`` raised (or answered with something unusable);
    the agent's retry policy decides from ``error`` whether to try again."""

    at: datetime
    step: int
    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class RetryDue:
    """The back-off after a failed attempt at ``step``'s model call is over: try again."""

    at: datetime
    step: int


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    """One tool call ended; exactly one of ``result`` and ``error`` is set."""

    at: datetime
    call_id: str
    name: str
    result: str | None
    error: ErrorInfo | None
    duration: float


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The run's watchdog timer (deadline and critic checks) went off."""

    at: datetime


@dataclass(frozen=True, slots=True)
class CallerCancelled:
    """The caller cancelled the run (its cancellation handle, or its task)."""

    at: datetime
    detail: str


@dataclass(frozen=True, slots=True)
class ShutdownRequested:
    """The executor is shutting down."""

    at: datetime
    detail: str


@dataclass(frozen=True, slots=True)
class ParentStopped:
    """The run's parent stopped in this process without ending (its lease lost, or handed over)."""

    at: datetime
    detail: str


@dataclass(frozen=True, slots=True)
class SteerArrived:
    """A session or a tool attached a message for the model's next step."""

    at: datetime
    message: SteerMessage


@dataclass(frozen=True, slots=True)
class ChildRunRequested:
    """A running tool asked to start a child run."""

    at: datetime
    call_id: str
    child_run_id: str


@dataclass(frozen=True, slots=True)
class StoreFailed:
    """The store could not commit the run's events and gave up."""

    at: datetime
    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class PostRunDone:
    """The session's post-run hook and cleanup ran (``ran`` is False when there is no session)."""

    at: datetime
    ran: bool
    artifacts: tuple[ArtifactRef, ...] = ()
    metadata: Mapping[str, JsonValue] = field(default_factory=dict)
    error: ErrorInfo | None = None
    cleanup_error: ErrorInfo | None = None


Input: TypeAlias = (
    RunRequested
    | RunResumeRequested
    | ModelReplied
    | ModelChunksArrived
    | ModelCallFailed
    | RetryDue
    | ToolCallFinished
    | TimerFired
    | CallerCancelled
    | ShutdownRequested
    | ParentStopped
    | SteerArrived
    | ChildRunRequested
    | StoreFailed
    | PostRunDone
)


def reply_input(
    response: ModelResponse, step: int, at: Any, latency: float
) -> ModelReplied | ModelCallFailed:
    """A model's response as the core's input: validated again (an adapter may have built it
    with ``model_construct``), text made storable, non-object arguments kept aside."""
    try:
        usage = Usage.model_validate(dict(vars(response.usage)))
        counts = {name: value for name, value in vars(usage).items() if isinstance(value, int)}
        negative = {name: value for name, value in counts.items() if value < 0}
        if negative:
            raise ValueError(f"negative token counts {negative}")
        calls = tuple(_tool_call(call) for call in response.tool_calls)
        text: str | None = response.text
        if text is not None and not isinstance(text, str):
            raise TypeError(f"the reply's text is a {type(text).__name__}, not a string")
    except (ValidationError, ValueError, TypeError, AttributeError) as error:
        return ModelCallFailed(
            at=at,
            step=step,
            error=ErrorInfo(
                type="InvalidModelResponse", message=clean_text(f"the model's reply is unusable: {error}")
            ),
        )
    return ModelReplied(
        at=at,
        step=step,
        text=None if text is None else clean_text(text),
        tool_calls=calls,
        usage=usage,
        latency=latency,
        finish_reason=None if response.finish_reason is None else clean_text(response.finish_reason),
    )


def _tool_call(call: ToolCall) -> ToolCall:
    arguments: Any = call.arguments
    if not isinstance(arguments, dict):
        arguments = {NOT_AN_OBJECT: clean_json(arguments)}
    validated = ToolCall.model_validate(
        {
            "id": clean_text(str(call.id)),
            "name": clean_text(str(call.name)),
            "arguments": clean_json(arguments),
        }
    )
    return sharing_fields_set(validated)  # the transcript keeps it for the rest of the run
