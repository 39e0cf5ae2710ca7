"""One run's driver: performs the core's effects and feeds back what happened, one input at a time.

The driver owns everything asynchronous about a run: the model call and tool calls in flight
(each a task), the watchdog timer, and an inbox. Tasks, the timer, the caller's cancellation
and the session's steer messages only ever put inputs in the inbox; one loop takes them out in
arrival order, asks :func:`~executus._core.decide` what to do, has the :class:`Recorder`
commit the decision's events, and then performs its effects. So the run's decisions happen
in one place, in one order, and the log is a faithful record of them.

When the store gives up, the loop feeds the core a ``StoreFailed`` input instead of the
failed decision's effects: nothing starts whose start event is not durable, the run ends,
the session's post-run hook and cleanup and the ports still run, and :meth:`RunDriver.run`
raises :class:`~executus.RecordingFailedError`.

When the run is owned (a store with leases), its appends are fenced by the lease and a
:class:`~executus._ownership.Heartbeat` keeps the lease. Losing it (a fenced append or a
renewal says another worker owns the run now) stops the run where it is: what is in flight is
cancelled, and nothing more is written or started (no post-run hook, no ports: the new owner
finishes the run); :meth:`RunDriver.run` raises :class:`~executus.LeaseLostError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from executus._agent import (
    Agent,
    Artifact,
    BudgetPort,
    DeliveryPort,
    Invocation,
    Result,
    Session,
    SessionContext,
    ToolContext,
)
from executus._clock import Clock, IdGenerator
from executus._core import CoreState, decide
from executus._effects import (
    CallModel,
    CancelInFlight,
    Effect,
    Finish,
    Outcome,
    RunPostRun,
    StartChild,
    StartTools,
    WaitToRetry,
    WakeAt,
)
from executus._ending import call_ports, post_run, result_of
from executus._errors import ConfigurationError, ExecutusError, LeaseLostError, RecordingFailedError
from executus._events import AgentSpec, ErrorInfo, Event, SteerMessage
from executus._inputs import (
    CallerCancelled,
    ChildRunRequested,
    Input,
    ModelCallFailed,
    ModelChunksArrived,
    ParentStopped,
    PostRunDone,
    RetryDue,
    RunRequested,
    RunResumeRequested,
    ShutdownRequested,
    SteerArrived,
    StoreFailed,
    TimerFired,
    ToolCallFinished,
    reply_input,
)
from executus._leases import Lease
from executus._messages import Image, ImagePart, ModelRequest, ModelResponse, ToolCall, ToolSpec, UserMessage
from executus._model import Model, ModelResolver, StreamingModel
from executus._ownership import HandedOverError, Heartbeat, Takeover
from executus._recorder import Recorder
from executus._state import RunState
from executus._storable import clean_text
from executus._store import EventStore, EventWriter, LeaseWriter
from executus._streaming import ChunkBatcher, stream_reply, streaming_model
from executus._timers import WatchdogTimer
from executus._toolcalls import error_info, invoke, requested_cancellation
from executus._tools import Tool

__all__ = ["RunDriver", "Runtime"]

logger = logging.getLogger("executus")


@dataclass(frozen=True, slots=True)
class Runtime:
    """What the runs of one executor share (the executor builds it for each run)."""

    store: EventStore
    writer: EventWriter
    clock: Clock
    ids: IdGenerator
    resolve: ModelResolver
    version: str
    on_event: Callable[[Event], None] | None
    budget: BudgetPort | None
    delivery: DeliveryPort | None
    active: dict[str, RunDriver]
    """The runs in progress, by id (what ``Executor.shutdown`` stops)."""
    run_child: Callable[[Agent, Invocation, str], Awaitable[Result]]
    """Runs a child run on the same executor."""
    leases: LeaseWriter | None = None
    """Takes, renews and gives up runs' leases (None: the store keeps no leases)."""
    worker_id: str | None = None
    """The owner this executor's leases are held as."""
    lease_ttl: float = 30.0
    """Seconds a lease lasts unless renewed."""


@dataclass(frozen=True, slots=True)
class _Attached:
    """Steer text and images from a session or tool, before their blobs are stored."""

    text: str
    images: tuple[Image, ...]


class _Wake:
    """Wakes the loop so that it sees the run stopped here (its lease lost or handed over)."""


_InboxItem: TypeAlias = Input | _Attached | _Wake


class _RunEndedError(ExecutusError):
    """A tool asked to start a child run after its own run's outcome was decided."""


class RunDriver:
    """Drives one run (new or resumed) from set-up to ``run_finished``."""

    def __init__(
        self,
        runtime: Runtime,
        agent: Agent,
        invocation: Invocation,
        run_id: str,
        state: RunState | None = None,
        lease: Lease | None = None,
        takeover: Takeover | None = None,
    ) -> None:
        self.runtime = runtime
        self.clock = runtime.clock
        self.agent = agent
        self.invocation = invocation
        self.run_id = run_id
        self.core = CoreState(run_id, critic=agent.critic, run=state)
        self.recorder = Recorder(
            runtime.writer,
            run_id,
            state.last_seq if state is not None else 0,
            runtime.on_event,
            invocation.on_step,
        )
        self.inbox: asyncio.Queue[_InboxItem] = asyncio.Queue()
        self.timer = WatchdogTimer(self.clock, self._timer_fired, f"executus-watchdog-{run_id}")
        self.tools: dict[str, Tool] = {}
        self.tool_specs: tuple[ToolSpec, ...] = ()
        """The tools' schemas, sorted by name: fixed once the run is set up, sent every step."""
        self.images: dict[str, bytes] = {}
        self.model: Model | None = None
        self.session: Session | None = None
        self.model_task: asyncio.Task[None] | None = None
        self.batcher: ChunkBatcher | None = None
        """The streamed reply's deltas not yet handed to the core (streaming only)."""
        self.tool_tasks: set[asyncio.Task[None]] = set()
        self.child_waiters: dict[tuple[str, str], asyncio.Future[bool]] = {}
        self.children: set[str] = set()
        """The child runs this run's tools started and are waiting on."""
        self.result: Result | None = None
        self.artifacts: tuple[Artifact, ...] = ()
        self.finished = asyncio.Event()
        self.takeover = takeover or Takeover()
        self.stopped: LeaseLostError | HandedOverError | None = None
        """Set once the run stops here without ending: its lease was lost, or handed over."""
        self.heartbeat: Heartbeat | None = None
        if lease is not None and runtime.leases is not None:
            self.recorder.epoch = lease.epoch
            self.heartbeat = Heartbeat(
                runtime.leases, lease, runtime.lease_ttl, self.clock, self._cancel_requested, self._lose
            )

    # -- the caller's side -------------------------------------------------------------------

    async def run(self, input: str) -> Result:
        """Run to the end; cancelling the caller's task cancels the run, then re-raises.

        Raises:
            RecordingFailedError: the store gave up; the run was stopped and cleaned up.
            LeaseLostError: another worker took the run over; this one stopped it at once and
                wrote nothing more.
        """
        setup_error = await self._set_up()
        state = self.core.run
        now = self.clock.now()
        # A cancel asked for before the run started (a handle cancelled early, or a cancel that
        # waited for a worker to take the run over) ends it before any side effect.
        cancellation = self.invocation.cancellation
        cancelled = cancellation.detail if cancellation is not None else None
        if state is None:
            first: Input = RunRequested(
                at=now,
                spec=self._spec(),
                input=clean_text(input),
                caller_id=self.invocation.caller_id,
                parent_run_id=self.invocation.parent_run_id,
                parent_call_id=self.invocation.parent_call_id,
                executor_version=self.runtime.version,
                setup_error=setup_error,
                cancelled=cancelled,
            )
        else:
            self._load_images(state)
            takeover = self.takeover
            first = RunResumeRequested(
                at=now,
                executor_version=self.runtime.version,
                setup_error=setup_error,
                worker_id=self.runtime.worker_id if self.heartbeat is not None else None,
                previous_owner=takeover.previous_owner,
                lease_expired_at=takeover.lease_expired_at,
                forced=takeover.forced,
                cancelled=cancelled,
            )
        self.inbox.put_nowait(first)
        if self.heartbeat is not None:
            self.heartbeat.start()
        self.runtime.active[self.run_id] = self
        unsubscribe = cancellation.subscribe(self.cancel) if cancellation else None
        loop_task = asyncio.get_running_loop().create_task(self._loop(), name=f"executus-run-{self.run_id}")
        caller_cancelled = False
        try:
            while not loop_task.done():
                try:
                    await asyncio.wait([loop_task])
                except asyncio.CancelledError:
                    caller_cancelled = True
                    self.cancel("the caller's task was cancelled")
        finally:
            self.runtime.active.pop(self.run_id, None)
            if unsubscribe is not None:
                unsubscribe()
            self.finished.set()
        loop_task.result()  # a bug in the driver itself propagates
        await self._release()
        if self.stopped is not None:
            raise self.stopped
        if caller_cancelled:
            raise asyncio.CancelledError
        assert self.result is not None
        failure = self.recorder.failure
        if failure is not None:
            raise RecordingFailedError(self.run_id, self.recorder.last_durable_seq, failure) from failure
        return self.result

    def cancel(self, detail: str) -> None:
        """The caller cancelled (its handle or its task)."""
        self.inbox.put_nowait(CallerCancelled(at=self.clock.now(), detail=detail))

    def shut_down(self, detail: str) -> None:
        """The executor is shutting down."""
        self.inbox.put_nowait(ShutdownRequested(at=self.clock.now(), detail=detail))

    # -- ownership ---------------------------------------------------------------------------

    def _cancel_requested(self, reason: str) -> None:
        """Another process asked to cancel the run (``executus cancel``): a caller cancel."""
        self.cancel(reason)

    def hand_over(self) -> None:
        """Stop the run here without ending it, and release its lease at once, so that another
        worker resumes it (what a worker does when it shuts down)."""
        self._stop_here(HandedOverError(f"run {self.run_id} was handed over to other workers"))

    def _lose(self, lost: LeaseLostError) -> None:
        """Another worker owns the run now: stop everything here at once, write nothing more."""
        logger.warning("run %s: %s; stopping it here", self.run_id, lost)
        self._stop_here(lost)

    def _stop_here(self, reason: LeaseLostError | HandedOverError) -> None:
        if self.stopped is None:
            self.stopped = reason
            self.timer.disarm()
            self._stop_children(str(reason))
            self._cancel_in_flight()
            self.inbox.put_nowait(_Wake())

    def _stop_children(self, detail: str) -> None:
        """End this run's child runs here, as cancelled because their parent stopped (before
        their tools' tasks are cancelled, which would read as a caller cancel): whoever resumes
        this run finds their tool calls interrupted, and nobody would wait for their results."""
        for child_id in self.children:
            child = self.runtime.active.get(child_id)
            if child is not None:
                child.inbox.put_nowait(ParentStopped(at=child.clock.now(), detail=detail))

    async def _release(self) -> None:
        """Give the run's lease up once the run is over here (unless it was lost)."""
        heartbeat, leases = self.heartbeat, self.runtime.leases
        if heartbeat is None or leases is None:
            return
        await heartbeat.stop()
        if not isinstance(self.stopped, LeaseLostError):
            try:
                await leases.release(heartbeat.lease)
            except Exception as error:  # the lease runs out by itself
                logger.warning("run %s: releasing its lease failed: %s", self.run_id, error)

    # -- set-up ------------------------------------------------------------------------------

    async def _set_up(self) -> ErrorInfo | None:
        """Resolve the model and make the session; a failure here ends the run as an error."""
        try:
            model = self.agent.model
            self.model = self.runtime.resolve(model) if isinstance(model, str) else model
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
            return error_info(error)
        finally:
            self.tool_specs = tuple(self.tools[name].spec() for name in sorted(self.tools))
        return None

    def _spec(self) -> AgentSpec:
        agent = self.agent
        return AgentSpec(
            name=agent.name,
            model=agent.model_name,
            system_prompt=clean_text(agent.system_prompt),
            tools=self.tool_specs,
            max_iterations=agent.max_iterations,
            max_runtime=agent.max_runtime,
            parallel_tool_calls=agent.parallel_tool_calls,
            critic=agent.critic.spec() if agent.critic else None,
            model_settings=agent.model_settings,
            retry=agent.retry,
            idempotent_tools=tuple(sorted(name for name, tool in self.tools.items() if tool.idempotent))
            or None,
        )

    def _load_images(self, state: RunState) -> None:
        for message in state.transcript:
            if isinstance(message, UserMessage):
                for part in message.parts:
                    if isinstance(part, ImagePart):
                        self.images[part.sha256] = self.runtime.store.get_blob(part.sha256).data

    # -- the loop ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        try:
            while self.result is None and self.stopped is None:
                item = await self.inbox.get()
                if isinstance(item, _Wake) or self.stopped is not None:
                    continue  # the run stopped here (lease lost or handed over): nothing more
                if self.batcher is not None and not isinstance(item, ModelChunksArrived):
                    await self._feed_streamed()
                input = await self._store_attached(item) if isinstance(item, _Attached) else item
                if input is not None and self.stopped is None:
                    await self._feed(input)
        finally:
            await self._stop_everything()

    async def _feed_streamed(self) -> None:
        """Record what arrived of a streamed reply before any other input reaches the core."""
        assert self.batcher is not None
        batch = self.batcher.take()
        if batch is not None:
            await self._feed(batch)

    async def _feed(self, input: Input) -> None:
        decision = decide(self.core, input)
        try:
            await self.recorder.record(decision.events)
        except LeaseLostError as lost:
            self._lose(lost)
            return
        except Exception as error:
            logger.error("run %s: the store failed, stopping the run: %s", self.run_id, error)
            failed = decide(self.core, StoreFailed(at=self.clock.now(), error=error_info(error)))
            await self._perform(failed.effects)
            return
        await self._perform(decision.effects)

    async def _perform(self, effects: Sequence[Effect]) -> None:
        for effect in effects:
            if self.stopped is not None:
                return
            if isinstance(effect, CallModel):
                self._call_model(effect)
            elif isinstance(effect, StartTools):
                for call in effect.calls:
                    self._start_tool(call)
            elif isinstance(effect, StartChild):
                waiter = self.child_waiters.pop((effect.call_id, effect.child_run_id), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(effect.allowed)
            elif isinstance(effect, WakeAt):
                self.timer.arm(effect.at)
            elif isinstance(effect, WaitToRetry):
                self._wait_to_retry(effect)
            elif isinstance(effect, CancelInFlight):
                self._cancel_in_flight()
            elif isinstance(effect, RunPostRun):
                await self._feed(await self._post_run(effect.outcome))
            elif isinstance(effect, Finish):
                await self._finish(effect.outcome)

    def _put(self, input: _InboxItem) -> None:
        self.inbox.put_nowait(input)

    def _timer_fired(self, now: Any) -> None:
        self._put(TimerFired(at=now))

    async def _stop_everything(self) -> None:
        """Cancel whatever still runs and wait until it has stopped, before ``run()`` returns."""
        self.timer.disarm()
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        self._cancel_in_flight()
        pending = [task for task in (self.model_task, *self.tool_tasks) if task is not None]
        if pending:
            await asyncio.wait(pending)
        for waiter in self.child_waiters.values():
            waiter.cancel()

    def _cancel_in_flight(self) -> None:
        if self.model_task is not None:
            self.model_task.cancel()
        for task in self.tool_tasks:
            task.cancel()

    # -- the model ---------------------------------------------------------------------------

    def _call_model(self, effect: CallModel) -> None:
        assert self.model is not None
        request = ModelRequest(
            messages=effect.messages,
            tools=self.tool_specs,
            images=dict(self.images),
            step=effect.step,
            settings=self.agent.model_settings,
        )
        self.model_task = asyncio.get_running_loop().create_task(
            self._request(self.model, request), name=f"executus-model-{self.run_id}-{effect.step}"
        )

    async def _request(self, model: Model, request: ModelRequest) -> None:
        started = self.clock.now()
        try:
            streaming = streaming_model(model, request.settings)
            if streaming is None:
                response = await model.request(request)
            else:
                response = await self._stream(streaming, request)
            now = self.clock.now()
            self._put(reply_input(response, request.step, now, (now - started).total_seconds()))
        except asyncio.CancelledError as cancelled:
            if requested_cancellation():
                raise
            self._put(ModelCallFailed(at=self.clock.now(), step=request.step, error=error_info(cancelled)))
        except Exception as error:
            self._put(ModelCallFailed(at=self.clock.now(), step=request.step, error=error_info(error)))

    async def _stream(self, model: StreamingModel, request: ModelRequest) -> ModelResponse:
        """Read a streamed reply, its deltas batched into the inbox. The batcher lives only as
        long as the stream: it refers to the driver, and kept longer it would make a reference
        cycle that keeps a finished run alive until a full garbage collection."""
        self.batcher = ChunkBatcher(request.step, self.clock, self._put)
        try:
            return await stream_reply(model, request, self.batcher)
        finally:
            self.batcher = None

    def _wait_to_retry(self, effect: WaitToRetry) -> None:
        """Back off on the run's clock in the model call's slot, so that whatever cancels a
        call in flight (deadline, critic kill, cancel, shutdown) cancels the wait."""
        self.model_task = asyncio.get_running_loop().create_task(
            self._back_off(effect), name=f"executus-backoff-{self.run_id}-{effect.step}"
        )

    async def _back_off(self, effect: WaitToRetry) -> None:
        delay = (effect.at - self.clock.now()).total_seconds()
        if delay > 0:
            await self.clock.sleep(delay)
        self._put(RetryDue(at=self.clock.now(), step=effect.step))

    # -- tools -------------------------------------------------------------------------------

    def _start_tool(self, call: ToolCall) -> None:
        task = asyncio.get_running_loop().create_task(
            self._invoke(call), name=f"executus-tool-{self.run_id}-{call.id}"
        )
        self.tool_tasks.add(task)
        task.add_done_callback(self.tool_tasks.discard)

    async def _invoke(self, call: ToolCall) -> None:
        started = self.clock.now()
        context = ToolContext(self.run_id, call.id, call.name, self._attach, self._start_child)
        result, error = await invoke(self.tools.get(call.name), call, context, self.tools, self.clock)
        finished = self.clock.now()
        self._put(
            ToolCallFinished(
                at=finished,
                call_id=call.id,
                name=call.name,
                result=result,
                error=error,
                duration=(finished - started).total_seconds(),
            )
        )

    async def _start_child(
        self, agent: Agent, input: str, invocation: Invocation | None, call_id: str
    ) -> Result:
        base = invocation or Invocation()
        child_id = base.run_id or self.runtime.ids.new_run_id()
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.child_waiters[call_id, child_id] = waiter
        self._put(ChildRunRequested(at=self.clock.now(), call_id=call_id, child_run_id=child_id))
        if not await waiter:
            raise _RunEndedError(f"run {self.run_id} has ended; the child run was not started")
        child = dataclasses.replace(
            base,
            run_id=child_id,
            caller_id=base.caller_id or self.invocation.caller_id,
            parent_run_id=self.run_id,
            parent_call_id=call_id,
        )
        self.children.add(child_id)
        try:
            return await self.runtime.run_child(agent, child, input)
        finally:
            self.children.discard(child_id)

    def _attach(self, text: str, images: tuple[Image, ...]) -> None:
        self._put(_Attached(text, images))

    async def _store_attached(self, attached: _Attached) -> SteerArrived | None:
        """Store an attached message's images (before any event can reference them)."""
        at = self.clock.now()
        parts = []
        try:
            for image in attached.images:
                await self.recorder.put_blob(image.data, image.media_type)
                self.images[image.sha256] = image.data
                parts.append(image.part())
        except Exception as error:
            logger.error("run %s: the store failed to keep an image: %s", self.run_id, error)
            self.recorder.failure = self.recorder.failure or error
            failed = decide(self.core, StoreFailed(at=at, error=error_info(error)))
            await self._perform(failed.effects)
            return None
        return SteerArrived(at=at, message=SteerMessage(text=clean_text(attached.text), images=tuple(parts)))

    # -- the end -----------------------------------------------------------------------------

    async def _post_run(self, outcome: Outcome) -> PostRunDone:
        """The session's post-run hook and cleanup (see :func:`~executus._ending.post_run`)."""
        state, session = self.core.run, self.session
        if session is None or state is None or state.post_run_done:
            return PostRunDone(at=self.clock.now(), ran=False)
        done, self.artifacts = await post_run(session, state, outcome, self.recorder, self.clock)
        return done

    async def _finish(self, outcome: Outcome) -> None:
        """Build the result and call the ports (whatever happened, store failure included)."""
        state = self.core.run
        assert state is not None
        result = result_of(outcome, state, self.artifacts)
        await call_ports(result, self.invocation.caller_id, self.runtime.delivery, self.runtime.budget)
        self.result = result
