"""Runs for the OpenTelemetry and report tests: the seven demo runs, and a family of runs.

The family is what the demo lacks: a parent whose model asks for two tools at once (parallel
calls) and one of those tools delegating to a child run with its own tool call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from executus import (
    Agent,
    Event,
    Executor,
    MemoryStore,
    SequentialIds,
    ToolContext,
    VirtualClock,
    tool,
)
from executus.cli._demo import DemoRun, record_demo
from executus.testing import ScriptedModel, call, hang, reply

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def demo_runs() -> tuple[MemoryStore, list[DemoRun]]:
    """The seven demo runs, with ids ``demo-0001``… and times from ``START``."""
    store = MemoryStore()
    return store, record_demo(store, VirtualClock(START), SequentialIds("demo-"))


@tool
async def lookup(term: str) -> str:
    """Look a term up in the glossary.

    Args:
        term: the term.
    """
    await asyncio.sleep(2.0)
    return f"{term}: a word"


def family_agent() -> Agent:
    """A manager whose first reply asks for two tools at once; ``delegate`` starts a child run."""
    child = Agent(
        "summariser",
        ScriptedModel(
            [hang(0.5), call("lookup", term="gist"), hang(0.5), "a short summary"], name="small-model"
        ),
        tools=[lookup],
    )

    @tool
    async def delegate(text: str, context: ToolContext) -> str:
        """Ask a helper agent to summarise.

        Args:
            text: what to summarise.
        """
        result = await context.start_child(child, text)
        return result.output or ""

    model = ScriptedModel(
        [
            hang(1.0),
            reply(None, call("lookup", term="agent"), call("delegate", text="a long text")),
            hang(1.0),
            "done",
        ],
        name="big-model",
    )
    return Agent("manager", model, tools=[lookup, delegate], max_runtime=600)


def record_family(on_event: Callable[[Event], None] | None = None) -> MemoryStore:
    """Record the family (parent ``fam-0001``, child ``fam-0002``) in a new store."""
    store = MemoryStore()
    clock = VirtualClock(START)
    executor = Executor(store, clock=clock, ids=SequentialIds("fam-"), on_event=on_event)
    clock.run(executor.run(family_agent(), None, "Explain agents, briefly."))
    return store
