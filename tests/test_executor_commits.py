"""What the executor commits when: transactions per step, and events committed before side effects."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from _support import START, CountingStore, record

from executus import (
    Agent,
    Executor,
    Invocation,
    ModelRequest,
    ModelResponse,
    SequentialIds,
    Session,
    SessionContext,
    SystemClock,
    ToolContext,
    VirtualClock,
    tool,
)
from executus.events import Event, ModelResponded
from executus.storage import EventWriter, InlineWriter, MemoryStore
from executus.testing import FunctionModel, ScriptedModel, call


def counting_executor(**kwargs: object) -> tuple[Executor, CountingStore]:
    store = CountingStore()
    return Executor(store, clock=VirtualClock(START), ids=SequentialIds(), **kwargs), store  # type: ignore[arg-type]


@tool
def lookup(query: str) -> str:
    """Look something up.

    Args:
        query: what to look up.
    """
    return f"found {query}"


def test_each_decision_commits_one_transaction_and_a_step_with_a_tool_call_two() -> None:
    executor, store = counting_executor()
    model = ScriptedModel([[call("lookup", query="a")], [call("lookup", query="b")], "done"])
    agent = Agent("looker", model, tools=[lookup])

    record(agent, executor=executor)

    assert store.batches == [
        ["run_started", "model_requested"],
        ["model_responded", "tool_started"],
        ["tool_finished", "model_requested"],
        ["model_responded", "tool_started"],
        ["tool_finished", "model_requested"],
        ["model_responded"],
        ["run_finished"],
    ]


def test_every_event_before_a_side_effect_is_committed_when_it_starts() -> None:
    executor, store = counting_executor()
    seen_by_model: list[list[str]] = []
    seen_by_tool: list[list[str]] = []

    def committed_kinds() -> list[str]:
        (run,) = store.list_runs()
        return [event.kind for event in store.read_run(run.run_id)]

    def respond(request: ModelRequest) -> ModelResponse:
        seen_by_model.append(committed_kinds())
        if request.step == 1:
            return ModelResponse(tool_calls=(call("inspect"),))
        return ModelResponse(text="done")

    @tool
    def inspect(context: ToolContext) -> str:
        """Look at what is committed."""
        seen_by_tool.append(committed_kinds())
        context.attach_images("a note for the next step")
        return "ok"

    agent = Agent("watcher", FunctionModel(respond), tools=[inspect])
    record(agent, executor=executor)

    first_step = ["run_started", "model_requested", "model_responded", "tool_started"]
    assert seen_by_tool == [first_step]
    assert seen_by_model == [
        ["run_started", "model_requested"],
        [*first_step, "tool_finished", "steer_injected", "model_requested"],
    ]


def test_on_step_sees_the_reply_committed_before_its_tools_run() -> None:
    executor, store = counting_executor()
    order: list[str] = []

    def on_step(event: ModelResponded) -> None:
        committed = store.read_run(event.run_id)
        order.append(f"step {event.step}: committed up to {committed[-1].kind}")

    @tool
    def note() -> str:
        """Note that a tool ran."""
        order.append("tool ran")
        return "ok"

    agent = Agent("stepper", ScriptedModel([[call("note")], "done"]), tools=[note])
    record(agent, invocation=Invocation(on_step=on_step), executor=executor)

    assert order == [
        "step 1: committed up to tool_started",
        "tool ran",
        "step 2: committed up to model_responded",
    ]


def test_on_event_sees_every_event_in_order_as_it_is_recorded() -> None:
    seen: list[tuple[int, str]] = []
    executor, _store = counting_executor(on_event=lambda event: seen.append((event.seq, event.kind)))
    agent = Agent("looker", ScriptedModel([[call("lookup", query="a")], "done"]), tools=[lookup])

    recorded = record(agent, executor=executor)

    assert seen == [(event.seq, event.kind) for event in recorded.events]


def test_a_failing_on_event_callback_is_logged_and_the_run_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("listener is down")

    executor, _store = counting_executor(on_event=broken)
    with caplog.at_level(logging.ERROR, logger="executus"):
        recorded = record(Agent("plain", ScriptedModel(["done"])), executor=executor)

    assert recorded.result.status == "ok"
    assert "on_event callback failed" in caplog.text


def test_session_steer_and_the_next_request_share_the_tool_results_transaction() -> None:
    executor, store = counting_executor()
    attach: list[SessionContext] = []

    def session(context: SessionContext) -> Session:
        attach.append(context)
        return Session()

    @tool
    def poke() -> str:
        """Have the session say something."""
        attach[0].attach_images("the session speaks")
        return "poked"

    agent = Agent("poked", ScriptedModel([[call("poke")], "done"]), tools=[poke])
    record(agent, invocation=Invocation(session=session), executor=executor)

    assert ["tool_finished", "steer_injected", "model_requested"] in store.batches


class _StoreWithWriter(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.own_writer = InlineWriter(self)

    def writer(self) -> InlineWriter:
        return self.own_writer


def test_the_executor_records_through_the_stores_writer_except_on_a_virtual_clock() -> None:
    # Which writer is chosen; redaction=None, as the default wraps the choice (test_redaction_default).
    store = _StoreWithWriter()
    explicit = InlineWriter(store)

    def writer(**kwargs: Any) -> EventWriter:
        return Executor(store, redaction=None, **kwargs).writer

    assert writer(clock=SystemClock()) is store.own_writer
    assert isinstance(writer(clock=VirtualClock(START)), InlineWriter)
    assert writer(clock=VirtualClock(START)) is not store.own_writer
    assert writer(clock=SystemClock(), writer=explicit) is explicit
    assert isinstance(Executor(MemoryStore(), clock=SystemClock(), redaction=None).writer, InlineWriter)
