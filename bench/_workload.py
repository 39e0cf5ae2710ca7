"""The agent every case runs, and real executor events captured in the executor's own batches.

The agent is the shape the issue measures: every model reply asks for one tool call, the tool
answers ~300 bytes, and the last reply is the final answer. The fake model is a
:class:`FunctionModel` that gives every reply an explicit ``usage``, so the fake does no
per-step work that grows with the transcript (its usage estimate would serialise the whole
transcript on each step).

:func:`capture_run` records a run through a real :class:`Executor` into a store that keeps
each ``append`` call as it came: the events, and the transactions the executor asked for. The
append case replays exactly those batches into the stores it measures.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from executus import (
    Agent,
    Executor,
    Invocation,
    ModelRequest,
    ModelResponse,
    Result,
    Tool,
    ToolCall,
    Usage,
    VirtualClock,
    tool,
)
from executus.events import Event
from executus.storage import MemoryStore
from executus.testing import FunctionModel, reply

__all__ = [
    "TOOL_RESULT",
    "BatchCapture",
    "CapturedRun",
    "bench_agent",
    "capture_run",
    "renamed",
    "run_id_for",
]

TOOL_RESULT = "r" * 300
"""What the tool answers: one ~300-byte message per step, as LangGraph's anchor adds."""
START = datetime(2026, 1, 1, tzinfo=UTC)


@tool
async def lookup(query: str) -> str:
    """Look something up.

    Args:
        query: what to look up.
    """
    return TOOL_RESULT


def _respond(steps: int) -> Callable[[ModelRequest], ModelResponse]:
    """Replies that call ``lookup`` on steps 1..steps-1 and answer on step ``steps``."""

    def respond(request: ModelRequest) -> ModelResponse:
        if request.step >= steps:
            return reply("The answer is 42.", usage=Usage(input_tokens=900, output_tokens=8))
        arguments = {"query": f"question {request.step}"}
        return reply(
            f"Step {request.step}: I will look that up. " + "t" * 60,
            ToolCall(id=f"call-{request.step}", name="lookup", arguments=arguments),
            usage=Usage(input_tokens=900, output_tokens=40),
        )

    return respond


def bench_agent(steps: int, *, latency: float = 0.0, tools: Sequence[Tool] = (lookup,)) -> Agent:
    """The bench agent: ``steps`` model calls (``steps - 1`` tool calls, then the answer).

    Args:
        steps: model calls in a run.
        latency: seconds the fake model waits (``asyncio.sleep``) before each reply.
        tools: the agent's tools.
    """
    respond = _respond(steps)
    model = FunctionModel(respond, name="fake-model")
    if latency > 0:

        async def respond_later(request: ModelRequest) -> ModelResponse:
            await asyncio.sleep(latency)
            return respond(request)

        model = FunctionModel(respond_later, name="fake-model")
    return Agent(
        "bench",
        model,
        system_prompt="You are a benchmark agent. Call lookup until you know the answer.",
        tools=tools,
        max_iterations=steps + 1,
    )


class BatchCapture(MemoryStore):
    """A memory store that also keeps each append's batch: the executor's transactions.

    Appends are O(1) (the parent class copies the run's whole log on each append).
    """

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[Event, ...]] = []

    def append(
        self, run_id: str, events: Sequence[Event], expected_seq: int, *, epoch: int | None = None
    ) -> None:
        self.batches.append(tuple(events))

    def read_run(self, run_id: str, after_seq: int = 0) -> list[Event]:
        return [event for batch in self.batches for event in batch if event.seq > after_seq]


@dataclass(frozen=True, slots=True)
class CapturedRun:
    """A recorded run as the executor committed it."""

    result: Result
    batches: tuple[tuple[Event, ...], ...]

    @property
    def events(self) -> list[Event]:
        """The run's events in order."""
        return [event for batch in self.batches for event in batch]

    def transaction_sizes(self) -> Counter[int]:
        """How many transactions committed how many events each."""
        return Counter(len(batch) for batch in self.batches)


def capture_run(steps: int) -> CapturedRun:
    """Run the bench agent for ``steps`` steps on a virtual clock and keep its batches."""
    sink = BatchCapture()
    executor = Executor(sink, clock=VirtualClock(START))
    invocation = Invocation(run_id=run_id_for("template", steps))
    result = executor.run_sync(bench_agent(steps), invocation, "What is the answer?")
    return CapturedRun(result, tuple(sink.batches))


def run_id_for(label: str, index: int = 0) -> str:
    """A deterministic 32-hex-digit run id, as long as the executor's default (uuid4) ids.

    Run ids are stored in every event row, its payload and the unique index, so their length
    shows in bytes per step.
    """
    return hashlib.sha256(f"{label}-{index}".encode()).hexdigest()[:32]


def renamed(batches: Sequence[Sequence[Event]], run_id: str) -> list[tuple[Event, ...]]:
    """The same batches as another run's (pydantic ``model_copy``: no validation, same payloads)."""
    return [tuple(event.model_copy(update={"run_id": run_id}) for event in batch) for batch in batches]
