"""Child processes for the store's multi-process tests, and the agent they share with the parent.

Run as a script: ``python tests/store_children.py victim URL RUN_ID MARKER`` starts a run whose
tool writes ``MARKER`` and then blocks until the parent kills the process;
``python tests/store_children.py record URL PREFIX COUNT GO_FILE`` waits for ``GO_FILE`` and
then records ``COUNT`` runs concurrently (so that two such children write at the same time);
``python tests/store_children.py append URL PREFIX RUNS STEPS GO_FILE`` waits for ``GO_FILE`` and
then appends ``RUNS`` whole runs of ``STEPS`` steps concurrently through the store's writer, two
events per batch, each run fenced by a lease of its own.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from store_events import run_events

from executus import (
    Agent,
    Executor,
    Invocation,
    ModelRequest,
    ModelResponse,
    SequentialIds,
    SystemClock,
    ToolCall,
    ToolMessage,
    VirtualClock,
    tool,
)
from executus.storage import LeaseWriter
from executus.testing import FunctionModel, ScriptedModel, call
from store import SqlStore

REPORT_INPUT = "Write the otter report."


def report_writer(marker: Path, *, block: bool) -> Agent:
    """An agent that writes a report with one tool call, and calls again if the call failed.

    Args:
        marker: the file the tool writes (the parent waits for it to know the tool is running).
        block: make the tool hang after writing, so it is in flight when the process is killed.
    """

    @tool
    def write_report(title: str) -> str:
        """Write the report to disk.

        Args:
            title: the report's title.
        """
        marker.write_text(title)
        if block:
            time.sleep(600)  # in flight until the parent SIGKILLs this process
        return f"wrote {len(title)} characters"

    def decide(request: ModelRequest) -> ModelResponse | str:
        results = [message for message in request.messages if isinstance(message, ToolMessage)]
        if not results or results[-1].is_error:
            number = len(results) + 1
            return ModelResponse(
                tool_calls=(
                    ToolCall(id=f"call-{number}", name="write_report", arguments={"title": "Otters"}),
                )
            )
        return f"Report done ({results[-1].content})."

    return Agent(name="reporter", model=FunctionModel(decide, name="planner"), tools=[write_report])


def _victim(url: str, run_id: str, marker: str) -> None:
    with SqlStore(url) as opened:
        executor = Executor(opened, clock=SystemClock())
        agent = report_writer(Path(marker), block=True)
        asyncio.run(executor.run(agent, Invocation(run_id=run_id, caller_id="crash-test"), REPORT_INPUT))


@tool
def lookup(query: str) -> str:
    """Look something up.

    Args:
        query: what to look up.
    """
    return f"found {query}"


def _wait_for(go_file: str) -> None:
    give_up = time.monotonic() + 60  # never outlive a parent that failed before saying go
    while not Path(go_file).exists():
        if time.monotonic() > give_up:
            raise SystemExit("no go file after 60s")
        time.sleep(0.005)


def _append(url: str, prefix: str, runs: int, steps: int, go_file: str) -> None:
    with SqlStore(url) as opened:
        writer = opened.writer()
        assert isinstance(writer, LeaseWriter)
        _wait_for(go_file)

        async def one(run_id: str) -> None:
            lease = await writer.acquire(run_id, prefix, 600)
            events = run_events(run_id, steps=steps)
            for start in range(0, len(events), 2):
                await writer.append(run_id, events[start : start + 2], start, epoch=lease.epoch)
            await writer.release(lease)

        async def all_runs() -> None:
            await asyncio.gather(*(one(f"{prefix}-{number}") for number in range(runs)))

        asyncio.run(all_runs())


def _record(url: str, prefix: str, count: int, go_file: str) -> None:
    with SqlStore(url) as opened:
        clock = VirtualClock()
        executor = Executor(opened, clock=clock, ids=SequentialIds(prefix))
        _wait_for(go_file)

        async def all_runs() -> None:
            runs = []
            for number in range(count):
                model = ScriptedModel([call("lookup", query=f"{prefix}{number}"), f"done {number}"])
                agent = Agent(name=f"agent-{prefix}", model=model, tools=[lookup])
                runs.append(executor.run(agent, None, f"task {number}"))
            results = await asyncio.gather(*runs)
            assert all(result.status == "ok" for result in results), results

        clock.run(all_runs())


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "victim":
        _victim(*arguments)
    elif command == "record":
        _record(arguments[0], arguments[1], int(arguments[2]), arguments[3])
    elif command == "append":
        _append(arguments[0], arguments[1], int(arguments[2]), int(arguments[3]), arguments[4])
    else:
        raise SystemExit(f"unknown command {command!r}")
