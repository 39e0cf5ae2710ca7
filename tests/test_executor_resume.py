"""Resuming an interrupted run from its log (the SQL-store crash test kills a real process)."""

from __future__ import annotations

import asyncio

import pytest
from _support import START, new_executor

from executus import Agent, Executor, RunNotResumableError, SequentialIds, VirtualClock, tool
from executus.events import rebuild
from executus.storage import MemoryStore
from executus.testing import ScriptedModel, call, hang


@tool
async def transfer(amount: int) -> str:
    """Move money (not safe to repeat).

    Args:
        amount: how much.
    """
    await asyncio.sleep(30)
    return f"moved {amount}"


def _crash_when(kind: str, agent: Agent) -> MemoryStore:
    """Record ``agent`` until an event of ``kind`` is logged; return the log as a crash leaves it."""
    executor = new_executor()

    async def run_until_crash() -> MemoryStore:
        task = asyncio.ensure_future(executor.run(agent, None, "pay the bill"))
        # Polling costs nothing on the virtual clock, and needs no hook in the executor.
        while not executor.store.list_runs() or executor.store.read_run("run-0001")[-1].kind != kind:  # noqa: ASYNC110
            await asyncio.sleep(1)
        survivor = MemoryStore()
        events = executor.store.read_run("run-0001")
        survivor.append("run-0001", events, 0)
        task.cancel()
        return survivor

    return executor.clock.run(run_until_crash())


def test_a_tool_in_flight_at_the_crash_is_recorded_as_interrupted_and_the_run_carries_on() -> None:
    crashed = _crash_when(
        "tool_started", Agent("payer", ScriptedModel([call("transfer", amount=5)]), tools=[transfer])
    )
    assert rebuild(crashed.read_run("run-0001")).status == "running"

    later = VirtualClock(START.replace(hour=10))
    executor = Executor(crashed, clock=later, ids=SequentialIds("resumed-"))
    agent = Agent(
        "payer", ScriptedModel(["The transfer may not have happened; please check."]), tools=[transfer]
    )
    result = later.run(executor.resume("run-0001", agent))

    assert result.status == "ok"
    events = crashed.read_run("run-0001")
    kinds = [event.kind for event in events]
    assert kinds[4:] == ["run_resumed", "tool_finished", "model_requested", "model_responded", "run_finished"]
    resumed, interrupted = events[4], events[5]
    assert [(item.kind, item.name) for item in resumed.interrupted] == [("tool", "transfer")]
    assert resumed.downtime == 3600
    assert (interrupted.error.type, interrupted.result) == ("Interrupted", None)
    assert rebuild(events) == result.state


def test_a_model_call_in_flight_is_made_again_under_the_same_step() -> None:
    crashed = _crash_when("model_requested", Agent("slow", ScriptedModel([hang(60), "x"]), max_runtime=120))
    executor = Executor(crashed, clock=VirtualClock(START), ids=SequentialIds("r-"))
    result = executor.clock.run(
        executor.resume("run-0001", Agent("slow", ScriptedModel(["answer"]), max_runtime=120))
    )

    assert (result.status, result.output, result.steps) == ("ok", "answer", 1)
    requests = [event for event in crashed.read_run("run-0001") if event.kind == "model_requested"]
    assert [event.step for event in requests] == [1, 1]
    assert requests[0].fingerprint == requests[1].fingerprint


def test_resuming_a_finished_run_is_refused() -> None:
    executor = new_executor()
    result = executor.run_sync(Agent("done", ScriptedModel(["ok"])), None, "go")
    with pytest.raises(RunNotResumableError, match="already finished with status ok"):
        executor.clock.run(executor.resume(result.run_id, Agent("done", ScriptedModel([]))))


@pytest.mark.parametrize(
    ("agent", "cut_after", "status"),
    [
        (Agent("answers", ScriptedModel(["the answer"])), "model_responded", "ok"),
        (Agent("fails", ScriptedModel([RuntimeError("503")])), "model_failed", "error"),
        (Agent("slow", ScriptedModel([hang(100), "late"]), max_runtime=10), "run_cancelled", "timeout"),
    ],
)
def test_a_run_that_died_after_its_outcome_was_recorded_is_only_finished(
    agent: Agent, cut_after: str, status: str
) -> None:
    executor = new_executor()
    complete = executor.run_sync(agent, None, "go")  # the never-interrupted run
    events = executor.store.read_run(complete.run_id)
    cut = next(index for index, event in enumerate(events) if event.kind == cut_after) + 1
    crashed = MemoryStore()
    crashed.append(complete.run_id, events[:cut], 0)

    resumer = Executor(crashed, clock=VirtualClock(START), ids=SequentialIds("r-"))
    no_more_replies = Agent(agent.name, ScriptedModel([]), max_runtime=agent.max_runtime)
    result = resumer.clock.run(resumer.resume(complete.run_id, no_more_replies))

    assert (result.status, result.output, result.error) == (status, complete.output, complete.error)
    kinds = [event.kind for event in crashed.read_run(complete.run_id)]
    assert kinds[cut:] == ["run_resumed", "run_finished"]
