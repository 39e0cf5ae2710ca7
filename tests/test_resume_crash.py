"""Durability across real processes: SIGKILL mid-tool and resume; two processes writing at once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_children import REPORT_INPUT, report_writer
from store_events import fold

from executus import Executor, Invocation, SystemClock
from executus.events import RunResumed, ToolFinished, ToolStarted, rebuild
from executus.storage import GENESIS_HASH, RunQuery, chain_hash
from store import SqlStore

CHILDREN = Path(__file__).resolve().parent / "store_children.py"


def _assert_chain_intact(opened: SqlStore, run_id: str) -> None:
    head = GENESIS_HASH
    for stored in opened.records(run_id):
        assert stored.prev_hash == head
        head = chain_hash(head, stored.payload_json)
        assert stored.hash == head


def _wait_for(path: Path, child: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if child.poll() is not None:
            pytest.fail(f"the child exited with {child.returncode} before its tool ran: {log.read_text()}")
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            pytest.fail(f"the child's tool did not start within {seconds}s: {log.read_text()}")
        time.sleep(0.02)


def test_a_run_killed_mid_tool_resumes_to_the_same_output(sql_url: str, tmp_path: Path) -> None:
    marker, log = tmp_path / "report.txt", tmp_path / "child.log"
    with log.open("wb") as output:
        child = subprocess.Popen(
            [sys.executable, str(CHILDREN), "victim", sql_url, "run-crash", str(marker)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(marker, child, log)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with SqlStore(sql_url) as opened:
        # The log says exactly what was in flight: the tool, committed before it started.
        _assert_chain_intact(opened, "run-crash")
        events = opened.read_run("run-crash")
        kinds = [event.kind for event in events]
        assert kinds == ["run_started", "model_requested", "model_responded", "tool_started"]
        state = rebuild(events)
        assert (state.status, state.finished) == ("running", False)
        assert list(state.pending_tools) == ["call-1"]
        summary = opened.get_run("run-crash")
        assert summary == fold(events)
        assert summary.status == "running"
        assert summary.finished_at is None
        assert [run.run_id for run in opened.list_runs(RunQuery(status="running"))] == ["run-crash"]

        executor = Executor(opened, clock=SystemClock())
        agent = report_writer(tmp_path / "resumed.txt", block=False)
        # The killed process's lease is still live: the test knows it is dead, so it forces.
        resumed = asyncio.run(executor.resume("run-crash", agent, force=True))
        untouched = asyncio.run(
            executor.run(report_writer(tmp_path / "clean.txt", block=False), Invocation(), REPORT_INPUT)
        )

        assert (resumed.status, resumed.output) == ("ok", "Report done (wrote 6 characters).")
        assert (untouched.status, untouched.output) == (resumed.status, resumed.output)
        after = opened.read_run("run-crash")[len(events) :]
        assert [event.kind for event in after] == [
            "run_resumed",
            "tool_finished",  # the interrupted call, recorded as failed and not re-run...
            "model_requested",
            "model_responded",
            "tool_started",  # ...so the model called it again
            "tool_finished",
            "model_requested",
            "model_responded",
            "run_finished",
        ]
        resumed_event, interrupted, again = after[0], after[1], after[4]
        assert isinstance(resumed_event, RunResumed)
        assert [(item.kind, item.call_id) for item in resumed_event.interrupted] == [("tool", "call-1")]
        assert isinstance(interrupted, ToolFinished)
        assert interrupted.error is not None
        assert (interrupted.call_id, interrupted.error.type) == ("call-1", "Interrupted")
        assert isinstance(again, ToolStarted)
        assert again.call_id == "call-2"
        _assert_chain_intact(opened, "run-crash")
        everything = opened.read_run("run-crash")
        assert rebuild(everything).status == "ok"
        assert opened.get_run("run-crash") == fold(everything)
        assert opened.get_run("run-crash").status == "ok"


def test_two_processes_record_different_runs_into_one_database_at_once(sql_url: str, tmp_path: Path) -> None:
    go, count = tmp_path / "go", 12
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    children = []
    for prefix, log in zip(("a-", "b-"), logs, strict=True):
        with log.open("wb") as output:
            children.append(
                subprocess.Popen(
                    [sys.executable, str(CHILDREN), "record", sql_url, prefix, str(count), str(go)],
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            )
    go.touch()  # both children are past their imports and start writing together
    for child, log in zip(children, logs, strict=True):
        assert child.wait(timeout=120) == 0, log.read_text()

    with SqlStore(sql_url) as opened:
        summaries = opened.list_runs(RunQuery(limit=None))
        assert sorted(summary.run_id for summary in summaries) == sorted(
            f"{prefix}{number:04d}" for prefix in ("a-", "b-") for number in range(1, count + 1)
        )
        for summary in summaries:
            assert summary.status == "ok"
            assert summary == fold(opened.read_run(summary.run_id))
            _assert_chain_intact(opened, summary.run_id)
        # Every event once; PostgreSQL tails in (transaction, position) order, so positions
        # increase within each run (and, on SQLite, overall).
        tailed = opened.read_after(0, limit=10_000)
        assert len({stored.position for stored in tailed}) == len(tailed)
        assert len(tailed) == sum(summary.last_seq for summary in summaries)
        for summary in summaries:
            positions = [stored.position for stored in tailed if stored.event.run_id == summary.run_id]
            assert positions == sorted(positions)
