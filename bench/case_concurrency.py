"""Case 5, concurrency: many runs on one asyncio loop recording to SQLite, then to PostgreSQL.

``concurrent_runs`` runs of the bench agent start together on one event loop (real clock); the
fake model takes ``model_latency`` seconds per reply (an ``asyncio.sleep``, so other runs go on
meanwhile). Appends are synchronous calls on the loop's thread, so every append holds up every
other run for as long as it takes. Reported:

* total events/s: all runs' events over the wall time of the whole batch;
* step overhead: per step of each run, the time from one ``model_requested`` to the next minus
  the model's latency: what recording and waiting for the other runs added (median and max);
* loop stall: the longest a 1 ms ticker on the same loop was late, i.e. the longest stretch the
  loop could not run anything else.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from dataclasses import dataclass

from bench._config import Config
from bench._pg import Postgres
from bench._report import Report, Row
from bench._stores import fresh_sqlite
from bench._workload import bench_agent, run_id_for
from executus import Executor, Invocation
from executus.storage import RunQuery
from store import SqlStore, open_store

__all__ = ["Concurrent", "loop_ticker", "record_concurrently", "run"]

CASE = "5 concurrency"
_TICK = 0.001


@dataclass(frozen=True, slots=True)
class Concurrent:
    """What one batch of concurrent runs measured."""

    events: int
    seconds: float
    step_overheads: tuple[float, ...]
    """Seconds each step took beyond the model's latency, over every step of every run."""
    loop_stall: float

    @property
    def rate(self) -> float:
        """Total events per second."""
        return self.events / self.seconds


async def loop_ticker(worst: list[float]) -> None:
    """Sleep 1 ms at a time, keeping in ``worst[0]`` the longest it woke up late (seconds)."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(_TICK)
        worst[0] = max(worst[0], time.perf_counter() - started - _TICK)


async def _record_all(executor: Executor, config: Config, steps: int) -> tuple[float, float]:
    agent = bench_agent(steps, latency=config.model_latency)
    worst = [0.0]
    ticker = asyncio.create_task(loop_ticker(worst))
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            executor.run(agent, Invocation(run_id=run_id_for("concurrent", index)), "What is the answer?")
            for index in range(config.concurrent_runs)
        )
    )
    seconds = time.perf_counter() - started
    ticker.cancel()
    failed = [result.error for result in results if result.status != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} concurrent runs did not end ok, e.g. {failed[0]}")
    return seconds, worst[0]


def record_concurrently(url: str, config: Config, steps: int) -> Concurrent:
    """Record ``config.concurrent_runs`` runs of ``steps`` steps at once into the store at ``url``."""
    store = SqlStore(url)
    try:
        store.list_runs()
        executor = Executor(store)
        seconds, stall = asyncio.run(_record_all(executor, config, steps))
        overheads: list[float] = []
        events = 0
        for summary in store.list_runs(RunQuery(limit=None)):
            log = store.read_run(summary.run_id)
            events += len(log)
            requested = [event.at for event in log if event.kind == "model_requested"]
            overheads += [
                (later - earlier).total_seconds() - config.model_latency
                for earlier, later in itertools.pairwise(requested)
            ]
    finally:
        store.close()
    return Concurrent(events, seconds, tuple(overheads), stall)


def _rows(report: Report, backend: str, measured: Concurrent, runs: int, steps: int) -> None:
    what = f"{backend}, {runs} runs x {steps} steps"
    report.add(Row(CASE, f"{what}: total", measured.rate, "events/s", note=f"{measured.events:,} events"))
    overheads = sorted(measured.step_overheads)
    report.add(Row(CASE, f"{what}: step overhead, median", statistics.median(overheads) * 1000, "ms"))
    report.add(Row(CASE, f"{what}: step overhead, worst", overheads[-1] * 1000, "ms"))
    report.add(Row(CASE, f"{what}: loop stall, worst", measured.loop_stall * 1000, "ms"))


def run(report: Report, config: Config, postgres: Postgres | None, postgres_reason: str) -> None:
    """Measure case 5 on SQLite and PostgreSQL (it has no target: the figures are reported)."""
    runs = config.concurrent_runs
    _path, url = fresh_sqlite(config.workdir, "concurrency")
    _rows(
        report,
        "SQLite",
        record_concurrently(url, config, config.concurrent_steps),
        runs,
        config.concurrent_steps,
    )
    if postgres is None:
        report.add(Row(CASE, "PostgreSQL", None, "events/s", note=postgres_reason))
        return
    url = postgres.fresh_database("bench_concurrency")
    try:
        open_store(url).close()
        steps = config.concurrent_steps_postgres
        _rows(report, "PostgreSQL", record_concurrently(url, config, steps), runs, steps)
    finally:
        postgres.drop_database("bench_concurrency")
