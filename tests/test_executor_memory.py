"""A finished run is freed by reference counting alone, the moment nothing holds its result.

A reference cycle through a run (its driver, its state, its whole transcript) would keep it
until a full garbage collection, which walks every live object of the process while every
run on the event loop waits: the longer the transcripts, the longer the pause. With no cycle,
an operator may also raise the collector's thresholds, or freeze the start-up heap, without
leaking finished runs.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence

import pytest

from executus import (
    Agent,
    Artifact,
    Executor,
    Invocation,
    Message,
    ModelSettings,
    PostRun,
    Session,
    SessionContext,
    SystemClock,
    tool,
)
from executus.events import ErrorInfo
from executus.storage import MemoryStore
from executus.testing import ScriptedModel, call


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return f"found {query}"


class NoteKeeper(Session):
    """A session that keeps its context (as many will) and makes an artifact."""

    def __init__(self, context: SessionContext) -> None:
        self.context = context
        self.tools = [lookup]

    async def post_run(
        self, transcript: Sequence[Message], output: str | None, error: ErrorInfo | None
    ) -> PostRun:
        return PostRun(artifacts=[Artifact("notes.txt", "text/plain", b"notes")])


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The cycle collector off; ``gc.collect()`` then keeps what it finds in ``gc.garbage``."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()


@pytest.mark.usefixtures("collector_off")
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_finished_run_leaves_no_reference_cycle(stream: bool) -> None:
    script = ScriptedModel([[call("lookup", query="a")], [call("lookup", query="b")], "done"])
    agent = Agent("looker", script, model_settings=ModelSettings(stream=stream))
    invocation = Invocation(session=NoteKeeper)
    result = Executor(MemoryStore(), clock=SystemClock()).run_sync(agent, invocation, "go")
    assert result.status == "ok"
    del result
    gc.collect()
    left = {type(thing).__qualname__ for thing in gc.garbage if type(thing).__module__.startswith("executus")}
    assert left == set()
