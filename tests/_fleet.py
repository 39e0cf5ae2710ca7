"""Real worker processes (``executus worker``) over one database, and what must hold afterwards.

A :class:`Fleet` starts, SIGKILLs, SIGSTOPs and stops worker processes running the agents of
``tests/worker_agents.py``; :func:`fleet_violations` reads the database and the side-effect
markers back and lists every broken rule. Shared by the worker tests and ``bench/``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

from sqlalchemy import Engine, select, text

from executus.events import RunFinished, RunResumed, ToolFinished
from executus.storage import RunQuery
from store import SqlStore
from store._engine import create_store_engine
from store._schema import leases, metadata
from store._verify import verify_run

TESTS: Final = Path(__file__).resolve().parent
NON_IDEMPOTENT: Final = ("charge",)


def empty_tables(url: str) -> None:
    """Delete every row of every executus table (a shared server's database, between tests)."""
    engine = create_store_engine(url)
    try:
        with engine.begin() as connection:
            for table in reversed(metadata.sorted_tables):
                connection.execute(text(f"DELETE FROM {table.name}"))
    finally:
        engine.dispose()


def importable_environment() -> dict[str, str]:
    """This process's environment, with ``tests/`` importable (``worker_agents``)."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
    }


@dataclass
class Fleet:
    """Worker processes over ``url``, each logging to its own file under ``directory``."""

    url: str
    directory: Path
    lease: float = 2.0
    concurrency: int = 4
    poll: float = 0.2
    step: float = 0.02
    tool_seconds: float = 0.02
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)
    _started: int = 0

    @property
    def markers(self) -> Path:
        path = self.directory / "markers"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def environment(self) -> dict[str, str]:
        return {
            **importable_environment(),
            "EXECUTUS_TEST_MARKERS": str(self.markers),
            "EXECUTUS_TEST_STEP": str(self.step),
            "EXECUTUS_TEST_TOOL": str(self.tool_seconds),
            "EXECUTUS_DB": self.url,
        }

    def start(self, worker_id: str | None = None) -> str:
        """Start one more worker; returns its id."""
        self._started += 1
        worker_id = worker_id or f"worker-{self._started}"
        log = open(self.directory / f"{worker_id}.log", "wb")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        command = [
            sys.executable,
            "-m",
            "executus.cli",
            "worker",
            "--agents",
            "worker_agents",
            "--concurrency",
            str(self.concurrency),
            "--worker-id",
            worker_id,
            "--lease",
            str(self.lease),
            "--poll",
            str(self.poll),
        ]
        self.processes[worker_id] = subprocess.Popen(
            command, env=self.environment(), stdout=log, stderr=subprocess.STDOUT, cwd=self.directory
        )
        return worker_id

    def log(self, worker_id: str) -> str:
        return (self.directory / f"{worker_id}.log").read_text(encoding="utf-8", errors="replace")

    def kill(self, worker_id: str) -> None:
        """SIGKILL a worker and reap it."""
        process = self.processes.pop(worker_id)
        process.kill()
        process.wait()

    def signal(self, worker_id: str, signum: int) -> None:
        self.processes[worker_id].send_signal(signum)

    def stop(self, timeout: float = 30.0) -> dict[str, int]:
        """SIGTERM every worker left (resuming a stopped one first); their exit codes."""
        codes = {}
        for worker_id, process in self.processes.items():
            # A worker still starting has no SIGTERM handler yet: wait until it says it is up.
            deadline = time.monotonic() + timeout
            while (
                process.poll() is None and "agents" not in self.log(worker_id) and time.monotonic() < deadline
            ):
                time.sleep(0.05)
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.terminate()
        for worker_id, process in self.processes.items():
            try:
                codes[worker_id] = process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[worker_id] = process.wait()
        self.processes.clear()
        for log in self._logs:
            log.close()
        return codes

    def marker_counts(self) -> Counter[tuple[str, str]]:
        """How often each tool ran for each run: (run id, tool) -> executions."""
        counts: Counter[tuple[str, str]] = Counter()
        for path in self.markers.iterdir():
            run_id, tool, _pid, _nonce = path.name.rsplit(".", 3)
            counts[run_id, tool] += 1
        return counts


def busy_owners(engine: Engine) -> set[str]:
    """The workers holding a live lease on a run that is not finished (one query)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(leases.c.owner, leases.c.expires_at).where(
                leases.c.finished.is_(False), leases.c.owner.is_not(None)
            )
        ).all()
    now = datetime.now(UTC)
    return {owner for owner, expires_at in rows if expires_at > now}


def wait_until_finished(
    store: SqlStore, run_ids: Iterable[str], timeout: float, tick: float = 0.2
) -> set[str]:
    """Poll until every run has finished (or ``timeout`` seconds passed); the unfinished ones."""
    waiting = set(run_ids)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the database may be restarting
            finished = {
                summary.run_id
                for summary in store.list_runs(RunQuery(limit=None))
                if summary.status != "running"
            }
            waiting -= finished
        if waiting:
            time.sleep(tick)
    return waiting


def fleet_violations(store: SqlStore, run_ids: Iterable[str], markers: Counter[tuple[str, str]]) -> list[str]:
    """Every broken rule after a fleet ran ``run_ids``: unfinished runs, logs that do not verify,
    events lost or duplicated, a non-idempotent tool run twice, a recovery not explained."""
    found: list[str] = []
    expected_events = 0
    for run_id in sorted(run_ids):
        try:
            events = store.read_run(run_id)
        except Exception as error:
            found.append(f"{run_id}: no log ({error})")
            continue
        expected_events += len(events)
        if not events or not isinstance(events[-1], RunFinished):
            found.append(f"{run_id}: no run_finished (last: {events[-1].kind if events else None})")
        if [event.seq for event in events] != list(range(1, len(events) + 1)):
            found.append(f"{run_id}: seqs not contiguous")
        report = verify_run(store, run_id)
        if not report.ok:
            found.append(f"{run_id}: verify found {[str(finding) for finding in report.findings]}")
        for event in events:
            if isinstance(event, RunResumed) and (
                event.worker_id is None
                or event.previous_owner is None
                or (event.lease_expired_at is None and not event.forced)
            ):
                found.append(f"{run_id}: seq {event.seq} run_resumed does not say who took the run from whom")
        for tool in NON_IDEMPOTENT:
            ran = markers[run_id, tool]
            answered = [
                e for e in events if isinstance(e, ToolFinished) and e.name == tool and e.error is None
            ]
            if ran > 1:
                found.append(f"{run_id}: {tool} (not idempotent) ran {ran} times")
            if answered and ran != 1:
                found.append(f"{run_id}: {tool} answered but ran {ran} times")
    seen: Counter[tuple[str, int]] = Counter()
    position = 0
    wanted = set(run_ids)
    while batch := store.read_after(position, limit=5000):
        for stored in batch:
            if stored.event.run_id in wanted:
                seen[stored.event.run_id, stored.event.seq] += 1
        position = batch[-1].position
    duplicated = [key for key, count in seen.items() if count > 1]
    if duplicated:
        found.append(f"events read twice by position: {duplicated[:5]}")
    if sum(seen.values()) != expected_events:
        found.append(f"tailing by position saw {sum(seen.values())} events, the runs hold {expected_events}")
    return found


def recoveries(store: SqlStore, run_ids: Iterable[str]) -> list[RunResumed]:
    """Every run_resumed of these runs."""
    return [event for run_id in run_ids for event in store.read_run(run_id) if isinstance(event, RunResumed)]
