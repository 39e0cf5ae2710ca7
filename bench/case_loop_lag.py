"""Case 7, loop lag: 100 runs recording through the store's writer while the database misbehaves.

Each of ``lag_runs`` runs commits the executor's real batches (one bench-agent run captured on a
virtual clock, renamed per run) through :meth:`store.SqlStore.writer`, awaiting each commit as
the executor's driver does before the side effect it precedes: after a batch that ends with
``model_requested`` the "model" takes ``model_latency`` seconds (``asyncio.sleep``). The runs
are driven directly rather than by ``Executor``, whose rewrite onto the writer port is another
change; case 5 in the same bench run measures today's executor, appending synchronously on the
loop, for comparison. Scenarios:

* SQLite while another connection holds its write lock for ``lag_fault`` seconds;
* PostgreSQL while the server is frozen (SIGSTOP of every server process) for ``lag_fault``
  seconds, or, on a server that is not the bench's own, while another session holds the append
  lock that long;
* PostgreSQL with no fault.

Reported: the worst lag of a 1 ms ticker on the same loop (how long the loop could not run
anything else), the median step overhead (the time between two ``model_requested`` commits
minus the model's latency) and the total events/s.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg

from bench._config import Config
from bench._pg import Postgres, conninfo
from bench._report import Report, Row
from bench._stores import fresh_sqlite
from bench._workload import capture_run, renamed, run_id_for
from bench.case_concurrency import Concurrent, loop_ticker
from executus.events import Event
from executus.storage import EventWriter
from store import SqlStore, open_store
from store._hot import APPEND_LOCK_KEY

__all__ = ["Written", "record_through_writer", "run"]

CASE = "7 loop lag"
_FAULT_AFTER = 0.2
"""Seconds after the runs start that the fault begins (they are all active by then)."""
_TODAY_WORST_LAG_MS = 2045.0
_TODAY_PG_EVENTS_PER_SECOND = 2229.0
"""bench/RESULTS.md, 2026-11-25: case 5, PostgreSQL, 100 runs (used when case 5 did not run)."""


async def _drive(
    writer: EventWriter, batches: Sequence[Sequence[Event]], latency: float, overheads: list[float]
) -> None:
    run_id = batches[0][0].run_id
    expected = 0
    requested: float | None = None
    for batch in batches:
        await writer.append(run_id, batch, expected)
        expected += len(batch)
        if batch[-1].kind == "model_requested":  # durable: now the model may be called
            now = time.perf_counter()
            if requested is not None:
                overheads.append(now - requested - latency)
            requested = now
            await asyncio.sleep(latency)


async def _record_all(
    store: SqlStore, config: Config, runs: list[list[tuple[Event, ...]]], fault: Callable[[], None] | None
) -> tuple[float, float, list[float], int]:
    writer = store.writer()
    worst = [0.0]
    overheads: list[float] = []
    ticker = asyncio.create_task(loop_ticker(worst))
    faulting: threading.Thread | None = None
    started = time.perf_counter()
    drivers = [
        asyncio.create_task(_drive(writer, batches, config.model_latency, overheads)) for batches in runs
    ]
    if fault is not None:
        await asyncio.sleep(_FAULT_AFTER)
        faulting = threading.Thread(target=fault, name="bench fault")  # its sleep is off the loop
        faulting.start()
    await asyncio.gather(*drivers)
    seconds = time.perf_counter() - started
    ticker.cancel()
    if faulting is not None:
        faulting.join()
    events = sum(len(batch) for batches in runs for batch in batches)
    return seconds, worst[0], overheads, events


@dataclass(frozen=True, slots=True)
class Written:
    """What one batch of runs recorded through the writer measured."""

    measured: Concurrent
    transactions: int
    """Transactions the writer committed for them."""


def record_through_writer(
    url: str, config: Config, label: str, fault: Callable[[], None] | None = None
) -> Written:
    """Record ``config.lag_runs`` runs at once through the writer of the store at ``url``.

    Args:
        url: the database.
        config: how many runs, how many steps, the model's latency.
        label: makes the run ids, different for each batch recorded into one database.
        fault: started on a thread of its own once the runs are under way, joined at the end.
    """
    store = SqlStore(url)
    try:
        store.list_runs()
        before = store.write_transactions
        template = capture_run(config.lag_steps)  # before the loop starts: it runs a loop of its own
        runs = [renamed(template.batches, run_id_for(label, index)) for index in range(config.lag_runs)]
        # The 100 runs' events are built up front, which a real driver would not do: keep the
        # garbage collector from walking them (a full collection of such a heap takes 60-160 ms
        # here, in whichever thread triggers it, and would be measured as loop lag).
        gc.collect()
        gc.freeze()
        try:
            seconds, lag, overheads, events = asyncio.run(_record_all(store, config, runs, fault))
        finally:
            gc.unfreeze()
        transactions = store.write_transactions - before
    finally:
        store.close()
    return Written(Concurrent(events, seconds, tuple(overheads), lag), transactions)


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
        with psycopg.connect(conninfo(url), autocommit=True) as admin:
            admin.execute("SELECT pg_advisory_lock(%s)", (APPEND_LOCK_KEY,))
            time.sleep(seconds)
            admin.execute("SELECT pg_advisory_unlock(%s)", (APPEND_LOCK_KEY,))

    return hold_lock, "append lock held by another session (not our server to freeze)"


async def _idle_lag(seconds: float) -> float:
    """The ticker's worst lateness on a loop with nothing else to do: what the machine itself
    (other processes, the scheduler) adds to every loop-lag figure."""
    worst = [0.0]
    ticker = asyncio.create_task(loop_ticker(worst))
    await asyncio.sleep(seconds)
    ticker.cancel()
    return worst[0]


def _rows(report: Report, what: str, written: Written) -> None:
    measured = written.measured
    overheads = sorted(measured.step_overheads)
    per = measured.events / max(1, written.transactions)
    report.add(Row(CASE, f"{what}: worst loop lag", measured.loop_stall * 1000, "ms"))
    report.add(Row(CASE, f"{what}: step overhead, median", statistics.median(overheads) * 1000, "ms"))
    report.add(Row(CASE, f"{what}: step overhead, worst", overheads[-1] * 1000, "ms"))
    report.add(
        Row(
            CASE,
            f"{what}: total",
            measured.rate,
            "events/s",
            note=f"{measured.events:,} events in {written.transactions:,} transactions ({per:.1f} each)",
        )
    )


def _lag_target(report: Report, text: str, written: Written | None) -> None:
    lag = None if written is None else written.measured.loop_stall * 1000
    report.target(CASE, text, lag, lag is not None and lag < 20, ".1f")


def _today_postgres_rate(report: Report) -> tuple[float, str]:
    for row in report.rows:
        postgres_total = row.name.startswith("PostgreSQL") and row.unit == "events/s"
        if row.case == "5 concurrency" and postgres_total and row.value is not None:
            return row.value, "case 5 in this run"
    return _TODAY_PG_EVENTS_PER_SECOND, "bench/RESULTS.md 2026-11-25"


def run(report: Report, config: Config, postgres: Postgres | None, postgres_reason: str) -> None:
    """Measure case 7 on SQLite (a held write lock) and PostgreSQL (a stall, and no fault)."""
    runs, steps, fault = config.lag_runs, config.lag_steps, config.lag_fault
    idle = asyncio.run(_idle_lag(fault))
    report.add(
        Row(CASE, f"idle loop, {fault:g}s: worst loop lag", idle * 1000, "ms", note="the machine's own floor")
    )
    path, url = fresh_sqlite(config.workdir, "loop-lag")
    locked = record_through_writer(url, config, "lag-sqlite", _sqlite_lock_held(str(path), fault))
    _rows(report, f"SQLite, {runs} runs x {steps} steps, write lock held {fault:g}s", locked)
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
        stalled = record_through_writer(url, config, "lag-stalled", stall)
        _rows(report, f"PostgreSQL, {runs} runs x {steps} steps, {how} {fault:g}s", stalled)
        _lag_target(report, f"worst loop lag, PostgreSQL stalled {fault:g}s < 20 ms (ms)", stalled)
        calm = record_through_writer(url, config, "lag-calm")
        _rows(report, f"PostgreSQL, {runs} runs x {steps} steps, no fault", calm)
        _lag_target(report, "worst loop lag, PostgreSQL, no fault < 20 ms (ms)", calm)
        median = statistics.median(calm.measured.step_overheads) * 1000
        report.target(CASE, "median step overhead, PostgreSQL < 10 ms (ms)", median, median < 10, ".2f")
        today, source = _today_postgres_rate(report)
        ratio = calm.measured.rate / today
        report.target(
            CASE, f"events/s, PostgreSQL >= 5x today's ({today:,.0f}, {source}) (x)", ratio, ratio >= 5
        )
    finally:
        postgres.drop_database("bench_loop_lag")
    report.notes.append(
        f"loop lag: today's executor froze the loop {_TODAY_WORST_LAG_MS:,.0f} ms under a held SQLite lock "
        "(issue 11); case 7 drives the writer with the executor's captured batches, not Executor itself"
    )
