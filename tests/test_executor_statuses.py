"""How runs end: the five statuses, their causes, and the whole event streams behind them."""

from __future__ import annotations

import asyncio

import pytest
from _support import new_executor, offsets, record

from executus import (
    Agent,
    Cancellation,
    ConfigurationError,
    IdleCritic,
    Invocation,
    Ladder,
    Result,
    Session,
    extend,
    kill,
    nudge,
    tool,
)
from executus.testing import ScriptedModel, call, hang
from replay import Replayer


@tool
async def stall(seconds: float) -> str:
    """Wait for something that may never come.

    Args:
        seconds: how long to wait.
    """
    await asyncio.sleep(seconds)
    return "arrived"


@tool
def lookup(topic: str) -> str:
    """Look a topic up.

    Args:
        topic: what to look up.
    """
    return f"facts about {topic}"


def test_happy_path_records_the_whole_stream_in_order() -> None:
    agent = Agent(
        "researcher",
        ScriptedModel([call("lookup", topic="otters"), "Otters hold hands."]),
        "Be brief.",
        tools=[lookup],
    )
    recorded = record(agent, "Tell me about otters")

    assert recorded.result.status == "ok"
    assert recorded.result.output == "Otters hold hands."
    assert [(event.seq, event.kind) for event in recorded.events] == [
        (1, "run_started"),
        (2, "model_requested"),
        (3, "model_responded"),
        (4, "tool_started"),
        (5, "tool_finished"),
        (6, "model_requested"),
        (7, "model_responded"),
        (8, "run_finished"),
    ]
    started, _, first_reply, tool_started, tool_finished, second_request, _, finished = recorded.events
    assert started.agent.name == "researcher"
    assert started.input == "Tell me about otters"
    assert [spec.name for spec in started.agent.tools] == ["lookup"]
    assert first_reply.tool_calls[0].name == "lookup"
    assert (tool_started.call_id, tool_started.arguments) == (
        first_reply.tool_calls[0].id,
        {"topic": "otters"},
    )
    assert (tool_finished.result, tool_finished.error) == ("facts about otters", None)
    assert second_request.step == 2
    assert second_request.message_count == 4
    assert (finished.status, finished.output, finished.steps) == ("ok", "Otters hold hands.", 2)
    assert finished.usage == recorded.result.usage
    assert finished.usage.total_tokens > 0


def test_model_error_ends_the_run_as_error() -> None:
    agent = Agent("fragile", ScriptedModel([RuntimeError("upstream 503")]))
    recorded = record(agent)

    assert recorded.result.status == "error"
    assert str(recorded.result.error) == "RuntimeError: upstream 503"
    assert recorded.kinds == ["run_started", "model_requested", "model_failed", "run_finished"]


def test_max_iterations_ends_the_run_as_error_with_a_clear_message() -> None:
    agent = Agent("looper", ScriptedModel([call("lookup", topic="x")] * 5), tools=[lookup], max_iterations=3)
    recorded = record(agent)

    assert recorded.result.status == "error"
    assert recorded.result.steps == 3
    assert recorded.result.error is not None
    assert recorded.result.error.type == "MaxIterationsExceeded"
    assert "max_iterations=3" in recorded.result.error.message
    assert recorded.kinds.count("model_requested") == 3


def test_timeout_records_what_was_in_flight_when_the_deadline_passed() -> None:
    agent = Agent("slow", ScriptedModel([call("stall", seconds=600), "never"]), tools=[stall], max_runtime=90)
    recorded = record(agent)

    assert recorded.result.status == "timeout"
    assert recorded.result.duration == 90
    assert offsets(recorded) == [
        (0.0, "run_started"),
        (0.0, "model_requested"),
        (0.0, "model_responded"),
        (0.0, "tool_started"),
        (90.0, "run_cancelled"),
        (90.0, "run_finished"),
    ]
    cancelled = recorded.of_kind("run_cancelled")[0]
    assert cancelled.cause == "timeout"
    assert [(item.kind, item.name, item.arguments) for item in cancelled.in_flight] == [
        ("tool", "stall", {"seconds": 600})
    ]
    assert "max_runtime 90s" in cancelled.detail


def test_critic_kill_after_nudge_and_extension_records_every_decision() -> None:
    critic = IdleCritic(idle_after=60, check_interval=15)
    agent = Agent(
        "stuck", ScriptedModel([call("stall", seconds=3600)]), tools=[stall], max_runtime=150, critic=critic
    )
    recorded = record(agent)

    assert recorded.result.status == "killed"
    assert offsets(recorded) == [
        (0.0, "run_started"),
        (0.0, "model_requested"),
        (0.0, "model_responded"),
        (0.0, "tool_started"),
        (60.0, "critic_decided"),
        (120.0, "critic_decided"),
        (180.0, "critic_decided"),
        (180.0, "run_cancelled"),
        (180.0, "run_finished"),
    ]
    nudged, extended, killed = recorded.of_kind("critic_decided")
    assert (nudged.decision, nudged.idle_seconds) == ("nudge", 60)
    assert nudged.nudge
    assert extended.decision == "extend"
    assert (extended.old_deadline - recorded.events[0].at).total_seconds() == 150
    assert (extended.new_deadline - extended.old_deadline).total_seconds() == 60
    assert (killed.decision, killed.idle_seconds) == ("kill", 180)
    cancelled = recorded.of_kind("run_cancelled")[0]
    assert (cancelled.cause, cancelled.detail) == ("critic_kill", killed.reason)
    assert [item.name for item in cancelled.in_flight] == ["stall"]
    assert recorded.result.state.kill_reason == killed.reason


def test_a_deadline_the_critic_extended_still_ends_as_timeout_without_a_kill() -> None:
    critic = IdleCritic(idle_after=30, policy=Ladder([extend(30), nudge("still there?")]), check_interval=10)
    agent = Agent("slow", ScriptedModel([hang(1000), "late"]), max_runtime=45, critic=critic)
    recorded = record(agent)

    assert recorded.result.status == "timeout"
    decisions = recorded.of_kind("critic_decided")
    assert [decision.decision for decision in decisions] == ["extend", "nudge"]
    assert recorded.result.duration == 75  # 45 s of max_runtime, moved 30 s later once
    assert "extended 1 time(s) by the critic" in recorded.of_kind("run_cancelled")[0].detail


def test_caller_cancellation_handle_gives_a_cancelled_result_not_a_timeout() -> None:
    cancellation = Cancellation()

    @tool
    async def press_stop() -> str:
        """Stands in for a user pressing stop while the run works."""
        cancellation.cancel("user pressed stop")
        await asyncio.sleep(5)
        return "unreachable"

    agent = Agent("stoppable", ScriptedModel([call("press_stop"), "done"]), tools=[press_stop], max_runtime=1)
    recorded = record(agent, invocation=Invocation(cancellation=cancellation))

    assert recorded.result.status == "cancelled"
    cancelled = recorded.of_kind("run_cancelled")[0]
    assert (cancelled.cause, cancelled.detail) == ("caller", "user pressed stop")
    assert recorded.kinds[-2:] == ["run_cancelled", "run_finished"]


def test_a_handle_cancelled_before_the_run_starts_ends_it_before_the_model_is_called() -> None:
    cancellation = Cancellation()
    cancellation.cancel("changed my mind")
    model = ScriptedModel(["never asked"])
    recorded = record(Agent("eager", model), invocation=Invocation(cancellation=cancellation))

    assert recorded.result.status == "cancelled"
    assert model.requests == []
    assert recorded.kinds == ["run_started", "run_cancelled", "run_finished"]
    cancelled = recorded.of_kind("run_cancelled")[0]
    assert (cancelled.cause, cancelled.detail, cancelled.in_flight) == ("caller", "changed my mind", ())
    replayed = Replayer().replay_run(recorded.events)
    assert replayed.divergence is None, replayed.divergence


def test_cancelling_the_callers_task_records_the_run_then_propagates() -> None:
    post_runs: list[str | None] = []

    class Recording(Session):
        async def post_run(self, transcript, output, error):  # type: ignore[no-untyped-def]
            post_runs.append(str(error))
            return await super().post_run(transcript, output, error)

    executor = new_executor()
    agent = Agent("slow", ScriptedModel([hang(300), "late"]), max_runtime=600)

    async def cancel_after_a_minute() -> BaseException | None:
        task = asyncio.ensure_future(executor.run(agent, Invocation(session=lambda _: Recording()), "go"))
        await asyncio.sleep(60)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError as error:
            return error
        return None

    assert isinstance(executor.clock.run(cancel_after_a_minute()), asyncio.CancelledError)
    events = executor.store.read_run("run-0001")
    assert [event.kind for event in events][-3:] == ["run_cancelled", "post_run_finished", "run_finished"]
    assert events[-3].cause == "caller"
    assert events[-1].status == "cancelled"
    assert post_runs == ["caller: the caller's task was cancelled"]


def test_a_real_error_is_not_relabelled_by_a_later_cancellation() -> None:
    cancellation = Cancellation()

    class CancelsDuringPostRun(Session):
        async def post_run(self, transcript, output, error):  # type: ignore[no-untyped-def]
            cancellation.cancel("too late")
            return await super().post_run(transcript, output, error)

    agent = Agent("fragile", ScriptedModel([ValueError("bad gateway")]))
    recorded = record(
        agent, invocation=Invocation(cancellation=cancellation, session=lambda _: CancelsDuringPostRun())
    )

    assert recorded.result.status == "error"
    assert "run_cancelled" not in recorded.kinds


def test_runtime_budget_starts_when_the_run_starts_not_when_it_was_queued() -> None:
    executor = new_executor()
    agent = Agent("patient", ScriptedModel([hang(50), "made it"]), max_runtime=60)

    async def queued_for_two_minutes() -> Result:
        await asyncio.sleep(120)
        return await executor.run(agent, None, "go")

    result = executor.clock.run(queued_for_two_minutes())
    assert (result.status, result.output) == ("ok", "made it")


def test_shutdown_cancels_active_runs_with_cause_shutdown() -> None:
    executor = new_executor()
    agent = Agent("long", ScriptedModel([hang(3600), "late"]))

    async def start_then_shut_down() -> Result:
        task = asyncio.ensure_future(executor.run(agent, None, "go"))
        await asyncio.sleep(10)
        await executor.shutdown("deploying a new version")
        return await task

    result = executor.clock.run(start_then_shut_down())
    assert result.status == "cancelled"
    cancelled = executor.store.read_run(result.run_id)[-2]
    assert (cancelled.kind, cancelled.cause, cancelled.detail) == (
        "run_cancelled",
        "shutdown",
        "deploying a new version",
    )


def test_unknown_model_name_is_recorded_as_a_failed_run() -> None:
    recorded = record(Agent("typo", "gpt-nine"))

    assert recorded.result.status == "error"
    assert recorded.result.error is not None
    assert recorded.result.error.message == "unknown model 'gpt-nine' (known: none registered)"
    assert recorded.kinds == ["run_started", "run_finished"]


def test_exhausted_script_fails_the_run_with_a_clear_message() -> None:
    recorded = record(Agent("short", ScriptedModel([call("lookup", topic="a")]), tools=[lookup]))

    assert recorded.result.status == "error"
    assert recorded.result.error is not None
    assert recorded.result.error.type == "ScriptExhaustedError"
    assert "asked for step 2" in recorded.result.error.message


def test_critic_nudge_is_injected_before_the_next_model_step() -> None:
    critic = IdleCritic(idle_after=30, policy=Ladder([nudge("hurry"), kill("gave up")]), check_interval=10)
    script = [hang(40), call("lookup", topic="a"), "answer"]
    agent = Agent("nudged", ScriptedModel(script), tools=[lookup], critic=critic)
    recorded = record(agent)

    assert recorded.result.status == "ok"
    steer = recorded.of_kind("steer_injected")
    assert [(event.source, event.messages[0].text) for event in steer] == [("critic", "hurry")]
    assert recorded.kinds.index("steer_injected") < recorded.kinds.index("model_requested", 4)


def test_virtual_clock_refuses_a_foreign_event_loop() -> None:
    executor = new_executor()
    with pytest.raises(ConfigurationError, match="VirtualClock"):
        asyncio.run(executor.run(Agent("a", ScriptedModel(["hi"])), None, "go"))
