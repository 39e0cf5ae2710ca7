"""Case 5, concurrency: many runs on one asyncio loop recording to SQLite, then to PostgreSQL.

``concurrent_runs`` runs of the bench agent start together on one event loop (real clock); the
fake model takes ``model_latency`` seconds per reply (an ``asyncio.sleep``, so other runs go on
meanwhile). The executor records through the store's writer (``SqlStore.writer()``: a thread
that commits the batches of every run waiting at that moment in one transaction), awaiting each
commit before the side effect it precedes. Reported:

* total events/s: all runs' events over the wall time of the whole batch;
* step overhead: per step of each run, the time from one ``model_requested`` to the next minus
  the model's latency: what recording and waiting for the other runs added (median and max);
* loop stall: the longest a 1 ms ticker on the same loop was late, i.e. the longest stretch the
  loop could not run anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from bench._config import Config
from bench._pg import Postgres
from bench._report import Report, Row
from bench._stores import fresh_sqlite
from bench._workload import bench_agent, run_id_for
from executus import Agent, Executor, Invocation
from store import SqlStore, open_store

__all__ = ["GC_KNOBS", "Concurrent", "Fault", "loop_ticker", "record_concurrently", "run"]

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
    transactions: int
    """Transactions the store committed for them (group commit puts many runs in one)."""
    loop_cpu: float
    """CPU seconds of the event loop's thread: the executor's own work."""
    other_cpu: float
    """CPU seconds of every other thread of the process: mostly the store's writer."""
    longest_collection: float
    """The longest garbage collection, in any thread (it holds the GIL: the loop waits too)."""

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


@dataclass(frozen=True, slots=True)
class Fault:
    """Something done to the database while the runs are active."""

    act: Callable[[], None]
    """Runs on a thread of its own (it may block, e.g. hold a lock and sleep); joined at the end."""
    after: float = 0.2
    """Seconds after the runs start that it begins (all runs are active by then)."""


GC_KNOBS: Final = {
    "gc.freeze()": "gc.collect(); gc.freeze() once started: the start-up heap is never walked again",
    "gc.freeze(), no automatic full collection": (
        "and gc.set_threshold(700, 10, 1_000_000): young collections only (a finished run "
        "leaves no reference cycle, so the runs leak nothing; gc.collect() when idle)"
    ),
}
"""What an operator may turn for a process of many concurrent runs (executus itself never
changes the collector): the knobs the loop-lag case reports figures with, beside the default."""


@contextlib.contextmanager
def _collector(knob: str | None) -> Iterator[None]:
    """The garbage collector as ``knob`` sets it (None: as it is), restored afterwards."""
    if knob is None:
        yield
        return
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    if knob != "gc.freeze()":
        gc.set_threshold(threshold[0], threshold[1], 1_000_000)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


class _CostMeter:
    """CPU time of the calling thread and of the process, and the garbage collector's pauses,
    from entering to leaving (``gc.callbacks``: a collection runs in whichever thread
    allocated, holding the GIL)."""

    def __init__(self) -> None:
        self.collections: list[float] = []
        self.thread_cpu = 0.0
        self.process_cpu = 0.0
        self._collecting_since = 0.0

    def _on_collection(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._collecting_since = time.perf_counter()
        else:
            self.collections.append(time.perf_counter() - self._collecting_since)

    def __enter__(self) -> _CostMeter:
        gc.callbacks.append(self._on_collection)
        self.thread_cpu, self.process_cpu = -time.thread_time(), -time.process_time()
        return self

    def __exit__(self, *_exception: object) -> None:
        self.thread_cpu += time.thread_time()
        self.process_cpu += time.process_time()
        gc.callbacks.remove(self._on_collection)


async def _record_all(
    executor: Executor, agent: Agent, run_ids: Sequence[str], fault: Fault | None
) -> tuple[float, float]:
    worst = [0.0]
    ticker = asyncio.create_task(loop_ticker(worst))
    faulting: threading.Thread | None = None
    started = time.perf_counter()
    runs = [
        asyncio.create_task(executor.run(agent, Invocation(run_id=run_id), "What is the answer?"))
        for run_id in run_ids
    ]
    if fault is not None:
        await asyncio.sleep(fault.after)
        faulting = threading.Thread(target=fault.act, name="bench fault")  # its sleep is off the loop
        faulting.start()
    results = await asyncio.gather(*runs)
    seconds = time.perf_counter() - started
    ticker.cancel()
    if faulting is not None:
        faulting.join()
    failed = [result.error for result in results if result.status != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} concurrent runs did not end ok, e.g. {failed[0]}")
    return seconds, worst[0]


def record_concurrently(
    url: str,
    config: Config,
    steps: int,
    *,
    runs: int | None = None,
    label: str = "concurrent",
    fault: Fault | None = None,
    gc_knob: str | None = None,
) -> Concurrent:
    """Record ``runs`` runs of ``steps`` steps at once through a real :class:`Executor`.

    The executor (real clock) records through the store's writer, as an application's would.

    Args:
        url: the database.
        config: the model's latency; ``runs`` defaults to ``config.concurrent_runs``.
        steps: model calls per run.
        runs: how many runs at once.
        label: makes the run ids, different for each batch recorded into one database.
        fault: done to the database while the runs are active.
        gc_knob: one of :data:`GC_KNOBS`, turned for the runs and restored after them.
    """
    run_ids = [run_id_for(label, index) for index in range(config.concurrent_runs if runs is None else runs)]
    store = SqlStore(url)
    try:
        store.list_runs()
        before = store.write_transactions
        agent = bench_agent(steps, latency=config.model_latency)
        with _collector(gc_knob), _CostMeter() as costs:
            seconds, stall = asyncio.run(_record_all(Executor(store), agent, run_ids, fault))
        transactions = store.write_transactions - before
        overheads: list[float] = []
        events = 0
        for run_id in run_ids:
            log = store.read_run(run_id)
            events += len(log)
            requested = [event.at for event in log if event.kind == "model_requested"]
            overheads += [
                (later - earlier).total_seconds() - config.model_latency
                for earlier, later in itertools.pairwise(requested)
            ]
    finally:
        store.close()
    return Concurrent(
        events,
        seconds,
        tuple(overheads),
        stall,
        transactions,
        loop_cpu=costs.thread_cpu,
        other_cpu=costs.process_cpu - costs.thread_cpu,
        longest_collection=max(costs.collections, default=0.0),
    )


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
