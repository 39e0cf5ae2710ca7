"""Case 10, append scaling: aggregate events/s of 1, 2 and 4 appender processes on one PostgreSQL.

Each process (``bench._append_child``) appends whole runs of the bench agent through its own
store's writer, with no model latency, every run under a lease of its own with fenced appends
(as a worker's runs are); all processes start together and the figure is every process's events
over the wall time from the first start to the last finish. Before issue #15 every append on
PostgreSQL took one advisory lock, so processes committed one at a time and a second process
added next to nothing; now appends of different runs never wait for each other. On this 2-core
machine the processes and the server share the cores, which bounds the scaling too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from bench._config import Config
from bench._pg import Postgres
from bench._report import Report, Row
from store import open_store

__all__ = ["run"]

CASE = "10 append scaling"
_PROCESSES = (1, 2, 4)
_TARGET = 1.7
_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Rate:
    """What one start of appender processes did."""

    events_per_second: float
    cores: float | None
    """CPU seconds the appenders and the server used per second of wall time: how many of the
    machine's cores they kept busy (None unless the bench started the server, and the
    appenders report their CPU)."""


def aggregate_rate(
    url: str,
    processes: int,
    runs: int,
    steps: int,
    workdir: Path,
    label: str,
    root: Path = _ROOT,
    postgres: Postgres | None = None,
) -> Rate:
    """Events/s of ``processes`` appender processes started together (see the module docstring).

    ``root`` is the source tree the processes import executus from (another checkout's, to
    measure the code before a change the same way); ``postgres``, the server, whose CPU then
    counts in :attr:`Rate.cores`."""
    go = workdir / f"{label}.go"
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench._append_child",
                url,
                f"{label}-{number}",
                str(runs),
                str(steps),
                str(go),
            ],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        for number in range(processes)
    ]
    try:
        ready = [Path(f"{go}.{label}-{number}.ready") for number in range(processes)]
        while not all(path.exists() for path in ready):
            if any(child.poll() not in (None, 0) for child in children):
                raise RuntimeError("an appender process failed before it was ready")
            time.sleep(0.01)
        server_cpu = postgres.cpu_seconds() if postgres is not None else None
        go.touch()
        outputs = [child.communicate(timeout=600)[0] for child in children]
        if server_cpu is not None and postgres is not None:
            server_cpu = (postgres.cpu_seconds() or 0.0) - server_cpu
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    if any(child.returncode != 0 for child in children):
        raise RuntimeError(
            f"an appender process failed: exit codes {[child.returncode for child in children]}"
        )
    figures = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
    seconds = max(figure["finished"] for figure in figures) - min(figure["started"] for figure in figures)
    cores = None
    if server_cpu is not None and all("cpu" in figure for figure in figures):
        cores = (server_cpu + sum(figure["cpu"] for figure in figures)) / seconds
    return Rate(sum(figure["events"] for figure in figures) / seconds, cores)


def _processes(count: int) -> str:
    return f"{count} appender process{'es' if count > 1 else ''}"


def run(report: Report, config: Config, postgres: Postgres | None, postgres_reason: str) -> None:
    """Measure case 10 (PostgreSQL only); target: 2 processes at least 1.7x one."""
    target = f"2 appender processes >= {_TARGET}x the events/s of 1 (PostgreSQL)"
    if postgres is None:
        report.add(Row(CASE, "PostgreSQL", None, "events/s", note=postgres_reason))
        report.target(CASE, target, None, None)
        return
    runs, steps = (10, 5) if config.quick else (50, 40)
    repetitions = 1 if config.quick else 3
    rates: dict[int, float] = {}
    samples: dict[int, list[Rate]] = {}
    for processes in _PROCESSES:
        samples[processes] = []
        for repetition in range(repetitions):
            name = f"bench_scaling_{processes}_{repetition}"
            url = postgres.fresh_database(name)
            try:
                open_store(url).close()
                rate = aggregate_rate(url, processes, runs, steps, config.workdir, name, postgres=postgres)
            finally:
                postgres.drop_database(name)
            samples[processes].append(rate)
        median = sorted(samples[processes], key=attrgetter("events_per_second"))[len(samples[processes]) // 2]
        rates[processes] = median.events_per_second
        busy = "" if median.cores is None else f"; {median.cores:.2f} cores busy (appenders + server)"
        report.add(
            Row(
                CASE,
                f"PostgreSQL, {_processes(processes)} x {runs} runs x {steps} steps",
                rates[processes],
                "events/s",
                ratio=rates[processes] / rates[1],
                reference="1 process",
                note=f"fenced appends, no model latency{busy}",
                samples=tuple(rate.events_per_second for rate in samples[processes]),
            )
        )
    report.target(CASE, target, rates[2] / rates[1], rates[2] / rates[1] >= _TARGET)
