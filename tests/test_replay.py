"""Strict replay: every status and every external input replays identically, in milliseconds."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from datetime import timedelta

import pytest
from test_replay_scenarios import GOLDEN, PNG, SCENARIOS, START, STATUS, librarian, notes_session, record

from executus import (
    Agent,
    Executor,
    Image,
    Invocation,
    SequentialIds,
    Session,
    SessionContext,
    SystemClock,
    ToolContext,
    VirtualClock,
    tool,
)
from executus.events import Event
from executus.storage import MemoryStore
from executus.testing import ScriptedModel, ScriptItem, call, hang
from replay import DivergenceError, Replayer, ReplayError, load_cassette


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_status_replays_identically_from_the_store(name: str) -> None:
    store, run_id = record(name)
    result = Replayer(blobs=store).replay_run(store.read_run(run_id))
    assert result.identical, result.report()
    assert result.replayed[-1].kind == "run_finished"
    assert result.result is not None
    assert result.result.status == STATUS[name]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_golden_cassette_replays_identically(name: str) -> None:
    result = Replayer().replay_run(load_cassette(GOLDEN / f"{name}.jsonl"))
    assert result.identical, result.report()
    assert result.report() == f"replay of run run-0001: identical ({len(result.recorded)} events)"


def test_replayed_events_match_the_recording_event_for_event() -> None:
    store, run_id = record("ok")
    result = Replayer(blobs=store).replay_run(store.read_run(run_id))
    assert [e.model_dump() for e in result.replayed] == [e.model_dump() for e in result.recorded]


def test_an_identical_replay_holds_the_log_once_by_sharing_the_recorded_events() -> None:
    store, run_id = record("ok")
    result = Replayer(blobs=store).replay_run(store.read_run(run_id))
    assert all(
        replayed is recorded for replayed, recorded in zip(result.replayed, result.recorded, strict=True)
    )


def _executor() -> tuple[MemoryStore, VirtualClock, Executor]:
    store = MemoryStore()
    clock = VirtualClock(START)
    return store, clock, Executor(store, clock=clock, ids=SequentialIds())


def _assert_replays(store: MemoryStore, run_id: str) -> list[Event]:
    result = Replayer(blobs=store).replay_run(store.read_run(run_id))
    assert result.identical, result.report()
    return list(result.replayed)


class _SlowStore(MemoryStore):
    """A store whose commits take 30 ms of wall-clock time, like a loaded database."""

    def append(
        self, run_id: str, events: Sequence[Event], expected_seq: int, *, epoch: int | None = None
    ) -> None:
        time.sleep(0.03)
        super().append(run_id, events, expected_seq, epoch=epoch)


def test_a_run_recorded_on_a_slow_wall_clock_replays_with_its_timestamps() -> None:
    store = _SlowStore()
    model = ScriptedModel(
        [[call("search", query="a"), call("slow_lookup", isbn="1", seconds=0.02)], hang(0.05), "done"]
    )
    result = Executor(store, clock=SystemClock()).run_sync(
        librarian(model), Invocation(session=notes_session), "q"
    )
    replay = Replayer(blobs=store, time_tolerance=0.001).replay_run(store.read_run(result.run_id))
    assert replay.identical, replay.report()


def test_a_shutdown_is_replayed_at_its_recorded_instant() -> None:
    store, clock, executor = _executor()

    async def main() -> str:
        task = asyncio.ensure_future(
            executor.run(librarian(ScriptedModel([call("search", query="a"), hang(100), "x"])), None, "q")
        )
        await asyncio.sleep(30)
        await executor.shutdown("deploying a new version")
        return (await task).run_id

    run_id = clock.run(main())
    replayed = _assert_replays(store, run_id)
    assert [e.kind for e in replayed][-3:] == ["model_requested", "run_cancelled", "run_finished"]
    assert replayed[-2].cause == "shutdown"  # type: ignore[union-attr]


def test_cancelling_the_callers_task_is_replayed() -> None:
    store, clock, executor = _executor()

    async def main() -> None:
        agent = librarian(ScriptedModel([call("slow_lookup", isbn="1", seconds=50), "x"]))
        task = asyncio.ensure_future(executor.run(agent, None, "q"))
        await asyncio.sleep(12.25)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    clock.run(main())
    replayed = _assert_replays(store, "run-0001")
    assert replayed[-2].model_dump(include={"cause", "detail"}) == {
        "cause": "caller",
        "detail": "the caller's task was cancelled",
    }


@tool
async def waiter(seconds: float, context: ToolContext) -> str:
    """Wait, attaching a screenshot halfway and a note at the end.

    Args:
        seconds: how long to wait.
    """
    await asyncio.sleep(seconds / 2)
    context.attach_images("halfway", Image(PNG))
    await asyncio.sleep(seconds / 2)
    context.attach_images("done waiting")
    return "waited"


def test_session_steer_around_a_critic_nudge_keeps_its_batches() -> None:
    store, clock, executor = _executor()
    agent = librarian(
        ScriptedModel([call("waiter", seconds=80), "ok"]),
        tools=[waiter],
        parallel_tool_calls=False,
        max_runtime=None,
    )
    run_id = clock.run(executor.run(agent, None, "q")).run_id
    replayed = _assert_replays(store, run_id)
    steers = [(e.source, [m.text for m in e.messages]) for e in replayed if e.kind == "steer_injected"]
    assert steers[0][0] == "session"
    assert steers == [
        ("session", ["halfway"]),
        ("critic", ["Still there? Say what you are waiting for."]),
        ("session", ["done waiting"]),
    ]


class _Greeter(Session):
    def __init__(self, context: SessionContext) -> None:
        context.attach_images("the user is on the search page", Image(PNG, "image/png"))

    async def post_run(self, transcript, output, error):  # type: ignore[no-untyped-def]
        raise OSError("the bucket is gone")

    async def cleanup(self) -> None:
        raise RuntimeError("could not close the browser")


def test_session_messages_and_failing_post_run_hooks_replay() -> None:
    store, clock, executor = _executor()
    result = clock.run(executor.run(librarian(ScriptedModel(["hello"])), Invocation(session=_Greeter), "q"))
    replayed = _assert_replays(store, result.run_id)
    post_run = replayed[-2]
    assert post_run.kind == "post_run_finished"
    assert str(post_run.error) == "OSError: the bucket is gone"


@tool
async def delegate(question: str, context: ToolContext) -> str:
    """Ask a helper agent.

    Args:
        question: the question.
    """
    child = await context.start_child(Agent(name="helper", model=ScriptedModel([hang(2), "42"])), question)
    return child.output or ""


def test_delegation_replays_for_the_parent_and_for_the_child() -> None:
    store, clock, executor = _executor()
    agent = librarian(ScriptedModel([call("delegate", question="meaning"), "it is 42"]), tools=[delegate])
    parent = clock.run(executor.run(agent, None, "q")).run_id
    (child,) = [summary.run_id for summary in store.list_runs() if summary.parent_run_id == parent]
    assert "child_run_started" in [e.kind for e in _assert_replays(store, parent)]
    _assert_replays(store, child)


def test_replaying_takes_milliseconds_whatever_the_recorded_duration() -> None:
    result = Replayer().replay_run(load_cassette(GOLDEN / "killed.jsonl"))
    assert result.replayed[-1].duration == 180.0  # type: ignore[union-attr]


def test_replay_runs_reports_each_run_and_the_ones_that_cannot_replay() -> None:
    cassettes = [load_cassette(GOLDEN / f"{name}.jsonl") for name in ("ok", "killed")]
    gap = [cassettes[1].events[0], *cassettes[1].events[2:]]
    outcome = Replayer().replay_runs([*cassettes, gap])
    assert not outcome.failures
    assert outcome.errors == {
        "run-0001": "the recorded log cannot be folded: run run-0001: expected seq 2, got 3 (model_responded)"
    }
    assert not outcome.ok


def test_raise_on_divergence_raises_with_the_report() -> None:
    cassette = load_cassette(GOLDEN / "ok.jsonl")
    agent = librarian(ScriptedModel([]), system_prompt="Be brief.")
    with pytest.raises(DivergenceError, match=r"diverged at seq 2\n"):
        Replayer().replay_runs([cassette], agent=agent, raise_on_divergence=True)


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([], "nothing to replay: the run has no events"),
        ("gap", "the recorded log cannot be folded: run run-0001: expected seq 2, got 3"),
    ],
)
def test_logs_that_cannot_be_replayed_say_why(events, message) -> None:  # type: ignore[no-untyped-def]
    recorded = load_cassette(GOLDEN / "ok.jsonl").events
    log = [recorded[0], *recorded[2:]] if events == "gap" else events
    with pytest.raises(ReplayError, match=message):
        Replayer().replay_run(log)


def test_a_run_with_images_needs_a_blob_source() -> None:
    events = load_cassette(GOLDEN / "ok.jsonl").events
    with pytest.raises(
        ReplayError, match=r"references blob 6839ab87688f .* given no blob source: pass blobs=store"
    ):
        Replayer().replay_run(events)


def test_the_recorded_agent_replays_through_dataclass_replace() -> None:
    # An agent given to the replay is only copied: its own model and tools are never called.
    agent = librarian(ScriptedModel([]))
    result = Replayer().replay_run(load_cassette(GOLDEN / "killed.jsonl"), agent=agent)
    assert result.identical, result.report()
    assert dataclasses.replace(agent).model.remaining == 0  # type: ignore[union-attr]


def _no_browser(context: SessionContext) -> Session:
    raise RuntimeError("no browser available")


@pytest.mark.parametrize(
    ("agent", "invocation"),
    [
        (Agent(name="lost", model="gpt-nope"), Invocation()),
        (Agent(name="lost", model=ScriptedModel(["x"])), Invocation(session=_no_browser)),
    ],
)
def test_a_run_that_failed_to_set_up_replays_identically(agent: Agent, invocation: Invocation) -> None:
    store, clock, executor = _executor()
    result = clock.run(executor.run(agent, invocation, "q"))
    assert result.status == "error"
    assert [e.kind for e in _assert_replays(store, result.run_id)] == ["run_started", "run_finished"]


def _crashed_then_resumed(
    cut: int, before: list[ScriptItem], after: list[ScriptItem]
) -> tuple[MemoryStore, str]:
    """Record a run, keep its first ``cut`` events (the process died), then resume it later."""
    whole, clock, executor = _executor()
    run_id = clock.run(
        executor.run(librarian(ScriptedModel(before)), Invocation(session=notes_session), "q")
    ).run_id
    survived = whole.read_run(run_id)[:cut]
    store = MemoryStore()
    store.append(run_id, survived, 0)
    later = VirtualClock(survived[-1].at + timedelta(seconds=100))
    resumed = Executor(store, clock=later).resume(
        run_id, librarian(ScriptedModel(after)), Invocation(session=notes_session)
    )
    later.run(resumed)
    return store, run_id


@pytest.mark.parametrize(
    ("cut", "before", "after", "interrupted"),
    [
        (4, [call("slow_lookup", isbn="1", seconds=50), "a"], ["recovered"], "tool"),
        (6, [call("search", query="x"), hang(30), "a"], [hang(2), "answer"], "model"),
    ],
)
def test_a_run_resumed_after_its_process_died_replays_identically(
    cut: int, before: list[ScriptItem], after: list[ScriptItem], interrupted: str
) -> None:
    store, run_id = _crashed_then_resumed(cut, before, after)
    replayed = _assert_replays(store, run_id)
    resumed = replayed[cut]
    assert resumed.kind == "run_resumed"
    assert [flight.kind for flight in resumed.interrupted] == [interrupted]
    assert resumed.downtime == 100.0


def test_an_interrupted_run_replays_up_to_where_its_process_died() -> None:
    store, run_id = _crashed_then_resumed(6, [call("search", query="x"), hang(30), "a"], ["answer"])
    result = Replayer(blobs=store).replay_run(store.read_run(run_id)[:6])
    assert result.identical, result.report()
    assert result.result is None
    assert [e.kind for e in result.replayed][-1] == "model_requested"
