"""The executor: runs an agent step by step, recording every step as an event.

A run is two tasks on the caller's event loop (or the virtual clock's): the *loop* (model
call, tool calls, steer injection, repeat) and the *watchdog* (runtime deadline and critic
checks). Either may end the run; the first cause to arrive decides its status and later ones
change nothing, so a real error is never relabelled by a cancellation that came after it.

The executor's knowledge of a run is its :class:`RunState`, and that changes only by
recording an event: folding it with :func:`apply` and queueing it for the store. Queued events
are committed in one transaction before the run next waits on anything (a model, a tool, a
timer), so any event that precedes a side effect (``model_requested``, ``tool_started``,
``child_run_started``) is committed before the side effect starts: a process that dies mid-run
leaves a log that says what was in flight, and :meth:`Executor.resume` can carry on from it.
Events recorded with no wait between them share a transaction (a step is two: the reply with
its ``tool_started`` events, and the tool results with the steer messages and the next
``model_requested``), which halves what a step costs the database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Literal, TypeAlias

from executus._agent import (
    Agent,
    Artifact,
    BudgetPort,
    DeliveryPort,
    Invocation,
    PostRun,
    Result,
    Session,
    SessionContext,
)
from executus._clock import Clock, IdGenerator, RandomIds, SystemClock
from executus._critic import CriticDecision
from executus._errors import ConfigurationError, RunNotResumableError
from executus._events import (
    AgentSpec,
    ArtifactRef,
    CancelCause,
    ChildRunStarted,
    CriticDecided,
    ErrorInfo,
    Event,
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
    SteerMessage,
    ToolFinished,
    ToolStarted,
)
from executus._messages import AssistantMessage, Image, ImagePart, ModelRequest, ToolCall, UserMessage
from executus._model import Model, ModelRegistry, ModelResolver
from executus._state import RunState, apply, rebuild
from executus._store import EventStore, MemoryStore
from executus._tools import InvalidArgumentsError, Tool, ToolContext, render_result

__all__ = ["EXECUTOR_VERSION", "Executor"]

EXECUTOR_VERSION: Final = "0.1.0"
logger = logging.getLogger("executus")
SteerSource: TypeAlias = Literal["session", "critic"]

_STATUS_OF_CAUSE: Final[Mapping[CancelCause, RunStatus]] = {
    "caller": "cancelled",
    "shutdown": "cancelled",
    "timeout": "timeout",
    "critic_kill": "killed",
}


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: RunStatus
    output: str | None = None
    error: ErrorInfo | None = None


class Executor:
    """Runs agents and records each run as an event log.

    Args:
        store: where runs are recorded; an in-memory store by default.
        models: resolves an agent's model name to a model (a mapping or any callable).
        clock: time and waiting; :class:`SystemClock` by default, :class:`VirtualClock` for
            tests and replay.
        ids: run ids; random by default.
        budget: charged with each run's duration after it ends.
        delivery: receives each finished run's artifacts.
        on_event: called with every event of every run (child runs too) as it is recorded, in
            seq order, on the event loop's thread. The event is already in the run's state, and
            is committed before the run next waits on anything; an exception is logged and
            ignored. This is where a live view, a metrics exporter or the replayer listens.
    """

    def __init__(
        self,
        store: EventStore | None = None,
        *,
        models: ModelResolver | Mapping[str, Model] | None = None,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        budget: BudgetPort | None = None,
        delivery: DeliveryPort | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.store: EventStore = store if store is not None else MemoryStore()
        self._resolve: ModelResolver = (
            ModelRegistry(models) if isinstance(models, Mapping) else models or ModelRegistry()
        )
        self.clock: Clock = clock or SystemClock()
        self.ids: IdGenerator = ids or RandomIds()
        self._budget = budget
        self._delivery = delivery
        self._on_event = on_event
        self._active: dict[str, _LiveRun] = {}

    async def run(self, agent: Agent, invocation: Invocation | None, input: str) -> Result:
        """Run ``agent`` on ``input`` until it answers, fails, times out, is cancelled or killed.

        Cancelling the awaiting task cancels the run: the cancellation is recorded, the
        session's post-run hook still runs, and then ``CancelledError`` propagates. Use
        ``Invocation(cancellation=...)`` to cancel and still receive the :class:`Result`.

        Raises:
            ConfigurationError: the clock cannot run on this event loop.
            StoreError: the run could not be recorded (it stops at once; its log stays valid).
        """
        self.clock.check_loop()
        invocation = invocation or Invocation()
        live = _LiveRun(self, agent, invocation, invocation.run_id or self.ids.new_run_id())
        return await live.start(input)

    def run_sync(self, agent: Agent, invocation: Invocation | None, input: str) -> Result:
        """Run an agent from synchronous code, on an event loop the executor's clock can drive."""
        return self.clock.run(self.run(agent, invocation, input))

    async def resume(self, run_id: str, agent: Agent, invocation: Invocation | None = None) -> Result:
        """Carry on an interrupted run (one whose log has no ``run_finished``) from its log.

        A model call in flight is made again (it has no side effects). A tool call in flight is
        recorded as failed with error type ``Interrupted`` and the model decides what to do:
        tools may have side effects, so they are never re-run behind the model's back.

        Raises:
            RunNotFoundError: no such run.
            RunNotResumableError: the run already finished.
        """
        self.clock.check_loop()
        state = rebuild(self.store.read_run(run_id))
        if state.finished:
            raise RunNotResumableError(run_id, state.status)
        invocation = dataclasses.replace(
            invocation or Invocation(),
            run_id=run_id,
            caller_id=state.caller_id,
            parent_run_id=state.parent_run_id,
        )
        live = _LiveRun(self, agent, invocation, run_id, state=state)
        return await live.start(state.input)

    async def shutdown(self, detail: str = "the executor is shutting down") -> None:
        """Cancel every active run (cause ``shutdown``) and wait until each is recorded as ended."""
        runs = list(self._active.values())
        for live in runs:
            live.stop("shutdown", detail)
        for live in runs:
            await live.finished.wait()


class _LiveRun:
    """One run in progress: its state, tools, steer mailbox, and the two tasks that drive it."""

    def __init__(
        self,
        executor: Executor,
        agent: Agent,
        invocation: Invocation,
        run_id: str,
        state: RunState | None = None,
    ) -> None:
        self.executor = executor
        self.store = executor.store
        self.clock = executor.clock
        self.agent = agent
        self.invocation = invocation
        self.run_id = run_id
        self._state = state
        self._queued: list[Event] = []
        self._committed_seq = state.last_seq if state is not None else 0
        self.mailbox: list[tuple[SteerSource, SteerMessage]] = [
            ("critic", SteerMessage(text=text)) for text in (state.pending_nudges if state else [])
        ]
        self.images: dict[str, bytes] = {}
        self.tools: dict[str, Tool] = {}
        self.model: Model | None = None
        self.session: Session | None = None
        self.stop_cause: tuple[CancelCause, str] | None = None
        self.loop_task: asyncio.Task[_Outcome] | None = None
        self.finished = asyncio.Event()

    @property
    def state(self) -> RunState:
        assert self._state is not None, "the run has not started"
        return self._state

    # -- recording ---------------------------------------------------------------------------

    def record(self, *events: Event, commit: bool = True) -> None:
        """Fold events into the run's state and queue them for the store: the only way state
        changes. ``commit=False`` leaves them queued for the next :meth:`commit`, which must
        come before the run waits on anything."""
        on_event = self.executor._on_event
        for event in events:
            self._state = apply(self._state, event)
            self._queued.append(event)
            if on_event is not None:
                try:
                    on_event(event)
                except Exception:
                    logger.exception("run %s: on_event callback failed", self.run_id)
        if commit:
            self.commit()

    def commit(self) -> None:
        """Append the queued events in one transaction, then tell ``on_step`` of any reply."""
        if not self._queued:
            return
        batch, self._queued = self._queued, []
        try:
            self.store.append(self.run_id, batch, self._committed_seq)
        except BaseException:
            self._queued[:0] = batch  # still not committed: a later commit must not skip them
            raise
        self._committed_seq = batch[-1].seq
        for event in batch:
            if isinstance(event, ModelResponded):
                self._notify_step(event)

    def _envelope(self, offset: int = 1) -> dict[str, Any]:
        seq = (self._state.last_seq if self._state is not None else 0) + offset
        return {"run_id": self.run_id, "seq": seq, "at": self.clock.now()}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, input: str) -> Result:
        setup_error = await self._set_up()
        if self._state is None:
            self.record(
                RunStarted(
                    **self._envelope(),
                    agent=self._spec(),
                    input=input,
                    caller_id=self.invocation.caller_id,
                    parent_run_id=self.invocation.parent_run_id,
                    parent_call_id=self.invocation.parent_call_id,
                    executor_version=EXECUTOR_VERSION,
                )
            )
        else:
            self._record_resumed()
        try:
            return await self._drive(setup_error)
        finally:
            self.finished.set()

    async def _set_up(self) -> ErrorInfo | None:
        """Resolve the model and make the session; a failure here ends the run as an error."""
        try:
            self.model = (
                self.agent.model
                if not isinstance(self.agent.model, str)
                else self.executor._resolve(self.agent.model)
            )
            if self.invocation.session is not None:
                context = SessionContext(self.run_id, self.invocation.caller_id, self._attach)
                made = self.invocation.session(context)
                self.session = await made if inspect.isawaitable(made) else made
            session_tools = self.session.tools if self.session else ()
            for tool in (*self.agent.tools, *self.invocation.tools, *session_tools):
                if tool.name in self.tools:
                    raise ConfigurationError(f"two tools are named {tool.name!r}")
                self.tools[tool.name] = tool
        except Exception as error:
            logger.warning("run %s could not be set up: %s", self.run_id, error)
            return ErrorInfo.of(error)
        return None

    def _spec(self) -> AgentSpec:
        agent = self.agent
        return AgentSpec(
            name=agent.name,
            model=agent.model_name,
            system_prompt=agent.system_prompt,
            tools=tuple(self.tools[name].spec() for name in sorted(self.tools)),
            max_iterations=agent.max_iterations,
            max_runtime=agent.max_runtime,
            parallel_tool_calls=agent.parallel_tool_calls,
            critic=agent.critic.spec() if agent.critic else None,
        )

    def _record_resumed(self) -> None:
        state = self.state
        now = self.clock.now()
        downtime = max(0.0, (now - state.last_activity_at).total_seconds())
        new_deadline = state.deadline + timedelta(seconds=downtime) if state.deadline else None
        self.record(
            RunResumed(
                **self._envelope(),
                interrupted=self.state.in_flight,
                downtime=downtime,
                old_deadline=state.deadline,
                new_deadline=new_deadline,
                executor_version=EXECUTOR_VERSION,
            )
        )
        interrupted = sorted(self.state.pending_tools.values(), key=lambda tool: tool.started_at)
        if interrupted:
            error = ErrorInfo(
                type="Interrupted",
                message="the process running this tool stopped before it finished; it was not re-run",
            )
            self.record(
                *(
                    ToolFinished(
                        **self._envelope(offset),
                        call_id=tool.call_id,
                        name=tool.name,
                        error=error,
                        duration=0.0,
                    )
                    for offset, tool in enumerate(interrupted, start=1)
                )
            )
        for part in (
            p for message in self.state.transcript if isinstance(message, UserMessage) for p in message.parts
        ):
            if isinstance(part, ImagePart):
                self.images[part.sha256] = self.store.get_blob(part.sha256).data

    async def _drive(self, setup_error: ErrorInfo | None) -> Result:
        if setup_error is not None:
            return await self._finish(_Outcome("error", error=setup_error))
        decided = _decided_outcome(self.state)
        if decided is not None:
            # Resumed after the outcome was recorded but before run_finished: only finish it.
            return await self._finish(decided)
        self.loop_task = asyncio.create_task(self._loop(), name=f"executus-run-{self.run_id}")
        watchdog = asyncio.create_task(self._watch(), name=f"executus-watchdog-{self.run_id}")
        self.executor._active[self.run_id] = self
        cancellation = self.invocation.cancellation
        unsubscribe = (
            cancellation.subscribe(lambda detail: self.stop("caller", detail)) if cancellation else None
        )
        caller_cancelled = False
        try:
            await asyncio.wait([self.loop_task])
        except asyncio.CancelledError:
            caller_cancelled = True
            self.stop("caller", "the caller's task was cancelled")
            caller_cancelled |= await _wait_through_cancellation(self.loop_task)
        finally:
            self.executor._active.pop(self.run_id, None)
            if unsubscribe is not None:
                unsubscribe()
        watchdog.cancel()
        caller_cancelled |= await _wait_through_cancellation(watchdog)
        finish = asyncio.ensure_future(self._finish(self._outcome()))
        caller_cancelled |= await _wait_through_cancellation(finish)
        if caller_cancelled:
            raise asyncio.CancelledError
        return finish.result()

    def _outcome(self) -> _Outcome:
        assert self.loop_task is not None
        if self.loop_task.cancelled() or self.stop_cause is not None:
            cause, detail = self.stop_cause or ("caller", "cancelled")
            return _Outcome(_STATUS_OF_CAUSE[cause], error=ErrorInfo(type=cause, message=detail))
        error = self.loop_task.exception()
        if error is not None:
            raise error
        return self.loop_task.result()

    def stop(self, cause: CancelCause, detail: str) -> None:
        """End the run from outside its loop; the first cause wins, and only while it runs."""
        if self.stop_cause is not None or self.loop_task is None or self.loop_task.done():
            return
        self.stop_cause = (cause, detail)
        self.record(
            RunCancelled(**self._envelope(), cause=cause, detail=detail, in_flight=self.state.in_flight)
        )
        self.loop_task.cancel()

    async def _finish(self, outcome: _Outcome) -> Result:
        """Post-run hook and cleanup (never failing the run), ``run_finished``, then the ports."""
        artifacts: tuple[Artifact, ...] = ()
        metadata: dict[str, Any] = {}
        if self.session is not None and not self.state.post_run_done:
            post_run_error = cleanup_error = None
            try:
                made = await self.session.post_run(list(self.state.transcript), outcome.output, outcome.error)
                post_run = made if isinstance(made, PostRun) else PostRun()
                artifacts, metadata = tuple(post_run.artifacts), dict(post_run.metadata)
            except Exception as error:
                logger.exception("run %s: post_run failed", self.run_id)
                post_run_error = ErrorInfo.of(error)
            try:
                await self.session.cleanup()
            except Exception as error:
                logger.exception("run %s: session cleanup failed", self.run_id)
                cleanup_error = ErrorInfo.of(error)
            refs = tuple(
                ArtifactRef(
                    name=artifact.name,
                    media_type=artifact.media_type,
                    sha256=self.store.put_blob(artifact.data, artifact.media_type),
                    size=len(artifact.data),
                )
                for artifact in artifacts
            )
            self.record(
                PostRunFinished(
                    **self._envelope(),
                    artifacts=refs,
                    metadata=metadata,
                    error=post_run_error,
                    cleanup_error=cleanup_error,
                )
            )
        now = self.clock.now()
        duration = (now - self.state.started_at).total_seconds()
        self.record(
            RunFinished(
                **self._envelope(),
                status=outcome.status,
                output=outcome.output,
                error=outcome.error,
                usage=self.state.usage,
                steps=self.state.steps,
                duration=duration,
            )
        )
        result = Result(
            run_id=self.run_id,
            status=outcome.status,
            output=outcome.output,
            error=outcome.error,
            steps=self.state.steps,
            usage=self.state.usage,
            duration=duration,
            state=self.state,
            artifacts=artifacts,
            metadata=metadata,
        )
        await self._call_ports(result)
        return result

    async def _call_ports(self, result: Result) -> None:
        executor = self.executor
        if executor._delivery is not None:
            try:
                await executor._delivery.deliver(result)
            except Exception:
                logger.exception("run %s: delivery failed", self.run_id)
        if executor._budget is not None:
            try:
                await executor._budget.commit(self.invocation.caller_id, result.duration)
            except Exception:
                logger.exception("run %s: budget commit failed", self.run_id)

    # -- the loop ----------------------------------------------------------------------------

    async def _loop(self) -> _Outcome:
        outcome = await self._steps()
        self.commit()
        return outcome

    async def _steps(self) -> _Outcome:
        assert self.model is not None
        specs = [self.tools[name].spec() for name in sorted(self.tools)]
        state = self.state
        while True:
            if state.steps >= state.max_steps:
                return _Outcome(
                    "error",
                    error=ErrorInfo(
                        type="MaxIterationsExceeded",
                        message=f"the agent made {state.steps} model calls "
                        f"(max_iterations={state.max_steps}) without a final answer",
                    ),
                )
            self._inject_steer()
            step = state.steps + 1
            self.record(
                ModelRequested(
                    **self._envelope(),
                    step=step,
                    fingerprint=state.fingerprint,
                    message_count=len(state.transcript),
                )
            )
            requested_at = self.clock.now()
            try:
                response = await self.model.request(
                    ModelRequest(messages=state.transcript, tools=specs, images=self.images, step=step)
                )
            except Exception as error:
                failure = ErrorInfo.of(error)
                self.record(ModelFailed(**self._envelope(), step=step, error=failure))
                return _Outcome("error", error=failure)
            responded = ModelResponded(
                **self._envelope(),
                step=step,
                text=response.text,
                tool_calls=response.tool_calls,
                usage=response.usage,
                latency=(self.clock.now() - requested_at).total_seconds(),
            )
            self.record(responded, commit=False)  # with its tool_started events, or the outcome
            if not response.tool_calls:
                return _Outcome("ok", output=response.text or "")
            await self._run_tools(response.tool_calls)

    def _notify_step(self, event: ModelResponded) -> None:
        if self.invocation.on_step is None:
            return
        try:
            self.invocation.on_step(event)
        except Exception:
            logger.exception("run %s: on_step callback failed", self.run_id)

    def _inject_steer(self) -> None:
        """Record queued steer messages, grouped by source in arrival order, before a step."""
        batches: list[tuple[SteerSource, list[SteerMessage]]] = []
        for source, message in self.mailbox:
            if batches and batches[-1][0] == source:
                batches[-1][1].append(message)
            else:
                batches.append((source, [message]))
        self.mailbox.clear()
        if batches:
            self.record(
                *(
                    SteerInjected(**self._envelope(offset), source=source, messages=tuple(messages))
                    for offset, (source, messages) in enumerate(batches, start=1)
                ),
                commit=False,  # with the model_requested that follows at once
            )

    def _attach(self, text: str, images: tuple[Image, ...]) -> None:
        parts = []
        for image in images:
            digest = self.store.put_blob(image.data, image.media_type)
            self.images[digest] = image.data
            parts.append(image.part())
        self.mailbox.append(("session", SteerMessage(text=text, images=tuple(parts))))

    async def _run_tools(self, calls: Sequence[ToolCall]) -> None:
        """Run one reply's tool calls; events are recorded in call order either way."""
        if self.agent.parallel_tool_calls:
            self.record(*(self._tool_started(call, offset) for offset, call in enumerate(calls, start=1)))
            self._record_finished(await asyncio.gather(*(self._invoke(call) for call in calls)))
            return
        for call in calls:
            self.record(self._tool_started(call, 1))
            self._record_finished([await self._invoke(call)])

    def _record_finished(self, finished: Sequence[ToolFinished]) -> None:
        """Record tool results stamped with when the last of them finished.

        Not when this task woke up to record them: on a wall clock that wake-up latency is
        noise a replay cannot reproduce. Never earlier than the log's last event, so time in a
        log only moves forward.
        """
        at = max([event.at for event in finished] + [self.state.last_event_at])
        self.record(
            *(
                event.model_copy(update={**self._envelope(offset), "at": at})
                for offset, event in enumerate(finished, start=1)
            ),
            commit=False,  # with the next model_requested (or tool_started, or the outcome)
        )

    def _tool_started(self, call: ToolCall, offset: int) -> ToolStarted:
        return ToolStarted(
            **self._envelope(offset), call_id=call.id, name=call.name, arguments=call.arguments
        )

    async def _invoke(self, call: ToolCall) -> ToolFinished:
        """Run one tool call; every failure becomes an error result the model sees.

        The returned event's seq is a placeholder and its time is when the tool finished:
        :meth:`_record_finished` stamps both when it records the event.
        """
        started = self.clock.now()
        result: str | None = None
        error: ErrorInfo | None = None
        tool = self.tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            error = ErrorInfo(type="UnknownTool", message=f"no tool named {call.name!r} (available: {known})")
        else:
            context = ToolContext(self.run_id, call.id, call.name, self._attach, self._start_child)
            try:
                kwargs, is_async = tool.bind(call.arguments, context)
                if is_async:
                    value = await tool.function(**kwargs)
                else:
                    value = await self.clock.run_blocking(functools.partial(tool.function, **kwargs))
                result = render_result(value)
            except InvalidArgumentsError as invalid:
                error = ErrorInfo(type="InvalidArguments", message=str(invalid))
            except Exception as raised:
                error = ErrorInfo.of(raised)
        finished_at = self.clock.now()
        return ToolFinished(
            run_id=self.run_id,
            seq=1,
            at=finished_at,
            call_id=call.id,
            name=call.name,
            result=result,
            error=error,
            duration=(finished_at - started).total_seconds(),
        )

    async def _start_child(
        self, agent: Agent, input: str, invocation: Invocation | None, call_id: str
    ) -> Result:
        base = invocation or Invocation()
        child_id = base.run_id or self.executor.ids.new_run_id()
        tool_name = self.state.pending_tools[call_id].name if call_id in self.state.pending_tools else ""
        self.record(
            ChildRunStarted(**self._envelope(), child_run_id=child_id, call_id=call_id, tool_name=tool_name)
        )
        child = dataclasses.replace(
            base,
            run_id=child_id,
            caller_id=base.caller_id or self.invocation.caller_id,
            parent_run_id=self.run_id,
            parent_call_id=call_id,
        )
        return await self.executor.run(agent, child, input)

    # -- the watchdog ------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Enforce the deadline and consult the critic, on the run's clock."""
        critic = self.agent.critic
        while True:
            state = self.state
            now = self.clock.now()
            if state.deadline is not None and now >= state.deadline:
                if state.kill_reason is not None:
                    self.stop("critic_kill", state.kill_reason)
                else:
                    self.stop("timeout", self._timeout_detail())
                return
            if critic is not None:
                decision = critic.decide(state, now)
                if decision is not None:
                    self._record_decision(decision)
                    if decision.kind == "kill":
                        self.stop("critic_kill", decision.reason)
                        return
            waits = [critic.check_interval] if critic is not None else []
            if state.deadline is not None:
                waits.append((state.deadline - now).total_seconds())
            if not waits:
                return
            await self.clock.sleep(min(waits))

    def _timeout_detail(self) -> str:
        state = self.state
        runtime = f"max_runtime {state.agent.max_runtime:g}s" if state.agent.max_runtime else "no max_runtime"
        extended = sum(1 for decision in state.critic_decisions if decision.decision == "extend")
        suffix = f", extended {extended} time(s) by the critic" if extended else ""
        return f"the deadline {state.deadline:%Y-%m-%dT%H:%M:%S}Z passed ({runtime}{suffix})"

    def _record_decision(self, decision: CriticDecision) -> None:
        state = self.state
        envelope = self._envelope()
        fields: dict[str, Any] = {}
        if decision.kind == "extend":
            new_deadline = state.deadline + timedelta(seconds=decision.seconds) if state.deadline else None
            fields = {"old_deadline": state.deadline, "new_deadline": new_deadline}
        elif decision.kind == "raise_steps":
            fields = {"old_max_steps": state.max_steps, "new_max_steps": state.max_steps + decision.steps}
        elif decision.kind == "nudge":
            fields = {"nudge": decision.nudge or ""}
        self.record(
            CriticDecided(
                **envelope,
                decision=decision.kind,
                reason=decision.reason,
                idle_seconds=(envelope["at"] - state.last_activity_at).total_seconds(),
                **fields,
            )
        )
        if decision.kind == "nudge":
            self.mailbox.append(("critic", SteerMessage(text=decision.nudge or "")))


def _decided_outcome(state: RunState) -> _Outcome | None:
    """The outcome a log already records without ``run_finished`` (a crash in between), if any."""
    if state.cancellation is not None:
        cause, detail = state.cancellation.cause, state.cancellation.detail
        return _Outcome(_STATUS_OF_CAUSE[cause], error=ErrorInfo(type=cause, message=detail))
    if state.error is not None:
        return _Outcome("error", error=state.error)
    last = state.transcript[-1]
    if isinstance(last, AssistantMessage) and not last.tool_calls:
        return _Outcome("ok", output=last.text or "")
    return None


async def _wait_through_cancellation(task: asyncio.Future[Any]) -> bool:
    """Wait for ``task`` to end even if we are cancelled meanwhile; True if we were."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            cancelled = True
    return cancelled
