"""When the store fails mid-run, and text no store can hold: on memory, SQLite and PostgreSQL.

A SQL outage is a real refusal by the database (a trigger that aborts the insert of one kind
of event, as a full disk or a lost connection would); on memory a writer raises instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from _support import START
from sqlalchemy import text

from executus import (
    Agent,
    Executor,
    Invocation,
    Message,
    ModelResponse,
    PostRun,
    RecordingFailedError,
    SequentialIds,
    Session,
    SessionContext,
    StoreError,
    ToolCall,
    Usage,
    VirtualClock,
    tool,
)
from executus.events import ErrorInfo, Event, rebuild
from executus.storage import EventStore, EventWriter, InlineWriter
from executus.testing import ScriptedModel, call, hang, reply
from replay import Replayer
from store import SqlStore


class _FailingWriter:
    """A writer whose store refuses any batch holding an event of ``kind``."""

    def __init__(self, store: EventStore, kind: str) -> None:
        self._inner = InlineWriter(store)
        self._kind = kind

    async def append(self, run_id: str, events: Sequence[Event], expected_seq: int) -> None:
        if any(event.kind == self._kind for event in events):
            raise StoreError(f"the store refused {self._kind} (simulated outage)")
        await self._inner.append(run_id, events, expected_seq)

    async def put_blob(self, data: bytes, media_type: str) -> str:
        return await self._inner.put_blob(data, media_type)


@contextmanager
def outage(store: EventStore, kind: str) -> Iterator[EventWriter | None]:
    """The store fails to insert events of ``kind``; yields the writer to use (None: the store's)."""
    if not isinstance(store, SqlStore):
        yield _FailingWriter(store, kind)
        return
    if store.engine.dialect.name == "sqlite":
        create = [
            f"CREATE TRIGGER outage BEFORE INSERT ON events WHEN NEW.kind = '{kind}' "
            "BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated outage)'); END"
        ]
        drop = ["DROP TRIGGER outage"]
    else:
        create = [
            "CREATE FUNCTION outage() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'could not write to file (simulated outage)'; END $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER outage BEFORE INSERT ON events FOR EACH ROW WHEN (NEW.kind = '{kind}') "
            "EXECUTE FUNCTION outage()",
        ]
        drop = ["DROP TRIGGER outage ON events", "DROP FUNCTION outage()"]
    with store.engine.begin() as connection:
        for statement in create:
            connection.execute(text(statement))
    try:
        yield None
    finally:
        with store.engine.begin() as connection:
            for statement in drop:
                connection.execute(text(statement))


class _Witness(Session):
    """Remembers whether its hooks ran."""

    ran: list[str]

    def __init__(self, context: SessionContext, ran: list[str]) -> None:
        self.ran = ran

    async def post_run(
        self, transcript: Sequence[Message], output: str | None, error: ErrorInfo | None
    ) -> PostRun:
        self.ran.append("post_run")
        return PostRun()

    async def cleanup(self) -> None:
        self.ran.append("cleanup")


class _Budget:
    def __init__(self, ran: list[str]) -> None:
        self.ran = ran

    async def commit(self, caller_id: str | None, seconds: float) -> None:
        self.ran.append("budget")


tool_calls: list[str] = []


@tool
def note(text: str) -> str:
    """Write a note (a side effect).

    Args:
        text: the note.
    """
    tool_calls.append(text)
    return "noted"


def _run_through_outage(store: EventStore, kind: str, agent: Agent) -> tuple[RecordingFailedError, list[str]]:
    ran: list[str] = []
    with outage(store, kind) as writer:
        options: dict[str, Any] = {"writer": writer} if writer is not None else {}
        executor = Executor(
            store, clock=VirtualClock(START), ids=SequentialIds(), budget=_Budget(ran), **options
        )
        invocation = Invocation(session=lambda context: _Witness(context, ran))
        with pytest.raises(RecordingFailedError) as raised:
            executor.run_sync(agent, invocation, "go")
    return raised.value, ran


def test_a_store_failure_at_the_deadline_stops_the_run_and_still_cleans_up(store: EventStore) -> None:
    tool_calls.clear()
    model = ScriptedModel([hang(3), call("note", text="a"), call("note", text="b"), "done"])
    agent = Agent("late", model, tools=[note], max_runtime=2)

    error, ran = _run_through_outage(store, "run_cancelled", agent)

    events = store.read_run("run-0001")
    assert [event.kind for event in events] == ["run_started", "model_requested"]
    assert (error.run_id, error.last_durable_seq) == ("run-0001", 2)
    assert "run run-0001" in str(error)
    assert "seq 2" in str(error)
    assert tool_calls == []
    assert len(model.requests) == 1
    assert ran == ["post_run", "cleanup", "budget"]


def test_no_side_effect_starts_whose_start_event_is_not_durable(store: EventStore) -> None:
    tool_calls.clear()
    agent = Agent("noter", ScriptedModel([call("note", text="a"), "done"]), tools=[note])

    error, ran = _run_through_outage(store, "tool_started", agent)

    kinds = [event.kind for event in store.read_run("run-0001")]
    assert kinds == ["run_started", "model_requested"]
    assert error.last_durable_seq == 2
    assert tool_calls == []
    assert ran == ["post_run", "cleanup", "budget"]
    assert store.get_run("run-0001").status == "running"  # resumable once the store is back


def test_a_run_stopped_by_a_store_failure_resumes_once_the_store_is_back(store: EventStore) -> None:
    tool_calls.clear()
    agent = Agent("noter", ScriptedModel([call("note", text="a"), "done"]), tools=[note])
    _run_through_outage(store, "tool_started", agent)

    later = VirtualClock(START)
    resumed_agent = Agent("noter", ScriptedModel([call("note", text="b"), "done"]), tools=[note])
    result = later.run(Executor(store, clock=later).resume("run-0001", resumed_agent))

    assert result.status == "ok"
    assert tool_calls == ["b"]
    assert rebuild(store.read_run("run-0001")) == result.state


@tool
def list_files() -> list[str]:
    """List the files (a name that is not UTF-8 comes back with lone surrogates)."""
    return ["report.txt", "caf\udce9.txt"]


@tool
def fail_with_nul() -> str:
    """Fail with a message holding a NUL."""
    raise OSError("bad\x00byte")


def test_text_no_store_can_hold_is_replaced_and_the_run_is_recorded(store: EventStore) -> None:
    usage = Usage(input_tokens=1, output_tokens=1)  # the fake's estimate cannot encode them
    calls = (
        ToolCall(id="a", name="list_files"),
        ToolCall(id="b", name="fail_with_nul"),
        ToolCall(id="c", name="list_files", arguments={"glob": "*\udcff", "n\x00": "v"}),
    )
    model = ScriptedModel(
        [ModelResponse(tool_calls=calls, usage=usage), reply("found caf\udce9.txt and a \x00", usage=usage)]
    )
    agent = Agent("lister", model, tools=[list_files, fail_with_nul])
    executor = Executor(store, clock=VirtualClock(START), ids=SequentialIds())

    result = executor.run_sync(agent, None, "list \ud800 files")

    assert result.status == "ok"
    assert result.output == "found caf\ufffd.txt and a \ufffd"
    events = store.read_run("run-0001")
    texts = [event.model_dump_json() for event in events]
    assert not any("\\ud" in text or "\\u0000" in text for text in texts)
    by_kind: dict[str, list[Any]] = {}
    for event in events:
        by_kind.setdefault(event.kind, []).append(event)
    assert by_kind["run_started"][0].input == "list \ufffd files"
    assert by_kind["tool_finished"][0].result == '["report.txt","caf\ufffd.txt"]'
    assert by_kind["tool_finished"][1].error.message == "bad\ufffdbyte"
    assert by_kind["tool_started"][2].arguments == {"glob": "*\ufffd", "n\ufffd": "v"}
    assert rebuild(events) == result.state
    assert Replayer().replay_run(events).identical


def test_a_tool_that_finished_before_a_crash_is_not_marked_interrupted(store: EventStore) -> None:
    calls = [call("wait_for", seconds=1), call("wait_for", seconds=100)]
    agent = Agent("pair", ScriptedModel([calls, "done"]), tools=[wait_for])

    resumed = _crash_and_resume(store, agent, lambda events: events[-1].kind == "tool_finished")

    finished = [event for event in resumed if event.kind == "tool_finished"]
    assert [(event.result, event.error.type if event.error else None) for event in finished] == [
        ("waited 1.0", None),
        (None, "Interrupted"),
    ]


def test_resuming_a_sequential_batch_answers_every_call_of_the_reply(store: EventStore) -> None:
    calls = [call("wait_for", seconds=1), call("wait_for", seconds=100), call("wait_for", seconds=2)]
    agent = Agent("seq", ScriptedModel([calls, "done"]), tools=[wait_for], parallel_tool_calls=False)

    def second_in_flight(events: list[Event]) -> bool:
        return sum(event.kind == "tool_started" for event in events) == 2

    resumed = _crash_and_resume(store, agent, second_in_flight)

    finished = [event for event in resumed if event.kind == "tool_finished"]
    assert [(event.result, event.error.type if event.error else None) for event in finished] == [
        ("waited 1.0", None),
        (None, "Interrupted"),
        (None, "NotStarted"),
    ]
    state = rebuild(resumed)
    request = [m for m in state.transcript if m.role == "tool"]
    replied = resumed[[event.kind for event in resumed].index("model_responded")]
    assert sorted(m.call_id for m in request) == sorted(c.id for c in replied.tool_calls)  # type: ignore[union-attr]
    assert state.status == "ok"


@tool
async def wait_for(seconds: float) -> str:
    """Wait.

    Args:
        seconds: how long.
    """
    await asyncio.sleep(seconds)
    return f"waited {seconds}"


def _crash_and_resume(store: EventStore, agent: Agent, crashed: Any) -> list[Event]:
    """Record ``agent`` until ``crashed(log)``; keep that log in ``store`` and resume it there."""
    scratch = Executor(clock=VirtualClock(START), ids=SequentialIds())

    async def run_until_crash() -> list[Event]:
        task = asyncio.ensure_future(scratch.run(agent, None, "go"))
        for _ in range(400):  # polling costs nothing on the virtual clock
            if scratch.store.list_runs() and crashed(scratch.store.read_run("run-0001")):
                break
            await asyncio.sleep(0.5)
        else:
            pytest.fail("the log never reached the crash point")
        events = scratch.store.read_run("run-0001")
        task.cancel()
        return events

    survived = scratch.clock.run(run_until_crash())
    store.append("run-0001", survived, 0)
    later = VirtualClock(START)
    later.run(Executor(store, clock=later).resume("run-0001", agent))
    return store.read_run("run-0001")
