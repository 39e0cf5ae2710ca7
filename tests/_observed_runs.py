"""Runs for the OpenTelemetry and report tests: the seven demo runs, a family of runs, a planted run.

The family is what the demo lacks: a parent whose model asks for two tools at once (parallel
calls) and one of those tools delegating to a child run with its own tool call. The planted
run carries HTML and script in every string a model, a tool or a caller can choose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from executus import (
    Agent,
    Artifact,
    Executor,
    Image,
    Invocation,
    Message,
    PostRun,
    SequentialIds,
    Session,
    SessionContext,
    ToolContext,
    VirtualClock,
    tool,
)
from executus.cli._demo import DemoRun, record_demo
from executus.events import ErrorInfo, Event
from executus.storage import MemoryStore
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


SCRIPT = "<script>window.pwned = 1; alert('script')</script>"
"""Planted in every string the log lets a model, a tool or a user choose."""
ONERROR = '<img src=x onerror="window.pwned = 2; alert(2)">'
ATTRIBUTE = "\"'><svg onload=alert(3)>"
BEACON = '<img src="http://127.0.0.1:9/beacon"><link rel=stylesheet href="http://127.0.0.1:9/css">'
SVG_WITH_SCRIPT = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(4)"><script>alert(5)</script></svg>'
PLANTED_AGENT = f"agent{ATTRIBUTE}{SCRIPT}"
PLANTED_CHILD_ID = f"javascript:alert(6)//{SCRIPT}"


class _PlantedSession(Session):
    """A session tool that attaches an SVG carrying script, and a post-run hook with planted artifacts."""

    def __init__(self, context: SessionContext) -> None:
        async def shoot(url: str, context: ToolContext) -> str:
            """Take a screenshot.

            Args:
                url: the page.
            """
            context.attach_images(f"screenshot {SCRIPT}{ONERROR}", Image(SVG_WITH_SCRIPT, "image/svg+xml"))
            return f"attached {BEACON}"

        self.tools = (tool(shoot),)

    async def post_run(
        self, transcript: Sequence[Message], output: str | None, error: ErrorInfo | None
    ) -> PostRun:
        return PostRun(
            artifacts=[
                Artifact(f"report{ATTRIBUTE}{SCRIPT}.html", "text/html", SCRIPT.encode()),
                Artifact(f"x{ONERROR}", 'image/png" onerror="alert(7)', b"\x89PNG not really"),
            ],
        )


def record_planted() -> MemoryStore:
    """A run (``pl-0001``, child ``PLANTED_CHILD_ID``) whose every free-text field carries HTML and script."""
    child_agent = Agent(f"child{SCRIPT}", ScriptedModel([f"child says {ONERROR}"]), system_prompt=SCRIPT)

    @tool
    async def planted(query: str, context: ToolContext) -> str:
        """Start a child run with planted text, then fail with a planted message.

        Args:
            query: anything.
        """
        await context.start_child(child_agent, f"input {SCRIPT}", Invocation(run_id=PLANTED_CHILD_ID))
        raise ValueError(f"failed: {SCRIPT}{BEACON}")

    model = ScriptedModel(
        [
            hang(0.5),
            reply(
                f"thinking {ONERROR}",
                call("planted", query=f"</pre>{SCRIPT}"),
                call("shoot", url=f"javascript:{SCRIPT}"),
                # Tool names are checked when a tool is made, but the model may name anything.
                call(f"missing{ATTRIBUTE}{SCRIPT}", **{ATTRIBUTE: BEACON, "x": ONERROR}),
            ),
            hang(0.5),
            f"final answer {SCRIPT}{ONERROR}{BEACON}",
        ],
        name=f"model{ATTRIBUTE}",
    )
    agent = Agent(PLANTED_AGENT, model, system_prompt=SCRIPT, tools=[planted], max_runtime=60)
    store = MemoryStore()
    clock = VirtualClock(START)
    executor = Executor(store, clock=clock, ids=SequentialIds("pl-"))
    clock.run(executor.run(agent, Invocation(caller_id=ONERROR, session=_PlantedSession), f"input {SCRIPT}"))
    return store


def record_resumed(listener: Callable[[MemoryStore], Callable[[Event], None]] | None = None) -> MemoryStore:
    """A run (``run-0001``) whose process died while its model call waited, resumed 5 minutes later.

    ``listener`` makes the resuming executor's ``on_event`` from the crashed store: it hears only
    what the new process records, as a live exporter there would.
    """
    from test_executor_resume import _crash_when

    crashed = _crash_when("model_requested", Agent("slow", ScriptedModel([hang(60), "x"]), max_runtime=120))
    clock = VirtualClock(crashed.read_run("run-0001")[-1].at + timedelta(minutes=5))
    on_event = listener(crashed) if listener is not None else None
    executor = Executor(crashed, clock=clock, ids=SequentialIds("r-"), on_event=on_event)
    clock.run(executor.resume("run-0001", Agent("slow", ScriptedModel(["answer"]), max_runtime=120)))
    return crashed
