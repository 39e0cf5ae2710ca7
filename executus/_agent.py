"""What a user hands the executor (agent, invocation, session) and what they get back (result)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeAlias

from pydantic import JsonValue

from executus._critic import Critic
from executus._errors import ConfigurationError
from executus._events import ErrorInfo, ModelResponded, RunStatus
from executus._messages import Image, Message, ModelSettings, Usage
from executus._model import Model
from executus._retry import RetryPolicy
from executus._state import RunState
from executus._tools import ContextParameter, Tool
from executus._weak import weakly

__all__ = [
    "DEFAULT_RETRY",
    "Agent",
    "Artifact",
    "BudgetPort",
    "Cancellation",
    "DeliveryPort",
    "Invocation",
    "PostRun",
    "Result",
    "Session",
    "SessionContext",
    "SessionFactory",
    "ToolContext",
]


DEFAULT_RETRY: Final = RetryPolicy()
"""An agent's retry policy unless it names one: three attempts per step, 0.5 s then 1 s of
back-off, at least the server's retry-after (the policy the SDKs apply when left to retry)."""


@dataclass(frozen=True, slots=True)
class Agent:
    """A model, a system prompt, tools, limits and an optional critic.

    Attributes:
        name: the agent's name, recorded with every run.
        model: a model name for the executor's resolver, or a model object.
        system_prompt: the first message of every transcript.
        tools: tools every run of this agent can call.
        max_iterations: model calls allowed before the run ends as an error.
        max_runtime: seconds a run may take from its start (None: no limit); past it the run
            ends as timeout.
        critic: a watchdog for stalled runs, or None.
        parallel_tool_calls: run the tool calls of one reply concurrently (their events are
            still recorded in call order).
        model_settings: sampling, length and reasoning settings sent with every model request
            and recorded with the run (None: the model's defaults).
        retry: how failed model calls are retried (attempts, back-off on the run's clock,
            which failures), recorded with the run; None: never retry.
    """

    name: str
    model: str | Model
    system_prompt: str = ""
    tools: Sequence[Tool] = ()
    max_iterations: int = 20
    max_runtime: float | None = None
    critic: Critic | None = None
    parallel_tool_calls: bool = True
    model_settings: ModelSettings | None = None
    retry: RetryPolicy | None = DEFAULT_RETRY

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ConfigurationError(f"agent {self.name}: max_iterations must be at least 1")
        if self.max_runtime is not None and self.max_runtime <= 0:
            raise ConfigurationError(f"agent {self.name}: max_runtime must be positive seconds or None")
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise ConfigurationError(f"agent {self.name}: retry must be a RetryPolicy or None")

    @property
    def model_name(self) -> str:
        """The model's name as recorded in the run."""
        return self.model if isinstance(self.model, str) else self.model.name


class Cancellation:
    """A handle the caller keeps to cancel a run and still get its :class:`Result`.

    Cancelling the task that awaits ``Executor.run`` also cancels the run (and re-raises
    ``CancelledError`` once everything is recorded); this handle is for callers that want the
    result. Call :meth:`cancel` from the event loop's thread.
    """

    def __init__(self) -> None:
        self._listeners: list[Callable[[str], None]] = []
        self.detail: str | None = None

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self.detail is not None

    def cancel(self, detail: str = "cancelled by the caller") -> None:
        """Stop the run: it ends with status cancelled, cause ``caller``."""
        if self.detail is None:
            self.detail = detail
            for listener in list(self._listeners):
                listener(detail)

    def subscribe(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(detail)`` on cancel (at once if already cancelled); returns an unsubscribe."""
        if self.detail is not None:
            listener(self.detail)
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None


@dataclass(frozen=True, slots=True)
class Artifact:
    """A file a session's post-run hook made from the run."""

    name: str
    media_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class PostRun:
    """What a post-run hook returns: artifacts and free-form metadata."""

    artifacts: Sequence[Artifact] = ()
    metadata: dict[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What a session factory is told about the run it serves."""

    run_id: str
    caller_id: str | None
    _attach: Callable[[str, tuple[Image, ...]], None] = field(repr=False)

    def __post_init__(self) -> None:
        # The run holds its session, and a session may keep its context: a strong reference
        # back to the run would make a cycle that keeps a finished run (its whole transcript)
        # alive until a full garbage collection.
        object.__setattr__(self, "_attach", _held_weakly(self._attach))

    def attach_images(self, text: str, *images: Image) -> None:
        """Queue a user message with images, injected right before the model's next step
        (nothing, once the run is over)."""
        self._attach(text, images)


def _held_weakly(
    function: Callable[[str, tuple[Image, ...]], None],
) -> Callable[[str, tuple[Image, ...]], None]:
    """``function``, holding its object weakly if it is a bound method (gone: a no-op)."""
    if not inspect.ismethod(function):
        return function
    method = weakly(function)

    def call(text: str, images: tuple[Image, ...]) -> None:
        alive = method()
        if alive is not None:
            alive(text, images)

    return call


@dataclass(frozen=True, slots=True)
class ToolContext(ContextParameter):
    """What a running tool may know and do about its run.

    Attributes:
        run_id: the run calling the tool.
        call_id: the model's id for this call.
        tool_name: the tool's name.
    """

    run_id: str
    call_id: str
    tool_name: str
    _attach: Callable[[str, tuple[Image, ...]], None] = field(repr=False)
    _start_child: Callable[..., Awaitable[Result]] = field(repr=False)

    def attach_images(self, text: str, *images: Image) -> None:
        """Queue a user message with images, injected right before the model's next step."""
        self._attach(text, images)

    async def start_child(self, agent: Agent, input: str, invocation: Invocation | None = None) -> Result:
        """Run another agent as a child of this run and wait for its result.

        The parent's log records ``child_run_started`` with the child's id before the child
        starts, and the child's ``run_started`` names this run and call as its parent.
        """
        return await self._start_child(agent, input, invocation, self.call_id)


class Session:
    """Per-run extras: tools, a post-run hook and a cleanup. Subclass and override.

    Neither :meth:`post_run` nor :meth:`cleanup` can fail a run: their exceptions are logged
    and recorded in ``post_run_finished``. Both run after the run ends, even when the caller
    cancelled it.
    """

    tools: Sequence[Tool] = ()

    async def post_run(
        self, transcript: Sequence[Message], output: str | None, error: ErrorInfo | None
    ) -> PostRun:
        """Turn the finished transcript into artifacts and metadata."""
        return PostRun()

    async def cleanup(self) -> None:
        """Release what the session holds (temp dirs, browsers, connections)."""


SessionFactory: TypeAlias = Callable[[SessionContext], "Session | Awaitable[Session]"]


@dataclass(frozen=True, slots=True)
class Invocation:
    """One request to run an agent.

    Attributes:
        run_id: the run's id; generated by the executor's id source when None.
        caller_id: who asked (charged by the budget port).
        tools: extra tools for this run only.
        session: makes per-run session tools, post-run hook and cleanup.
        on_step: called with every model reply's event once it is committed, before its tools
            run (exceptions are logged).
        cancellation: a handle to cancel the run and still receive a result.
    """

    run_id: str | None = None
    caller_id: str | None = None
    tools: Sequence[Tool] = ()
    session: SessionFactory | None = None
    on_step: Callable[[ModelResponded], None] | None = None
    cancellation: Cancellation | None = None
    parent_run_id: str | None = None
    parent_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """How a run ended.

    Attributes:
        run_id: the run's id.
        status: ok, error, timeout, cancelled or killed.
        output: the model's final text (status ok).
        error: what went wrong (status error); for timeout, cancelled and killed, the cause.
        steps: model calls made.
        usage: tokens summed over the run.
        duration: seconds from start to end, on the executor's clock.
        state: the run's final state (transcript, critic decisions, …), the fold of its log.
        artifacts: files from the session's post-run hook.
        metadata: metadata from the session's post-run hook.
    """

    run_id: str
    status: RunStatus
    output: str | None
    error: ErrorInfo | None
    steps: int
    usage: Usage
    duration: float
    state: RunState = field(repr=False, compare=False)
    artifacts: tuple[Artifact, ...] = ()
    metadata: dict[str, JsonValue] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the run ended with a final answer."""
        return self.status == "ok"


class BudgetPort(Protocol):
    """Charges callers for run time; called after every run, whatever its status."""

    async def commit(self, caller_id: str | None, seconds: float) -> None: ...


class DeliveryPort(Protocol):
    """Hands a finished run's artifacts to the host."""

    async def deliver(self, result: Result) -> None: ...
