"""The adapters an executor makes from model names (``openai:...``) are closed when it shuts
down, leaves its ``async with`` or ends a ``run_sync``: a process run with
``-W error::ResourceWarning`` reports no unclosed socket or transport."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _loopback import Scripted, json_reply, openai_completion, serving_in_thread

TESTS = Path(__file__).parent

SCRIPT = """
import asyncio, gc, sys
from executus import Agent, Executor, ModelRegistry, SystemClock

agent = Agent("calc", "openai:gpt-4.1-mini")

async def with_block():
    async with Executor(clock=SystemClock()) as executor:
        for _ in range(2):
            print((await executor.run(agent, None, "hi")).output)

async def shut_down():
    executor = Executor(clock=SystemClock())
    print((await executor.run(agent, None, "hi")).output)
    await executor.shutdown()
    print((await executor.run(agent, None, "hi")).output)  # a new adapter after the old one closed
    await executor.aclose()

def run_sync():
    executor = Executor(clock=SystemClock())
    for _ in range(2):  # each call has its own event loop
        print(executor.run_sync(agent, None, "hi").output)

async def unclosed():
    print((await Executor(clock=SystemClock()).run(agent, None, "hi")).output)

async def own_registry():
    registry = ModelRegistry()
    async with Executor(models=registry, clock=SystemClock()) as executor:
        print((await executor.run(agent, None, "hi")).output)
    print((await executor.run(agent, None, "hi")).output)  # the caller's registry: still open
    await registry.aclose()

how = sys.argv[1]
if how == "run_sync":
    run_sync()
else:
    asyncio.run(globals()[how]())
gc.collect()
"""


def _run(how: str, tmp_path: Path, replies: int) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "closing.py"
    script.write_text(textwrap.dedent(SCRIPT), encoding="utf-8")
    served = [json_reply(openai_completion(Scripted(text="It is 3."))) for _ in range(replies)]
    with serving_in_thread(*served) as server:
        environment = {
            **os.environ,
            "OPENAI_API_KEY": "local",
            "OPENAI_BASE_URL": f"{server.url}/v1",
            "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]),
        }
        return subprocess.run(
            [sys.executable, "-W", "error::ResourceWarning", str(script), how],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.mark.parametrize(
    ("how", "runs"), [("with_block", 2), ("shut_down", 2), ("run_sync", 2), ("own_registry", 2)]
)
def test_resolved_adapters_are_closed_with_the_executor(how: str, runs: int, tmp_path: Path) -> None:
    finished = _run(how, tmp_path, runs)

    assert finished.returncode == 0, finished.stderr
    assert finished.stdout == "It is 3.\n" * runs
    assert "ResourceWarning" not in finished.stderr, finished.stderr
    assert finished.stderr == ""


def test_an_executor_left_open_leaks_its_connection(tmp_path: Path) -> None:
    # What the test above would see if nothing closed the adapters (so it can fail).
    finished = _run("unclosed", tmp_path, 1)

    assert finished.stdout == "It is 3.\n"
    assert "ResourceWarning: unclosed" in finished.stderr
