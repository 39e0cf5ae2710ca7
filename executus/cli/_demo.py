"""The built-in demo: seven small agents on fake models, one for each way a run can go.

``executus demo`` records them so that a new user has real runs to list, show and explain.
They run on a :class:`~executus.VirtualClock`, so minutes of (virtual) idleness pass in
milliseconds while the log still shows realistic timestamps, model latencies and idle gaps.
This module is pure core code: it knows nothing of the command line.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from executus._agent import (
    Agent,
    Artifact,
    Cancellation,
    Invocation,
    PostRun,
    Result,
    Session,
    SessionContext,
    SessionFactory,
)
from executus._clock import IdGenerator, VirtualClock
from executus._critic import IdleCritic
from executus._events import ErrorInfo
from executus._executor import Executor
from executus._messages import Image, Message, ModelRequest, ModelResponse, ToolCall
from executus._store import EventStore
from executus._tools import Tool, ToolContext, tool
from executus.testing import FunctionModel, ScriptedModel, call, hang

__all__ = ["DEMO_CALLER", "DemoRun", "record_demo"]

DEMO_CALLER: Final = "demo"
"""The caller id every demo run is recorded with."""
_MODEL: Final = "fake-model"
_PAUSE_BETWEEN_RUNS: Final = 3.0
_CANCEL_DETAIL: Final = "the user closed the chat window"


@dataclass(frozen=True, slots=True)
class DemoRun:
    """One recorded demo run.

    Attributes:
        scenario: what the run demonstrates, in a few words.
        result: how it ended.
    """

    scenario: str
    result: Result


@dataclass(frozen=True, slots=True)
class _Scenario:
    description: str
    agent: Agent
    prompt: str
    session: SessionFactory | None = None
    cancel_after: float | None = None
    """Seconds after the start at which the caller cancels the run."""


# -- tools -------------------------------------------------------------------------------------


@tool
async def search(query: str) -> str:
    """Search the web.

    Args:
        query: what to look for.
    """
    await asyncio.sleep(0.8)
    return f"3 results for {query!r}: everest-facts.org, boiling-points.net, alpine-kitchen.com"


@tool
async def fetch(url: str) -> str:
    """Fetch a web page and return its text.

    Args:
        url: the page's address.
    """
    await asyncio.sleep(1.6)
    return f"{url}: at the summit's 34 kPa, water boils at about 71 °C."


@tool
async def fetch_page(url: str) -> str:
    """Fetch a web page through a headless browser.

    Args:
        url: the page's address.
    """
    await asyncio.sleep(24 * 3600)  # the upstream server never answers
    return ""


@tool
async def load_document(path: str) -> str:
    """Load a document from the archive.

    Args:
        path: the document's path in the archive.
    """
    await asyncio.sleep(4.0)
    return f"{path}: 212 pages of board minutes, 2019-2024."


@tool
async def translate_chunk(text: str, target: str) -> str:
    """Translate a chunk of text.

    Args:
        text: the text to translate.
        target: the target language code.
    """
    await asyncio.sleep(20.0)
    return f"[{target}] {text}"


def _forecast_tool() -> Tool:
    attempts = 0

    async def get_forecast(city: str) -> str:
        """Get tomorrow's weather forecast.

        Args:
            city: the city's name.
        """
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(2.5 if attempts == 1 else 0.6)
        if attempts == 1:
            raise ConnectionError("weather service answered 503 Service Unavailable")
        return f"{city}: 4 °C, light snow, wind 30 km/h from the north"

    return tool(get_forecast)


@tool
async def check_status(job: str) -> str:
    """Check the status of a batch job.

    Args:
        job: the job's id.
    """
    await asyncio.sleep(0.5)
    return f"job {job}: still pending"


def _tiny_png() -> bytes:
    """A valid 2x2 PNG, made here so the demo ships no binary file."""
    width = height = 2
    rows = b"".join(b"\x00" + b"\x1f\x6f\xb4" * width for _ in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        checksum = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class _ReviewSession(Session):
    """A session with a screenshot tool and a post-run hook that writes a review report."""

    def __init__(self, context: SessionContext) -> None:
        self.context = context

        async def screenshot(url: str, context: ToolContext) -> str:
            """Take a screenshot of a page and show it to the model.

            Args:
                url: the page's address.
            """
            await asyncio.sleep(1.8)
            context.attach_images(f"Screenshot of {url}:", Image(_tiny_png(), "image/png"))
            return "screenshot attached"

        self.tools = (tool(screenshot),)

    async def post_run(
        self, transcript: Sequence[Message], output: str | None, error: ErrorInfo | None
    ) -> PostRun:
        report = f"# UI review\n\nRun: {self.context.run_id}\n\n{output or error}\n"
        return PostRun(
            artifacts=[Artifact("review.md", "text/markdown", report.encode())],
            metadata={"messages": len(transcript)},
        )


# -- the seven runs ----------------------------------------------------------------------------


def _research() -> _Scenario:
    model = ScriptedModel(
        [
            hang(1.4),
            call("search", query="boiling point of water on Everest"),
            hang(1.1),
            call("fetch", url="https://everest-facts.org/boiling"),
            hang(2.3),
            "Water boils at about 71 °C on the summit of Everest, because the air pressure is a "
            "third of sea level's.",
        ],
        name=_MODEL,
    )
    agent = Agent(
        name="researcher",
        model=model,
        system_prompt="You answer questions with sources from the web.",
        tools=[search, fetch],
        max_iterations=6,
        max_runtime=300,
        critic=IdleCritic(idle_after=120),
    )
    return _Scenario("two tools, then an answer", agent, "At what temperature does water boil on Everest?")


def _stalled() -> _Scenario:
    model = ScriptedModel([hang(1.2), call("fetch_page", url="https://slow.example.com/report")], name=_MODEL)
    agent = Agent(
        name="scraper",
        model=model,
        system_prompt="You extract tables from web pages.",
        tools=[fetch_page],
        max_iterations=6,
        max_runtime=900,
        critic=IdleCritic(idle_after=120),
    )
    return _Scenario(
        "stalled tool: nudge, extend, kill", agent, "Extract the revenue table from the Q3 report."
    )


def _timeout() -> _Scenario:
    model = ScriptedModel(
        [hang(1.3), call("load_document", path="board/minutes-2019-2024.pdf"), hang(60.0), "(never sent)"],
        name=_MODEL,
    )
    agent = Agent(
        name="summarizer",
        model=model,
        system_prompt="You summarise long documents.",
        tools=[load_document],
        max_iterations=6,
        max_runtime=30,
    )
    return _Scenario("slow model: max runtime passed", agent, "Summarise five years of board minutes.")


def _cancelled() -> _Scenario:
    model = ScriptedModel(
        [hang(0.9), call("translate_chunk", text="Chapter 1. It was a bright cold day.", target="fr")],
        name=_MODEL,
    )
    agent = Agent(
        name="translator",
        model=model,
        system_prompt="You translate books chunk by chunk.",
        tools=[translate_chunk],
        max_iterations=10,
        max_runtime=600,
    )
    return _Scenario("the caller cancelled", agent, "Translate the novel into French.", cancel_after=6.0)


def _recovered() -> _Scenario:
    model = ScriptedModel(
        [
            hang(1.0),
            call("get_forecast", city="Reykjavik"),
            hang(1.5),
            _retrying_reply(),
            hang(1.2),
            "Tomorrow in Reykjavik: 4 °C with light snow and a cold north wind. Bring a hat.",
        ],
        name=_MODEL,
    )
    agent = Agent(
        name="weather",
        model=model,
        system_prompt="You answer weather questions.",
        tools=[_forecast_tool()],
        max_iterations=6,
        max_runtime=120,
    )
    return _Scenario("a tool raised; the model retried", agent, "What's the weather in Reykjavik tomorrow?")


def _retrying_reply() -> ModelResponse:
    """The weather model's second reply: it says it will retry, and calls the tool again."""
    return ModelResponse(
        text="The forecast service failed; trying again.",
        tool_calls=(ToolCall(id="", name="get_forecast", arguments={"city": "Reykjavik"}),),
    )


def _reviewer() -> _Scenario:
    model = ScriptedModel(
        [
            hang(1.1),
            call("screenshot", url="https://shop.example.com/checkout"),
            hang(3.2),
            "The checkout button is below the fold on small screens; move it above the order summary.",
        ],
        name=_MODEL,
    )
    agent = Agent(
        name="ui-reviewer",
        model=model,
        system_prompt="You review web pages for usability problems.",
        max_iterations=6,
        max_runtime=300,
    )
    return _Scenario(
        "session tool image + post-run artifact", agent, "Review the checkout page.", session=_ReviewSession
    )


def _looping() -> _Scenario:
    async def always_check(request: ModelRequest) -> ModelResponse:
        await asyncio.sleep(0.7)
        return ModelResponse(
            tool_calls=(ToolCall(id=f"call-{request.step}", name="check_status", arguments={"job": "J-42"}),)
        )

    agent = Agent(
        name="poller",
        model=FunctionModel(always_check, name=_MODEL),
        system_prompt="You wait for batch jobs to finish.",
        tools=[check_status],
        max_iterations=3,
        max_runtime=300,
    )
    return _Scenario("max iterations reached", agent, "Tell me when job J-42 is done.")


async def _run_all(executor: Executor, clock: VirtualClock) -> list[DemoRun]:
    runs: list[DemoRun] = []
    for make in (_research, _stalled, _timeout, _cancelled, _recovered, _reviewer, _looping):
        scenario = make()
        cancellation = None
        if scenario.cancel_after is not None:
            cancellation = Cancellation()
            asyncio.get_running_loop().call_later(scenario.cancel_after, cancellation.cancel, _CANCEL_DETAIL)
        invocation = Invocation(caller_id=DEMO_CALLER, session=scenario.session, cancellation=cancellation)
        result = await executor.run(scenario.agent, invocation, scenario.prompt)
        runs.append(DemoRun(scenario.description, result))
        await clock.sleep(_PAUSE_BETWEEN_RUNS)
    return runs


def record_demo(store: EventStore, clock: VirtualClock, ids: IdGenerator | None = None) -> list[DemoRun]:
    """Run the seven demo agents one after another and record them in ``store``.

    Args:
        store: where the runs are recorded.
        clock: the virtual clock that drives them; start it at the real current time to get
            realistic timestamps.
        ids: run ids; random by default.

    Returns:
        The runs in the order they ran; their statuses cover ok, killed, timeout, cancelled
        and error.
    """
    executor = Executor(store, clock=clock, ids=ids)
    return clock.run(_run_all(executor, clock))
