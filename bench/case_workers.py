"""Case 11, workers: many processes on one PostgreSQL, and recovery after a worker dies.

* Wall time: 1 process running 50 runs at once, then 4 processes running 50 runs each at once,
  on one PostgreSQL; the fake model takes 50 ms per step, so the runs mostly wait on it, as
  agents do. Every run is owned (leased, every append fenced by its epoch, a heartbeat). With no
  global append lock, 4x the work should take about as long (target: at most 1.3x).
* Recovery latency: a worker process drives a run and is SIGKILLed; another worker, idle,
  claims the run once its lease expires and resumes it. Measured from the kill to the
  ``run_resumed`` the second worker recorded (target: under the lease period plus 1 s).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench._config import Config
from bench._pg import Postgres
from bench._report import Report, Row
from executus import RunNotFoundError, enqueue
from executus.events import Event, RunResumed
from store import SqlStore, open_store

__all__ = ["run"]

CASE = "11 workers"
STEP_LATENCY = 0.05
RUNS_PER_PROCESS = 50
LEASE = 3.0
POLL = 0.25
_ROOT = Path(__file__).resolve().parent.parent


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench._workers_child", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=_ROOT,
    )


def _wall_time(url: str, processes: int, steps: int, label: str) -> tuple[float, float]:
    """Seconds from "go" until every process has finished its runs, and the CPU seconds the
    processes spent (not the database's)."""
    children = [
        _child("runs", url, f"{label}-{index}", str(RUNS_PER_PROCESS), str(steps), str(STEP_LATENCY))
        for index in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("a bench process did not start")
        started = time.perf_counter()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        cpu = 0.0
        for child in children:
            assert child.stdout is not None
            cpu += json.loads(child.stdout.readline())["cpu"]
        return time.perf_counter() - started, cpu
    finally:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            child.wait()


def _recovery(url: str) -> float:
    """Seconds from SIGKILLing the worker that drives a run to another worker's run_resumed."""
    with SqlStore(url) as store:
        first = _child("worker", url, str(LEASE), str(POLL), "400", str(STEP_LATENCY))
        assert first.stdout is not None
        first.stdout.readline()
        run_id = enqueue(store, "bench", "What is the answer?")
        while len(_events(store, run_id)) < 8:
            time.sleep(0.05)
        second = _child("worker", url, str(LEASE), str(POLL), "400", str(STEP_LATENCY))
        assert second.stdout is not None
        second.stdout.readline()
        killed_at = datetime.now(UTC)
        first.kill()
        first.wait()
        try:
            deadline = time.monotonic() + LEASE + 30
            while time.monotonic() < deadline:
                resumed = [event for event in store.read_run(run_id) if isinstance(event, RunResumed)]
                if resumed:
                    return (resumed[0].at - killed_at).total_seconds()
                time.sleep(0.05)
            raise RuntimeError("no worker recovered the run")
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)


def _events(store: SqlStore, run_id: str) -> list[Event]:
    try:
        return store.read_run(run_id)
    except RunNotFoundError:
        return []


def run(report: Report, config: Config, postgres: Postgres | None, postgres_reason: str) -> None:
    """Measure case 10 on PostgreSQL."""
    if postgres is None:
        report.add(Row(CASE, "PostgreSQL", None, "s", note=postgres_reason))
        report.target(CASE, "4 processes x 50 runs in <= 1.3x the time of 1 x 50", None, None)
        report.target(CASE, f"recovery after a worker dies < lease ({LEASE:g} s) + 1 s", None, None)
        return
    steps = 4 if config.quick else 10
    url = postgres.fresh_database("bench_workers")
    try:
        open_store(url).close()
        attempts = range(1 if config.quick else 3)
        one, one_cpu = min(_wall_time(url, 1, steps, f"one{attempt}") for attempt in attempts)
        four, four_cpu = min(_wall_time(url, 4, steps, f"four{attempt}") for attempt in attempts)
        what = f"{RUNS_PER_PROCESS} runs x {steps} steps, model {STEP_LATENCY * 1000:g} ms a step"
        report.add(Row(CASE, f"1 process x {what}: wall time", one, "s", note=f"CPU {one_cpu:.2f} s"))
        report.add(
            Row(
                CASE,
                f"4 processes x {what}: wall time",
                four,
                "s",
                ratio=four / one,
                reference="1 process",
                note=f"CPU {four_cpu:.2f} s in all",
            )
        )
        report.target(
            CASE, "4 processes x 50 runs in <= 1.3x the time of 1 x 50", four / one, four / one <= 1.3
        )
        latency = _recovery(url)
        report.add(Row(CASE, f"recovery after a worker dies (lease {LEASE:g} s)", latency, "s"))
        report.target(
            CASE, f"recovery after a worker dies < lease ({LEASE:g} s) + 1 s", latency, latency < LEASE + 1
        )
    finally:
        postgres.drop_database("bench_workers")
