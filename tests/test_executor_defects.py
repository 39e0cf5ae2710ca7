"""Defects of the two-task executor, each pinned by what a user of the log would notice.

Each test failed on the executor that ran a run as two racing tasks (step loop and watchdog);
the store-dependent ones are in ``test_executor_store_failures.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from _support import START, CountingStore, record

from executus import (
    Agent,
    Cancellation,
    CriticDecision,
    Executor,
    IdleCritic,
    Invocation,
    Ladder,
    Message,
    ModelRequest,
    ModelResponse,
    PostRun,
    SequentialIds,
    Session,
    SessionContext,
    ToolCall,
    Usage,
    VirtualClock,
    kill,
    tool,
)
from executus.events import CriticSpec, ErrorInfo, RunState
from executus.testing import FunctionModel, ScriptedModel, call, hang


@tool
async def slow(seconds: float) -> str:
    """Take a while.

    Args:
        seconds: how long.
    """
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


class KillAtTwoSeconds:
    """Kills every run 2 s after it started, whatever it is doing."""

    check_interval = 2.0

    def spec(self) -> CriticSpec:
        return CriticSpec(name="KillAtTwoSeconds")

    def decide(self, state: RunState, now: datetime) -> CriticDecision | None:
        if state.kill_reason is None and (now - state.started_at).total_seconds() >= 2:
            return kill("time is up")
        return None


def test_a_kill_due_at_the_instant_of_the_final_reply_never_leaves_an_ok_run_with_a_kill() -> None:
    agent = Agent("tied", ScriptedModel([hang(2.0), "done"]), critic=KillAtTwoSeconds())

    recorded = record(agent)

    kinds = recorded.kinds
    if "critic_decided" in kinds:
        assert recorded.result.status == "killed"
        assert kinds[kinds.index("critic_decided") :] == ["critic_decided", "run_cancelled", "run_finished"]
    else:
        assert recorded.result.status == "ok"
        assert recorded.result.state.kill_reason is None


def test_a_kill_and_its_run_cancelled_are_one_commit() -> None:
    store = CountingStore()
    critic = IdleCritic(idle_after=2, check_interval=1, policy=Ladder([kill("stuck")]))
    agent = Agent("stuck", ScriptedModel([hang(60), "done"]), critic=critic)

    record(agent, executor=Executor(store, clock=VirtualClock(START), ids=SequentialIds()))

    assert ["critic_decided", "run_cancelled"] in store.batches


@tool
async def stubborn() -> str:
    """A tool that takes 20 s to stop when cancelled."""
    try:
        await asyncio.sleep(100)
    except asyncio.CancelledError:
        await asyncio.sleep(20)
        raise
    return "never"


def test_the_critic_never_acts_after_a_caller_cancel_while_a_tool_is_slow_to_stop() -> None:
    cancellation = Cancellation()
    critic = IdleCritic(idle_after=5, check_interval=1, policy=Ladder([kill("stuck")]))
    agent = Agent("stubborn", ScriptedModel([call("stubborn"), "done"]), tools=[stubborn], critic=critic)

    async def cancel_soon(run: object) -> object:
        asyncio.get_running_loop().call_later(1, cancellation.cancel, "enough")
        return await run  # type: ignore[misc]

    recorded = record(agent, invocation=Invocation(cancellation=cancellation), around=cancel_soon)  # type: ignore[arg-type]

    assert recorded.result.status == "cancelled"
    assert recorded.kinds[-2:] == ["run_cancelled", "run_finished"]
    assert "critic_decided" not in recorded.kinds


def test_a_cancelled_error_nobody_asked_for_is_the_tools_failure_and_siblings_stop_before_run_returns() -> (
    None
):
    sibling_stopped: list[bool] = []

    @tool
    async def awaits_a_cancelled_future() -> str:
        """Await something another task cancelled."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        future.cancel()
        return await future

    @tool
    async def sibling() -> str:
        """Run long."""
        try:
            await asyncio.sleep(1000)
        finally:
            sibling_stopped.append(True)
        return "done"

    cancellation = Cancellation()
    model = ScriptedModel([[call("awaits_a_cancelled_future"), call("sibling")], "done"])
    agent = Agent("futures", model, tools=[awaits_a_cancelled_future, sibling], max_runtime=50)

    recorded = record(agent, invocation=Invocation(cancellation=cancellation))

    assert recorded.result.status == "timeout"  # not "cancelled": nobody cancelled the run
    failed = [event for event in recorded.of_kind("tool_finished") if event.error is not None]
    assert [event.error.type for event in failed] == ["CancelledError"]
    assert recorded.kinds[-2:] == ["run_cancelled", "run_finished"]
    assert sibling_stopped == [True]


class _CancellingSession(Session):
    def __init__(self, context: SessionContext, where: str) -> None:
        self.where = where

    async def post_run(
        self, transcript: Sequence[Message], output: str | None, error: ErrorInfo | None
    ) -> PostRun:
        if self.where == "post_run":
            raise asyncio.CancelledError
        return PostRun(metadata={"ran": True})

    async def cleanup(self) -> None:
        if self.where == "cleanup":
            raise asyncio.CancelledError


@pytest.mark.parametrize("where", ["post_run", "cleanup"])
def test_a_session_hook_raising_cancelled_error_still_finishes_the_run(where: str) -> None:
    agent = Agent("hooked", ScriptedModel(["done"]))
    invocation = Invocation(session=lambda context: _CancellingSession(context, where))

    recorded = record(agent, invocation=invocation)

    assert recorded.result.status == "ok"
    assert recorded.kinds[-2:] == ["post_run_finished", "run_finished"]
    post_run = recorded.of_kind("post_run_finished")[0]
    error = post_run.error if where == "post_run" else post_run.cleanup_error
    assert error.type == "CancelledError"


def test_at_a_timeout_a_parallel_tool_that_finished_is_logged_and_not_listed_in_flight() -> None:
    calls = [call("slow", seconds=1), call("slow", seconds=100)]
    agent = Agent("timed", ScriptedModel([calls, "done"]), tools=[slow], max_runtime=10)

    recorded = record(agent)

    finished = recorded.of_kind("tool_finished")
    assert [(event.result, event.at - recorded.events[0].at) for event in finished] == [
        ("slept 1.0", timedelta(seconds=1))
    ]
    cancelled = recorded.of_kind("run_cancelled")[0]
    assert [(item.name, item.arguments) for item in cancelled.in_flight] == [("slow", {"seconds": 100})]


def test_duplicate_tool_call_ids_each_get_their_own_result() -> None:
    calls = [call("slow", id="same", seconds=1), call("slow", id="same", seconds=2)]
    agent = Agent("twins", ScriptedModel([calls, "done"]), tools=[slow])

    recorded = record(agent)

    replied = recorded.of_kind("model_responded")[0]
    ids = [tool_call.id for tool_call in replied.tool_calls]
    assert len(set(ids)) == 2
    assert sorted(event.call_id for event in recorded.of_kind("tool_finished")) == sorted(ids)
    assert recorded.result.status == "ok"


def test_tool_arguments_that_are_not_an_object_are_an_error_result_the_model_sees() -> None:
    def reply(request: ModelRequest) -> ModelResponse:
        if request.step == 1:
            bad = ToolCall.model_construct(id="c1", name="slow", arguments=[1, 2])
            return ModelResponse.model_construct(text=None, tool_calls=(bad,), usage=Usage(input_tokens=1))
        return ModelResponse(text="done")

    recorded = record(Agent("bad-args", FunctionModel(reply), tools=[slow]))

    assert recorded.result.status == "ok"
    finished = recorded.of_kind("tool_finished")[0]
    assert finished.error.type == "InvalidArguments"
    assert "JSON object" in finished.error.message


def test_negative_token_counts_from_a_model_are_refused() -> None:
    def reply(request: ModelRequest) -> ModelResponse:
        return ModelResponse.model_construct(
            text="done", tool_calls=(), usage=Usage.model_construct(input_tokens=-5, output_tokens=1)
        )

    recorded = record(Agent("negative", FunctionModel(reply)))

    assert recorded.result.status == "error"
    assert recorded.result.error is not None
    assert recorded.result.error.type == "InvalidModelResponse"
    assert recorded.result.usage == Usage()


def test_a_model_request_keeps_the_messages_it_was_made_with() -> None:
    model = ScriptedModel([call("slow", seconds=1), "done"])

    record(Agent("snapshots", model, tools=[slow]))

    assert [len(request.messages) for request in model.requests] == [2, 4]
    with pytest.raises((TypeError, AttributeError)):
        model.requests[0].messages.append(model.requests[0].messages[0])  # type: ignore[attr-defined]


class _OddMetadata(Session):
    async def post_run(
        self, transcript: Sequence[Message], output: str | None, error: ErrorInfo | None
    ) -> PostRun:
        return PostRun(metadata={"when": datetime(2026, 1, 1)})  # type: ignore[dict-item]


def test_post_run_metadata_that_is_not_json_is_the_hooks_error_not_a_stuck_run() -> None:
    recorded = record(
        Agent("odd", ScriptedModel(["done"])), invocation=Invocation(session=lambda context: _OddMetadata())
    )

    assert recorded.result.status == "ok"
    post_run = recorded.of_kind("post_run_finished")[0]
    assert post_run.error.type == "ValidationError"
    assert post_run.metadata == {}


def test_a_model_awaiting_a_future_something_else_cancelled_fails_the_run_as_an_error() -> None:
    async def reply(request: ModelRequest) -> ModelResponse:
        future: asyncio.Future[ModelResponse] = asyncio.get_running_loop().create_future()
        future.cancel()
        return await future

    recorded = record(Agent("futures", FunctionModel(reply)))

    assert recorded.result.status == "error"
    assert recorded.result.error is not None
    assert recorded.result.error.type == "CancelledError"
    assert recorded.kinds[-2:] == ["model_failed", "run_finished"]
