"""Recorded runs of every status, used by the cassette and replay tests (and the golden files).

``record(name)`` runs one scenario on a fresh virtual clock and returns its store and run id.
Running this module as a script rewrites ``tests/golden/*.jsonl``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from executus import (
    Agent,
    Artifact,
    Cancellation,
    Executor,
    IdleCritic,
    Image,
    Invocation,
    Ladder,
    PostRun,
    SequentialIds,
    Session,
    SessionContext,
    ToolContext,
    VirtualClock,
    extend,
    kill,
    nudge,
    tool,
)
from executus.storage import MemoryStore
from executus.testing import ScriptedModel, call, hang

GOLDEN = Path(__file__).parent / "golden"
START = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


@tool
def search(query: str) -> str:
    """Search the library catalogue.

    Args:
        query: words to look for.
    """
    return f"3 books about {query}"


@tool
async def slow_lookup(isbn: str, seconds: float = 2.0) -> dict[str, object]:
    """Look a book up by ISBN (slowly).

    Args:
        isbn: the book's ISBN.
        seconds: how long the lookup takes.
    """
    await asyncio.sleep(seconds)
    return {"isbn": isbn, "title": "Otters", "pages": 212}


@tool
def screenshot(page: str, context: ToolContext) -> str:
    """Take a screenshot of a catalogue page and show it to the model.

    Args:
        page: the page to capture.
    """
    context.attach_images(f"screenshot of {page}", Image(PNG))
    return "attached"


@tool
def broken(reason: str) -> str:
    """A tool that always fails.

    Args:
        reason: why it fails.
    """
    raise RuntimeError(reason)


class Notes(Session):
    """A session with a post-run hook that writes an artifact."""

    async def post_run(self, transcript, output, error):  # type: ignore[no-untyped-def]
        return PostRun(
            artifacts=[Artifact("notes.txt", "text/plain", f"{len(transcript)} messages".encode())],
            metadata={"messages": len(transcript)},
        )


def notes_session(context: SessionContext) -> Session:
    return Notes()


TOOLS = [search, slow_lookup, screenshot, broken]
CRITIC_LADDER = [nudge("Still there? Say what you are waiting for."), extend(30), kill("stuck after a nudge")]


def librarian(model: ScriptedModel, **changes: object) -> Agent:
    """The agent every scenario runs (with its own script)."""
    settings: dict[str, object] = {
        "name": "librarian",
        "model": model,
        "system_prompt": "You answer questions about the catalogue.",
        "tools": TOOLS,
        "max_iterations": 6,
        "max_runtime": 300.0,
        "critic": IdleCritic(idle_after=60, policy=Ladder(CRITIC_LADDER)),
    }
    settings.update(changes)
    return Agent(**settings)  # type: ignore[arg-type]


def _run(
    agent: Agent, invocation: Invocation, text: str, *, cancel_after: float | None = None
) -> tuple[MemoryStore, str]:
    store = MemoryStore()
    clock = VirtualClock(START)
    executor = Executor(store, clock=clock, ids=SequentialIds("run-"))

    async def main() -> str:
        if cancel_after is not None and invocation.cancellation is not None:
            handle = invocation.cancellation
            asyncio.get_running_loop().call_later(cancel_after, handle.cancel, "the user pressed stop")
        result = await executor.run(agent, invocation, text)
        return result.run_id

    return store, clock.run(main())


def ok() -> tuple[MemoryStore, str]:
    """Tools (one parallel pair, one failing), a steer image, a post-run artifact: status ok."""
    model = ScriptedModel(
        [
            [call("search", query="otters"), call("slow_lookup", isbn="978-0", seconds=1.5)],
            call("screenshot", page="otters"),
            hang(3),
            call("broken", reason="disk full"),
            "There are 3 books about otters.",
        ]
    )
    return _run(librarian(model), Invocation(caller_id="alice", session=notes_session), "Any otter books?")


def error() -> tuple[MemoryStore, str]:
    """The model call raises: status error."""
    model = ScriptedModel([call("search", query="otters"), hang(1), ConnectionError("model API is down")])
    return _run(librarian(model), Invocation(caller_id="bob"), "Any otter books?")


def max_iterations() -> tuple[MemoryStore, str]:
    """The model never answers: status error (MaxIterationsExceeded)."""
    model = ScriptedModel([call("search", query=f"otters {n}") for n in range(3)])
    return _run(librarian(model, max_iterations=2), Invocation(caller_id="bob"), "Any otter books?")


def timeout() -> tuple[MemoryStore, str]:
    """A slow tool runs past max_runtime: status timeout."""
    model = ScriptedModel([call("slow_lookup", isbn="978-1", seconds=50)])
    return _run(librarian(model, max_runtime=20.0, critic=None), Invocation(), "Look up 978-1")


def cancelled() -> tuple[MemoryStore, str]:
    """The caller cancels while the model is thinking: status cancelled."""
    model = ScriptedModel([call("search", query="otters"), hang(40), "too late"])
    invocation = Invocation(caller_id="carol", cancellation=Cancellation())
    return _run(librarian(model), invocation, "Any otter books?", cancel_after=25.5)


def killed() -> tuple[MemoryStore, str]:
    """The model hangs: the critic nudges, extends, then kills: status killed."""
    model = ScriptedModel([call("search", query="otters"), hang(10_000), "never"])
    return _run(librarian(model), Invocation(caller_id="dave"), "Any otter books?")


SCENARIOS: dict[str, Callable[[], tuple[MemoryStore, str]]] = {
    "ok": ok,
    "error": error,
    "max_iterations": max_iterations,
    "timeout": timeout,
    "cancelled": cancelled,
    "killed": killed,
}
STATUS = {
    "ok": "ok",
    "error": "error",
    "max_iterations": "error",
    "timeout": "timeout",
    "cancelled": "cancelled",
    "killed": "killed",
}


def record(name: str) -> tuple[MemoryStore, str]:
    """Record scenario ``name``; returns the store and the run id."""
    return SCENARIOS[name]()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_ends_with_its_status(name: str) -> None:
    store, run_id = record(name)
    assert store.get_run(run_id).status == STATUS[name]


def _write_golden() -> None:  # pragma: no cover - a maintenance script
    from replay import write_cassette

    GOLDEN.mkdir(exist_ok=True)
    for name in SCENARIOS:
        store, run_id = record(name)
        with (GOLDEN / f"{name}.jsonl").open("w", encoding="utf-8", newline="") as stream:
            write_cassette(store, run_id, stream)
        print(f"wrote {GOLDEN / name}.jsonl", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    _write_golden()
