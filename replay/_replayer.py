"""The replayer: re-run a recorded run on a virtual clock and name the first divergence.

How a replay re-creates the recorded run, with the executor unchanged:

* **Time** is a :class:`VirtualClock` started at the recorded ``run_started`` instant. The
  recorded model, tools and post-run hook wait until the recorded instant of what they play
  back, so deadlines and live critic checks fall on the same virtual instants.
* **The model and tools** are stand-ins serving the recorded replies and results (no real
  model, no side effects); a model call or tool still in flight when the recorded run stopped
  hangs until the replay stops it the same way.
* **External inputs** are re-applied at their recorded point by the executor's ``on_event``,
  which sees every event as it is recorded: a caller cancel or a shutdown is fired at its
  recorded instant once the event before it has been recorded; the messages a session tool
  attached are attached again while the event that preceded them is recorded (before the
  critic nudge that followed them, if one did), so the steer batches come out the same.
* **The critic**, with no ``agent=``, is a stand-in re-issuing the recorded decisions at their
  recorded instants (this tests the executor's handling of them); with ``agent=`` the agent's
  own critic runs live; with ``what_if_critic=`` that critic runs live instead.
* **Wall-clock recordings**: where the recorded executor went on without waiting, or started
  timing a model call or a batch of tools, the clock is moved to the recorded instant (see
  ``Recording.continued_at``), so time spent on commits and thread hand-offs in the recording
  does not show up as a divergence; events due at the same virtual instant are put in their
  recorded order.
* **Process deaths**: at each recorded crash point (before a ``run_resumed``) the replay's
  store commits nothing past that point and the run's tasks are cancelled; time jumps to the
  recorded resume and :meth:`Executor.resume` takes over, as the recorded new process did.
* **A horizon** (recorded duration plus ``horizon`` seconds of virtual time) cancels a replay
  that would otherwise never end, e.g. a what-if critic that never kills a stuck run.

Times are compared within ``time_tolerance`` (see :mod:`replay._diff`). Strict replay and
``agent=`` replay re-apply inputs by seq; what-if replay by the count of events that do not
come from the critic, since a different critic adds or drops events.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Literal, Protocol

from executus import (
    Agent,
    Blob,
    Critic,
    CriticDecision,
    CriticSpec,
    EventLogError,
    Executor,
    ExecutusError,
    Invocation,
    MemoryStore,
    Result,
    RunFinished,
    RunState,
    SessionContext,
    VirtualClock,
    rebuild,
)
from executus import Event as _Event
from replay._compare import HORIZON_DETAIL, compare
from replay._errors import ReplayError
from replay._recorded import (
    RecordedCritic,
    RecordedModel,
    RecordedSession,
    RecordedTool,
    raise_recorded,
)
from replay._recording import Recording
from replay._result import ReplayResult, ReplayRunsResult, WhatIfReport
from replay._sink import Inputs, ProcessDied, ReplaySink
from replay.cassette import Cassette, referenced_blobs

__all__ = ["BlobSource", "Replayer"]


class BlobSource(Protocol):
    """Anything blobs can be read from by hash: an event store, a cassette."""

    def get_blob(self, sha256: str) -> Blob: ...


class Replayer:
    """Replays recorded runs and compares the new events with the recorded ones.

    Args:
        blobs: where the images and artifacts of a recorded run are read from (the store the
            events came from); not needed for cassettes, which carry their blobs.
        time_tolerance: seconds by which a replayed instant or duration may differ from the
            recorded one and still count as equal (see :mod:`replay._diff`).
        horizon: virtual seconds past the recorded end after which a replay is cancelled.
    """

    def __init__(
        self, *, blobs: BlobSource | None = None, time_tolerance: float = 0.01, horizon: float = 3600.0
    ) -> None:
        self._blobs = blobs
        self.time_tolerance = time_tolerance
        self.horizon = horizon

    def replay_run(
        self,
        recorded: Sequence[_Event] | Cassette,
        *,
        agent: Agent | None = None,
        what_if_critic: Critic | None = None,
    ) -> ReplayResult:
        """Replay one recorded run.

        Args:
            recorded: the run's events in seq order, or a cassette.
            agent: the current agent definition to replay (its prompt, tool schemas, limits
                and critic); None rebuilds the agent recorded in ``run_started``.
            what_if_critic: run this critic live instead of the agent's (see ``what_if``).

        Returns:
            The comparison; a log without ``run_finished`` (its process died) replays up to
            where it ends, and a resumed run replays each process death and resume.

        Raises:
            ReplayError: the log cannot be replayed (empty or out of order), or a blob it
                references is missing.
        """
        blobs = recorded if isinstance(recorded, Cassette) else self._blobs
        events = tuple(recorded.events if isinstance(recorded, Cassette) else recorded)
        recording = _recording(events)
        _check_blobs(events, blobs)
        started = recording.started
        clock = VirtualClock(started.at)
        inputs = Inputs(recording, clock, _blob_reader(blobs), strict=what_if_critic is None)
        sink = ReplaySink(MemoryStore(), events, inputs)
        executor = Executor(sink, clock=clock, on_event=inputs.recorded)
        inputs.executor = executor
        replay_agent = self._agent(recording, agent, what_if_critic, clock, inputs)
        session = _session(recording, inputs, _blob_reader(blobs), clock)

        invocation = Invocation(
            run_id=started.run_id,
            caller_id=started.caller_id,
            session=session,
            cancellation=inputs.cancellation,
            parent_run_id=started.parent_run_id,
            parent_call_id=started.parent_call_id,
        )
        horizon = (recording.end - started.at).total_seconds() + self.horizon

        async def run() -> Result | None:
            loop = asyncio.get_running_loop()
            detail = f"{HORIZON_DETAIL} ({horizon:g}s of virtual time)"
            loop.call_later(horizon, lambda: inputs.cancellation.cancel(detail))
            attempt = loop.create_task(executor.run(replay_agent, invocation, started.input))
            return await _play_processes(
                recording, inputs, executor, clock, attempt, replay_agent, invocation
            )

        with _quiet(clock):
            outcome = clock.run(run())
        if inputs.problems:
            raise ReplayError(f"run {started.run_id}: {inputs.problems[0]}")
        replayed = tuple(sink.read_run(started.run_id))
        what_if: CriticSpec | Literal[False] | None = False
        if what_if_critic is not None:
            what_if = None if isinstance(what_if_critic, _NoCritic) else what_if_critic.spec()
        result = compare(
            recording,
            replayed,
            agent_under_test=agent is not None or what_if_critic is not None,
            what_if_critic=what_if,
            tolerance=self.time_tolerance,
        )
        return dataclasses.replace(result, result=outcome)

    def what_if(self, recorded: Sequence[_Event] | Cassette, critic: Critic | None) -> WhatIfReport:
        """Replay with ``critic`` running live and report whether and when it would have acted."""
        result = self.replay_run(recorded, what_if_critic=critic or _NoCritic())
        assert result.what_if is not None
        return result.what_if

    def replay_runs(
        self,
        runs: Iterable[Sequence[_Event] | Cassette],
        *,
        agent: Agent | None = None,
        what_if_critic: Critic | None = None,
        raise_on_divergence: bool = False,
    ) -> ReplayRunsResult:
        """Replay many runs; collect every run's result (and the runs that could not be replayed).

        Raises:
            DivergenceError: with ``raise_on_divergence``, at the first run that diverged.
        """
        results: dict[str, ReplayResult] = {}
        errors: dict[str, str] = {}
        for run in runs:
            run_id = run.run_id if isinstance(run, Cassette) else (run[0].run_id if run else "?")
            try:
                result = self.replay_run(run, agent=agent, what_if_critic=what_if_critic)
            except ReplayError as error:
                errors[run_id] = str(error)
                continue
            if raise_on_divergence:
                result.raise_on_divergence()
            results[run_id] = result
        return ReplayRunsResult(results=results, errors=errors)

    # -- building the replay ----------------------------------------------------------------

    def _agent(
        self,
        recording: Recording,
        agent: Agent | None,
        what_if_critic: Critic | None,
        clock: VirtualClock,
        inputs: Inputs,
    ) -> Agent:
        if agent is None:
            spec = recording.started.agent
            critic: Critic | None = None
            if spec.critic is not None:
                critic = RecordedCritic(spec.critic, recording.decisions, clock)
            built = Agent(
                name=spec.name,
                model=RecordedModel(spec.model, recording, clock),
                system_prompt=spec.system_prompt,
                tools=[RecordedTool(tool, recording, clock, inputs.use_tool_context) for tool in spec.tools],
                max_iterations=spec.max_iterations,
                max_runtime=spec.max_runtime,
                critic=critic,
                parallel_tool_calls=spec.parallel_tool_calls,
            )
        else:
            built = dataclasses.replace(
                agent,
                model=RecordedModel(agent.model_name, recording, clock),
                tools=[
                    RecordedTool(tool.spec(), recording, clock, inputs.use_tool_context)
                    for tool in agent.tools
                ],
            )
        if what_if_critic is not None:
            built = dataclasses.replace(
                built, critic=None if isinstance(what_if_critic, _NoCritic) else what_if_critic
            )
        return built


class _ReplayLogFilter(logging.Filter):
    """Drops the executor's log records made on a replay's event loop.

    They would repeat, as fresh errors with tracebacks, failures that the recording already
    holds (a post-run hook that raised, a model error); records from any other loop or
    thread pass.
    """

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return True
        return getattr(loop, "virtual_clock", None) is not self._clock


@contextlib.contextmanager
def _quiet(clock: VirtualClock) -> Iterator[None]:
    log_filter = _ReplayLogFilter(clock)
    logger = logging.getLogger("executus")
    logger.addFilter(log_filter)
    try:
        yield
    finally:
        logger.removeFilter(log_filter)


class _NoCritic:
    """Marks "what if the run had no critic at all" (it is never consulted)."""

    check_interval = 1.0

    def spec(self) -> CriticSpec:  # pragma: no cover
        return CriticSpec(name="none")

    def decide(self, state: RunState, now: datetime) -> CriticDecision | None:  # pragma: no cover
        return None


def _recording(events: tuple[_Event, ...]) -> Recording:
    if not events:
        raise ReplayError("nothing to replay: the run has no events")
    try:
        rebuild(events)
    except EventLogError as error:
        raise ReplayError(f"the recorded log cannot be folded: {error}") from error
    return Recording.of(events)


async def _play_processes(
    recording: Recording,
    inputs: Inputs,
    executor: Executor,
    clock: VirtualClock,
    attempt: asyncio.Task[Result],
    agent: Agent,
    invocation: Invocation,
) -> Result | None:
    """Drive the replayed run through the recorded process deaths and resumes.

    At each recorded crash point the "process" dies: the replay cancels the run's tasks
    while every append is refused, so nothing more is recorded. Then time jumps to the
    recorded ``run_resumed`` instant and :meth:`Executor.resume` takes the run over, as the
    recorded new process did. A log that ends without ``run_finished`` ends at its crash.
    """
    run_id = recording.started.run_id
    for index in range(len(recording.crash_points)):
        crashed = asyncio.ensure_future(inputs.crash.wait())
        await asyncio.wait([attempt, crashed], return_when=asyncio.FIRST_COMPLETED)
        if not inputs.crashed:
            crashed.cancel()
            break  # the replay ended before the recorded crash: the comparison shows where
        await _kill_process()
        with contextlib.suppress(ProcessDied, asyncio.CancelledError):
            await attempt
        if index >= len(recording.resumes):
            return None
        resumed = recording.resumes[index]
        clock.advance(max(0.0, (resumed.at - clock.now()).total_seconds()))
        recording.segment = index + 1
        inputs.revive()
        invocation = dataclasses.replace(invocation, cancellation=inputs.cancellation)
        attempt = asyncio.ensure_future(executor.resume(run_id, agent, invocation))
    return await attempt


async def _kill_process() -> None:
    """Cancel every task but the driver's (the run's loop, watchdog, post-run hook, children),
    as a process death would, and wait until they are gone; appends are refused meanwhile."""
    me = asyncio.current_task()
    for _ in range(100):
        doomed = [task for task in asyncio.all_tasks() if task is not me and not task.done()]
        if not doomed:
            return
        for task in doomed:
            task.cancel()
        await asyncio.wait(doomed, timeout=0)
    raise ReplayError("the replayed process would not die at its recorded crash point")


def _session(
    recording: Recording, inputs: Inputs, blobs: Callable[[str], Blob], clock: VirtualClock
) -> Callable[[SessionContext], RecordedSession] | None:
    """The session factory the replay needs, if the recorded run had a session or failed set-up."""
    kinds = [event.kind for event in recording.events]
    finished = recording.events[-1]
    if kinds == ["run_started", "run_finished"] and isinstance(finished, RunFinished) and finished.error:
        # The run failed while being set up (unknown model, a failing session factory): fail
        # the set-up the same way, from the session factory.
        error = finished.error

        def failing(context: SessionContext) -> RecordedSession:
            raise raise_recorded(error)

        return failing
    if not recording.post_runs:
        return None
    post_run = RecordedSession(recording, blobs, clock)

    def session(context: SessionContext) -> RecordedSession:
        inputs.use_attach(context.attach_images)
        return post_run

    return session


def _check_blobs(events: Sequence[_Event], source: BlobSource | None) -> None:
    for sha256 in referenced_blobs(events):
        if source is None:
            raise ReplayError(
                f"run {events[0].run_id} references blob {sha256[:12]} (an image or artifact) "
                "but the replayer was given no blob source: pass blobs=store, or replay a cassette"
            )
        try:
            source.get_blob(sha256)
        except ExecutusError as error:
            raise ReplayError(f"run {events[0].run_id} references a blob that is missing: {error}") from None


def _blob_reader(source: BlobSource | None) -> Callable[[str], Blob]:
    def read(sha256: str) -> Blob:
        if source is None:
            raise ReplayError(f"blob {sha256} is needed but the replayer was given no blob source")
        return source.get_blob(sha256)

    return read
