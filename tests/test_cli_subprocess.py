"""The installed `executus` console script, run as a real process: a newcomer's first commands,
and `show --follow` tailing a run that another process is recording."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import store as sql_store
from executus import RunNotFoundError

EXECUTUS = Path(sys.executable).parent / "executus"
pytestmark = pytest.mark.skipif(not EXECUTUS.exists(), reason="the executus console script is not installed")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value for key, value in os.environ.items() if key not in ("EXECUTUS_DB", "FORCE_COLOR")
    }
    return subprocess.run(
        [str(EXECUTUS), *args], capture_output=True, text=True, timeout=60, env=environment, check=False
    )


def test_a_newcomers_first_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    demo = run("--db", url, "demo")
    assert demo.returncode == 0, demo.stderr
    why_line = next(line for line in demo.stdout.splitlines() if " why " in line)
    killed = why_line.split()[4]

    runs = run("--db", url, "runs")
    assert runs.returncode == 0, runs.stderr
    assert len(runs.stdout.splitlines()) == 8
    assert "\x1b[" not in runs.stdout, "piped output is plain text"

    show = run("show", killed, "--db", url)
    assert show.returncode == 0, show.stderr
    assert "⋯ idle" in show.stdout

    why = run("why", killed, "--db", url)
    assert why.returncode == 0, why.stderr
    assert "was killed after 6m30s" in why.stdout, why.stdout
    assert "never finished" in why.stdout
    assert "[seq 4, 8]" in why.stdout

    unknown = run("--db", url, "show", killed[:-1] + "x")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith(f"error: no run '{killed[:-1]}x' (did you mean {killed}")
    assert unknown.stderr.count("\n") == 1
    assert unknown.stdout == ""


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    import store
    from executus import Agent, Executor, Invocation, tool
    from executus.testing import ScriptedModel, call

    release = Path(sys.argv[2])

    @tool
    async def wait_for_release() -> str:
        '''Wait until the test lets the run finish.'''
        for _ in range(400):
            if release.exists():
                return "released"
            await asyncio.sleep(0.05)
        return "gave up"

    agent = Agent("live", ScriptedModel([call("wait_for_release"), "done"]), tools=[wait_for_release])
    with store.open_store(sys.argv[1]) as opened:
        Executor(opened).run_sync(agent, Invocation(run_id="live-run"), "go")
    """
)


def wait_for_run(url: str, run_id: str) -> None:
    for _ in range(200):
        try:
            with sql_store.open_store(url) as opened:
                opened.get_run(run_id)
                return
        except RunNotFoundError:
            time.sleep(0.05)
    raise AssertionError(f"run {run_id} never appeared")


def test_show_follow_tails_a_run_recorded_by_another_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    sql_store.upgrade(url)
    release = tmp_path / "release"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url, str(release)])
    try:
        wait_for_run(url, "live-run")
        follower = subprocess.Popen(
            [str(EXECUTUS), "--db", url, "show", "live-run", "--follow", "--interval", "0.1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        assert follower.poll() is None, "the follower waits while the run is still going"
        release.touch()
        stdout, stderr = follower.communicate(timeout=30)
        assert writer.wait(timeout=30) == 0
    finally:
        writer.kill()
    assert follower.returncode == 0, stderr
    kinds = [line.split()[2] for line in stdout.splitlines()[3:]]
    assert kinds[0] == "run_started"
    assert kinds[-1] == "run_finished"
    assert "tool_finished" in kinds
