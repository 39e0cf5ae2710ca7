"""Property: any recorded run replays identically (random scripts, tools, critics, cancels)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_replay_scenarios import PNG, START

from executus import (
    Agent,
    Artifact,
    Cancellation,
    CriticDecision,
    Executor,
    IdleCritic,
    Image,
    Invocation,
    Ladder,
    PostRun,
    RecordingFailedError,
    SequentialIds,
    Session,
    SessionContext,
    StoreError,
    SystemClock,
    ToolContext,
    VirtualClock,
    extend,
    kill,
    nudge,
    raise_steps,
    tool,
)
from executus.events import Event
from executus.storage import MemoryStore
from executus.testing import ScriptedModel, ScriptItem, call, hang, reply
from replay import Replayer
from replay.cassette import referenced_blobs


@tool
def echo(text: str) -> str:
    """Say it back.

    Args:
        text: what to say.
    """
    return text


@tool
async def wait(seconds: float) -> dict[str, float]:
    """Wait a while.

    Args:
        seconds: how long.
    """
    await asyncio.sleep(seconds)
    return {"waited": seconds}


@tool
def fail(reason: str) -> str:
    """Always fail.

    Args:
        reason: the error message.
    """
    raise ValueError(reason)


@tool
async def look(seconds: float, context: ToolContext) -> str:
    """Wait, then show the model a picture.

    Args:
        seconds: how long before the picture.
    """
    await asyncio.sleep(seconds)
    context.attach_images(f"picture after {seconds}s", Image(PNG))
    return "shown"


TOOLS = [echo, wait, fail, look]
seconds = st.integers(0, 80).map(lambda n: n / 4)

tool_calls = st.one_of(
    st.builds(lambda t: call("echo", text=t), st.text(max_size=8)),
    st.builds(lambda s: call("wait", seconds=s), seconds),
    st.builds(lambda r: call("fail", reason=r), st.sampled_from(["boom", "disk full", ""])),
    st.builds(lambda s: call("look", seconds=s), seconds),
    st.just(call("missing_tool", x=1)),
    st.just(call("wait", seconds="soon")),  # invalid arguments
)
step: st.SearchStrategy[ScriptItem] = st.one_of(
    st.lists(tool_calls, min_size=1, max_size=3),
    st.builds(lambda s: hang(s), seconds),
    st.builds(lambda t, c: reply(t, *c), st.text(max_size=10), st.lists(tool_calls, max_size=2)),
    st.just(ConnectionError("model API is down")),
)
rungs = st.lists(
    st.one_of(
        st.just(nudge("Are you stuck?")),
        st.builds(lambda s: extend(s), st.integers(1, 60)),
        st.builds(lambda n: raise_steps(n), st.integers(1, 3)),
        st.just(kill("stuck")),
    ),
    min_size=1,
    max_size=3,
)


class _Recorder(Session):
    def __init__(self, context: SessionContext, fails: bool, greet: bool) -> None:
        self.fails = fails
        if greet:
            context.attach_images("hello from the session")

    async def post_run(self, transcript, output, error):  # type: ignore[no-untyped-def]
        if self.fails:
            raise OSError("bucket gone")
        return PostRun(artifacts=[Artifact("log.txt", "text/plain", str(len(transcript)).encode())])


@dataclass(frozen=True)
class Scenario:
    script: list[ScriptItem]
    parallel: bool
    max_iterations: int
    max_runtime: float | None
    critic: tuple[float, list[CriticDecision]] | None
    cancel_at: float | None
    shutdown: bool
    session: tuple[bool, bool] | None
    crash_at: float | None = None
    """Where the process dies (a fraction of the log), to be resumed 50 s later; None: never."""
    store_fails_at: int | None = None
    """The append (2, 3…) at which the store gives up, to be resumed 50 s later; None: never."""


scenarios = st.builds(
    Scenario,
    script=st.lists(step, min_size=1, max_size=6).map(lambda items: [*items, "done"]),
    parallel=st.booleans(),
    max_iterations=st.integers(1, 6),
    max_runtime=st.one_of(st.none(), st.integers(5, 200).map(float)),
    critic=st.one_of(st.none(), st.tuples(st.integers(2, 30).map(float), rungs)),
    cancel_at=st.one_of(st.none(), seconds),
    shutdown=st.booleans(),
    session=st.one_of(st.none(), st.tuples(st.booleans(), st.booleans())),
    crash_at=st.one_of(st.none(), st.floats(0, 1, exclude_max=True)),
    store_fails_at=st.one_of(st.none(), st.integers(2, 12)),
)


def _agent(scenario: Scenario, script: list[ScriptItem]) -> Agent:
    critic = None
    if scenario.critic is not None:
        idle_after, ladder = scenario.critic
        critic = IdleCritic(idle_after=idle_after, policy=Ladder(ladder))
    return Agent(
        name="random",
        model=ScriptedModel(script),
        system_prompt="You are tested.",
        tools=TOOLS,
        max_iterations=scenario.max_iterations,
        max_runtime=scenario.max_runtime,
        critic=critic,
        parallel_tool_calls=scenario.parallel,
    )


class _GivingUpWriter:
    """Commits through the store until its ``fails_at``-th append, which fails for good."""

    def __init__(self, store: MemoryStore, fails_at: int) -> None:
        self._store = store
        self._appends = 0
        self._fails_at = fails_at

    async def append(self, run_id: str, events: Sequence[Event], expected_seq: int) -> None:
        self._appends += 1
        if self._appends >= self._fails_at:
            raise StoreError("the disk is full")
        self._store.append(run_id, events, expected_seq)

    async def put_blob(self, data: bytes, media_type: str) -> str:
        return self._store.put_blob(data, media_type)


def _resume_later(scenario: Scenario, store: MemoryStore, run_id: str) -> None:
    later = VirtualClock(store.read_run(run_id)[-1].at + timedelta(seconds=50))
    invocation = Invocation(session=_session(scenario))
    later.run(Executor(store, clock=later).resume(run_id, _agent(scenario, ["resumed"]), invocation))


def _crash_and_resume(scenario: Scenario, whole: MemoryStore, run_id: str) -> MemoryStore:
    """Keep the log up to a batch boundary (the process died there) and resume it 50 s later."""
    events = whole.read_run(run_id)
    cuts = [
        cut
        for cut in range(1, len(events))
        if not (events[cut].kind == events[cut - 1].kind and events[cut].at == events[cut - 1].at)
    ]
    assert scenario.crash_at is not None
    survived = events[: cuts[int(scenario.crash_at * len(cuts))]]
    store = MemoryStore()
    for sha256 in referenced_blobs(survived):
        blob = whole.get_blob(sha256)
        store.put_blob(blob.data, blob.media_type)
    store.append(run_id, survived, 0)
    _resume_later(scenario, store, run_id)
    return store


def _session(scenario: Scenario) -> Callable[[SessionContext], Session] | None:
    if scenario.session is None:
        return None
    fails, greet = scenario.session
    return lambda context: _Recorder(context, fails, greet)


def _record(scenario: Scenario) -> tuple[MemoryStore, str]:
    store = MemoryStore()
    clock = VirtualClock(START)
    writer = None if scenario.store_fails_at is None else _GivingUpWriter(store, scenario.store_fails_at)
    executor = Executor(store, clock=clock, ids=SequentialIds(), writer=writer)
    agent = _agent(scenario, scenario.script)
    session = _session(scenario)
    invocation = Invocation(caller_id="prop", cancellation=Cancellation(), session=session)

    async def main() -> str:
        if scenario.cancel_at is not None:
            loop = asyncio.get_running_loop()
            if scenario.shutdown:
                stop = lambda: loop.create_task(executor.shutdown("deploy"))  # noqa: E731
                loop.call_later(scenario.cancel_at, stop)
            else:
                assert invocation.cancellation is not None
                loop.call_later(scenario.cancel_at, invocation.cancellation.cancel, "stop")
        try:
            return (await executor.run(agent, invocation, "go")).run_id
        except RecordingFailedError as failed:
            return failed.run_id

    run_id = clock.run(main())
    if scenario.store_fails_at is not None and store.get_run(run_id).status == "running":
        _resume_later(scenario, store, run_id)  # the store is back
    elif scenario.crash_at is not None:
        store = _crash_and_resume(scenario, store, run_id)
    return store, run_id


TIE = Scenario(
    # The model replies at 2.0 s, exactly when the critic's check finds the run idle: the
    # recording put the critic first, and so must the replay.
    script=[hang(1.75), hang(0.25), "done"],
    parallel=False,
    max_iterations=1,
    max_runtime=None,
    critic=(2.0, [nudge("Are you stuck?")]),
    cancel_at=None,
    shutdown=False,
    session=None,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(TIE)
@given(scenarios)
def test_any_recorded_run_replays_identically(scenario: Scenario) -> None:
    store, run_id = _record(scenario)
    result = Replayer(blobs=store).replay_run(store.read_run(run_id))
    assert result.identical, result.report()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(TIE)
@given(scenarios)
def test_any_recorded_run_replays_identically_against_its_own_agent_definition(scenario: Scenario) -> None:
    # With agent=, the agent's own critic runs live on the virtual clock instead of
    # re-issuing the recorded decisions: it must decide the same things at the same instants.
    store, run_id = _record(scenario)
    agent = _agent(scenario, [])
    result = Replayer(blobs=store).replay_run(store.read_run(run_id), agent=agent)
    assert result.identical, result.report()
    assert result.agent_changes == ()


@tool
async def nap(ms: int) -> str:
    """Sleep on the event loop.

    Args:
        ms: milliseconds.
    """
    await asyncio.sleep(ms / 1000)
    return f"napped {ms}"


@tool
def doze(ms: int) -> str:
    """Sleep in a worker thread.

    Args:
        ms: milliseconds.
    """
    time.sleep(ms / 1000)
    return f"dozed {ms}"


wall_batches = st.lists(
    st.lists(st.tuples(st.sampled_from(["nap", "doze"]), st.integers(0, 6)), min_size=1, max_size=4),
    min_size=1,
    max_size=3,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wall_batches, st.booleans(), st.one_of(st.none(), st.sampled_from([0.004, 0.012, 0.03])))
def test_parallel_tools_with_random_durations_on_the_wall_clock_replay_identically(
    batches: list[list[tuple[str, int]]], with_critic: bool, max_runtime: float | None
) -> None:
    script: list[ScriptItem] = [[call(name, ms=ms) for name, ms in batch] for batch in batches]
    critic = IdleCritic(
        idle_after=0.003, check_interval=0.001, policy=Ladder([nudge("go on"), extend(0.002)])
    )
    agent = Agent(
        "napper",
        ScriptedModel([*script, "done"]),
        tools=[nap, doze],
        critic=critic if with_critic else None,
        max_runtime=max_runtime,
    )
    store = MemoryStore()
    result = asyncio.run(Executor(store, clock=SystemClock()).run(agent, None, "go"))
    result = Replayer(blobs=store).replay_run(store.read_run(result.run_id))
    assert result.identical, result.report()
