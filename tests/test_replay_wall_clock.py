"""Runs recorded together on the real clock, into a real SQLite file, replay identically.

On a wall clock the gaps between events carry noise no replay can know (thread wake-ups,
other runs' commits blocking the shared loop); the replay must still match the recording.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from executus import (
    Agent,
    Executor,
    IdleCritic,
    ModelRequest,
    ModelResponse,
    Result,
    SystemClock,
    ToolCall,
    Usage,
    tool,
)
from executus.events import Event
from executus.testing import FunctionModel
from replay import Replayer
from store import SqlStore, open_store


class _LoopBlockingStore(SqlStore):
    """A store whose commits block the event loop for 12 ms, as a slow disk would."""

    def append(  # type: ignore[override]
        self, run_id: str, events: list[Event], expected_seq: int, *, epoch: int | None = None
    ) -> None:
        time.sleep(0.012)
        super().append(run_id, events, expected_seq, epoch=epoch)


@tool
def lookup(n: int) -> str:
    """A blocking lookup (runs in a worker thread on the real clock).

    Args:
        n: which record.
    """
    time.sleep(0.003)
    return f"record {n}"


@tool
async def fetch(n: int) -> str:
    """An async fetch.

    Args:
        n: which page.
    """
    await asyncio.sleep(0.002)
    return f"page {n}"


def _reply(request: ModelRequest) -> ModelResponse:
    usage = Usage(input_tokens=3, output_tokens=1)
    if request.step < 4:
        calls = (
            ToolCall(id=f"a{request.step}", name="lookup", arguments={"n": request.step}),
            ToolCall(id=f"b{request.step}", name="fetch", arguments={"n": request.step}),
        )
        return ModelResponse(tool_calls=calls, usage=usage)
    return ModelResponse(text="done", usage=usage)


def test_runs_recorded_concurrently_on_the_wall_clock_replay_identically(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wall.db'}"
    open_store(url).close()  # creates and migrates the file
    store = _LoopBlockingStore(url)
    try:
        executor = Executor(store, clock=SystemClock())
        agent = Agent(
            "busy",
            FunctionModel(_reply),
            tools=[lookup, fetch],
            max_runtime=60,
            critic=IdleCritic(idle_after=5),
        )

        async def record_together() -> list[Result]:
            return await asyncio.gather(*(executor.run(agent, None, "go") for _ in range(8)))

        results = asyncio.run(record_together())
        assert {result.status for result in results} == {"ok"}
        replayer = Replayer(blobs=store)
        reports = [replayer.replay_run(store.read_run(result.run_id)) for result in results]
        assert [report.report() for report in reports if not report.identical] == []
    finally:
        store.close()
