"""The core by hand: inputs in, events and effects out, with no IO, no clock and no asyncio."""

from __future__ import annotations

from datetime import datetime, timedelta

from _support import START

from executus import CriticDecision, ToolCall, Usage, kill
from executus._core import CoreState, decide
from executus._effects import CallModel, CancelInFlight, Finish, Outcome, RunPostRun, StartTools, WakeAt
from executus._inputs import (
    CallerCancelled,
    ModelReplied,
    PostRunDone,
    RunRequested,
    TimerFired,
    ToolCallFinished,
)
from executus.events import AgentSpec, CriticSpec, ErrorInfo, RunState

SPEC = AgentSpec(name="hand", model="m", system_prompt="", max_iterations=5, max_runtime=60)


def _started(core: CoreState) -> None:
    decide(
        core,
        RunRequested(
            at=START,
            spec=SPEC,
            input="go",
            caller_id=None,
            parent_run_id=None,
            parent_call_id=None,
            executor_version="test",
        ),
    )


def _at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def test_a_run_request_records_the_start_and_the_first_model_call_and_arms_the_deadline() -> None:
    core = CoreState("r1")
    decision = decide(
        core,
        RunRequested(
            at=START,
            spec=SPEC,
            input="go",
            caller_id="me",
            parent_run_id=None,
            parent_call_id=None,
            executor_version="t",
        ),
    )

    assert [event.kind for event in decision.events] == ["run_started", "model_requested"]
    call_model, wake = decision.effects
    assert isinstance(call_model, CallModel)
    assert (call_model.step, len(call_model.messages)) == (1, 2)
    assert wake == WakeAt(START + timedelta(seconds=60))


def test_parallel_calls_start_together_and_the_model_is_called_when_the_last_ends() -> None:
    core = CoreState("r1")
    _started(core)
    calls = (ToolCall(id="a", name="t"), ToolCall(id="b", name="t"))
    replied = decide(
        core, ModelReplied(at=_at(1), step=1, text=None, tool_calls=calls, usage=Usage(), latency=1.0)
    )
    assert [event.kind for event in replied.events] == ["model_responded", "tool_started", "tool_started"]
    assert replied.effects == [StartTools(calls)]

    first = decide(
        core, ToolCallFinished(at=_at(2), call_id="b", name="t", result="B", error=None, duration=1.0)
    )
    assert ([event.kind for event in first.events], first.effects) == (["tool_finished"], [])

    last = decide(
        core, ToolCallFinished(at=_at(3), call_id="a", name="t", result="A", error=None, duration=2.0)
    )
    assert [event.kind for event in last.events] == ["tool_finished", "model_requested"]
    assert isinstance(last.effects[0], CallModel)


def test_once_the_outcome_is_decided_nothing_but_the_end_is_recorded() -> None:
    core = CoreState("r1")
    _started(core)
    cancelled = decide(core, CallerCancelled(at=_at(1), detail="stop"))
    outcome = Outcome("cancelled", error=ErrorInfo(type="caller", message="stop"))
    assert [event.kind for event in cancelled.events] == ["run_cancelled"]
    assert cancelled.effects == [CancelInFlight(), WakeAt(None), RunPostRun(outcome)]

    late_reply = ModelReplied(at=_at(2), step=1, text="done", tool_calls=(), usage=Usage(), latency=2.0)
    assert decide(core, late_reply).events == []
    assert decide(core, TimerFired(at=_at(70))).events == []

    finished = decide(core, PostRunDone(at=_at(3), ran=False))
    assert [event.kind for event in finished.events] == ["run_finished"]
    assert finished.effects == [Finish(outcome)]


class _KillNow:
    check_interval = 5.0

    def spec(self) -> CriticSpec:
        return CriticSpec(name="KillNow")

    def decide(self, state: RunState, now: datetime) -> CriticDecision | None:
        return kill("enough") if now > START else None


def test_a_critic_kill_and_its_run_cancelled_are_one_decision() -> None:
    core = CoreState("r1", critic=_KillNow())
    _started(core)

    decision = decide(core, TimerFired(at=_at(5)))

    assert [event.kind for event in decision.events] == ["critic_decided", "run_cancelled"]
    assert core.outcome is not None
    assert core.outcome.status == "killed"
