"""Case 7, loop lag: 100 runs of the real executor at once while the database misbehaves.

``lag_runs`` concurrent :meth:`executus.Executor.run` calls of the bench agent (real clock, a
fake model that takes ``model_latency`` seconds a reply, one tool call a step) record through
the store's writer (:meth:`store.SqlStore.writer`), as an application's would: the same code as
case 5, with more steps and a fault. Scenarios:

* SQLite while another connection holds its write lock for ``lag_fault`` seconds;
* PostgreSQL while the server is frozen (SIGSTOP of every server process) for ``lag_fault``
  seconds, or, on a server that is not the bench's own, while another session holds the append
  lock that long;
* PostgreSQL with no fault; and again with each garbage-collector knob an operator may turn
  (:data:`bench.case_concurrency.GC_KNOBS`), reported beside the default, which the targets judge.

Reported: the worst lag of a 1 ms ticker on the same loop (how long the loop could not run
anything else), the median step overhead (the time between two ``model_requested`` events of a
run minus the model's latency) and the total events/s, against the targets of issue 11, whose
"today" figures are the executor that appended synchronously on the loop (bench/RESULTS.md,
2026-11-25).
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from collections.abc import Callable

import psycopg

from bench._config import Config
from bench._pg import Postgres, conninfo
from bench._report import Report, Row
from bench._stores import fresh_sqlite
from bench.case_concurrency import GC_KNOBS, Concurrent, Fault, loop_ticker, record_concurrently
from store import open_store

__all__ = ["run"]

CASE = "7 loop lag"
_TODAY_WORST_LAG_MS = 2045.0
_TODAY_PG_EVENTS_PER_SECOND = 2229.0
"""bench/RESULTS.md, 2026-11-25: case 5, PostgreSQL, 100 runs, the executor that appended on the
loop (case 5 of this run records through the writer, so it is no longer "today's")."""


def _record(
    url: str, config: Config, label: str, fault: Callable[[], None] | None = None, gc_knob: str | None = None
) -> Concurrent:
    return record_concurrently(
        url,
        config,
        config.lag_steps,
        runs=config.lag_runs,
        label=label,
        fault=None if fault is None else Fault(fault),
        gc_knob=gc_knob,
    )


def _sqlite_lock_held(path: str, seconds: float) -> Callable[[], None]:
    def hold() -> None:
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            time.sleep(seconds)
            blocker.execute("COMMIT")
        finally:
            blocker.close()

    return hold


def _postgres_stalled(postgres: Postgres, url: str, seconds: float) -> tuple[Callable[[], None], str]:
    server = postgres.throwaway
    if server is not None:

        def freeze() -> None:
            server.pause()
            try:
                time.sleep(seconds)
            finally:
                server.resume()

        return freeze, "server frozen (SIGSTOP)"

    def hold_lock() -> None:
        with psycopg.connect(conninfo(url)) as admin:  # the lock lasts until the block commits
            admin.execute("LOCK TABLE events IN EXCLUSIVE MODE")
            time.sleep(seconds)

    return hold_lock, "events table locked by another session (not our server to freeze)"


async def _idle_lag(seconds: float) -> float:
    """The ticker's worst lateness on a loop with nothing else to do: what the machine itself
    (other processes, the scheduler) adds to every loop-lag figure."""
    worst = [0.0]
    ticker = asyncio.create_task(loop_ticker(worst))
    await asyncio.sleep(seconds)
    ticker.cancel()
    return worst[0]


def _rows(report: Report, what: str, measured: Concurrent, model_calls: int) -> None:
    overheads = sorted(measured.step_overheads)
    per = measured.events / max(1, measured.transactions)
    report.add(Row(CASE, f"{what}: worst loop lag", measured.loop_stall * 1000, "ms"))
    report.add(
        Row(
            CASE,
            f"{what}: longest garbage collection",
            measured.longest_collection * 1000,
            "ms",
            note="any thread; the loop waits for it (one GIL)",
        )
    )
    ms_a_step = 1000 / model_calls
    report.add(Row(CASE, f"{what}: CPU a step, event loop's thread", measured.loop_cpu * ms_a_step, "ms"))
    report.add(
        Row(
            CASE,
            f"{what}: CPU a step, other threads",
            measured.other_cpu * ms_a_step,
            "ms",
            note="the writer",
        )
    )
    report.add(Row(CASE, f"{what}: step overhead, median", statistics.median(overheads) * 1000, "ms"))
    report.add(Row(CASE, f"{what}: step overhead, worst", overheads[-1] * 1000, "ms"))
    report.add(
        Row(
            CASE,
            f"{what}: total",
            measured.rate,
            "events/s",
            note=f"{measured.events:,} events in {measured.transactions:,} transactions ({per:.1f} each)",
        )
    )


def _lag_target(report: Report, text: str, measured: Concurrent | None) -> None:
    lag = None if measured is None else measured.loop_stall * 1000
    report.target(CASE, text, lag, lag is not None and lag < 20, ".1f")


def run(report: Report, config: Config, postgres: Postgres | None, postgres_reason: str) -> None:
    """Measure case 7 on SQLite (a held write lock) and PostgreSQL (a stall, and no fault)."""
    runs, steps, fault = config.lag_runs, config.lag_steps, config.lag_fault
    idle = asyncio.run(_idle_lag(fault))
    report.add(
        Row(CASE, f"idle loop, {fault:g}s: worst loop lag", idle * 1000, "ms", note="the machine's own floor")
    )
    path, url = fresh_sqlite(config.workdir, "loop-lag")
    locked = _record(url, config, "lag-sqlite", _sqlite_lock_held(str(path), fault))
    _rows(report, f"SQLite, {runs} runs x {steps} steps, write lock held {fault:g}s", locked, runs * steps)
    _lag_target(report, f"worst loop lag, SQLite write lock held {fault:g}s < 20 ms (ms)", locked)
    if postgres is None:
        report.add(Row(CASE, "PostgreSQL", None, "ms", note=postgres_reason))
        _lag_target(report, f"worst loop lag, PostgreSQL stalled {fault:g}s < 20 ms (ms)", None)
        _lag_target(report, "worst loop lag, PostgreSQL, no fault < 20 ms (ms)", None)
        return
    url = postgres.fresh_database("bench_loop_lag")
    try:
        open_store(url).close()
        stall, how = _postgres_stalled(postgres, url, fault)
        stalled = _record(url, config, "lag-stalled", stall)
        _rows(report, f"PostgreSQL, {runs} runs x {steps} steps, {how} {fault:g}s", stalled, runs * steps)
        _lag_target(report, f"worst loop lag, PostgreSQL stalled {fault:g}s < 20 ms (ms)", stalled)
        calm = _record(url, config, "lag-calm")
        _rows(report, f"PostgreSQL, {runs} runs x {steps} steps, no fault", calm, runs * steps)
        _lag_target(report, "worst loop lag, PostgreSQL, no fault < 20 ms (ms)", calm)
        median = statistics.median(calm.step_overheads) * 1000
        report.target(CASE, "median step overhead, PostgreSQL < 10 ms (ms)", median, median < 10, ".2f")
        for number, (knob, how) in enumerate(GC_KNOBS.items()):
            tuned = _record(url, config, f"lag-gc-{number}", gc_knob=knob)
            _rows(report, f"PostgreSQL, {runs} runs x {steps} steps, no fault, {knob}", tuned, runs * steps)
            report.notes.append(f"loop lag, {knob}: {how}")
        today = _TODAY_PG_EVENTS_PER_SECOND
        ratio = calm.rate / today
        report.target(
            CASE,
            f"events/s, PostgreSQL >= 5x today's ({today:,.0f}, RESULTS.md 2026-11-25) (x)",
            ratio,
            ratio >= 5,
        )
    finally:
        postgres.drop_database("bench_loop_lag")
    report.notes.append(
        f"loop lag: today's executor froze the loop {_TODAY_WORST_LAG_MS:,.0f} ms under a held SQLite lock "
        "(issue 11); case 7 runs the real Executor, recording through SqlStore.writer()"
    )
