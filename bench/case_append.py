"""Case 1, append throughput: executus's recording path against the raw drivers and eventsourcing.

The workload is real executor output: one run of the bench agent is recorded (125 steps, about
500 events), and its batches are replayed under new run ids until the case has its number of
events, run after run. Every store receives exactly the executor's transactions: one
``commit()`` in the executor is one append, and for this agent a step is two appends of two
events each (the reply with its ``tool_started``, then the tool result with the next
``model_requested``; see :func:`transaction_note`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from bench._config import Config
from bench._peers import PeerMissing, eventsourcing_postgres_append, eventsourcing_sqlite_append, require
from bench._pg import Postgres, conninfo
from bench._raw import psycopg_append, raw_batches, sqlite_append
from bench._report import Report, Row
from bench._stores import executus_append, fresh_sqlite, new_path, reset_postgres
from bench._timing import Measured, interleave
from bench._workload import CapturedRun, bench_agent, capture_run, renamed, run_id_for
from executus import Executor
from executus.events import Event
from executus.storage import RunQuery
from store import SqlStore

__all__ = ["run", "transaction_note"]

TEMPLATE_STEPS = 125
RAW_LIMIT = "raw events"


def transaction_note(template: CapturedRun) -> str:
    """How many events the executor committed per transaction in the template run."""
    sizes = template.transaction_sizes()
    shown = ", ".join(f"{count} of {size}" for size, count in sorted(sizes.items()))
    events = sum(size * count for size, count in sizes.items())
    return (
        f"executor transactions in a {template.result.steps}-step run: {sum(sizes.values())} "
        f"for {events} events ({shown} event(s) each)"
    )


def _workload(template: CapturedRun, events: int, prefix: str) -> list[tuple[Event, ...]]:
    """Whole template runs under new ids, the last one cut short so that ``events`` are appended."""
    runs = math.ceil(events / len(template.events))
    batches: list[tuple[Event, ...]] = []
    count = 0
    for batch in (
        batch for index in range(runs) for batch in renamed(template.batches, run_id_for(prefix, index))
    ):
        if count >= events:
            break
        batches.append(batch)
        count += len(batch)
    return batches


def _in_tens(batches: list[tuple[Event, ...]]) -> list[tuple[Event, ...]]:
    """The same events regrouped ten to a transaction within each run: the anchors' workload."""
    regrouped: list[tuple[Event, ...]] = []
    for batch in batches:
        if regrouped and regrouped[-1][0].run_id == batch[0].run_id and len(regrouped[-1]) < 10:
            regrouped[-1] = (*regrouped[-1], *batch)
        else:
            regrouped.append(batch)
    return regrouped


def _executor_rate(url: str, events: int, redacted: bool = True) -> float:
    """Events/s of whole executor runs (fake model, real SqlStore): the recording path end to end.

    Runs of ``TEMPLATE_STEPS`` steps (about 4 events a step), the last one shorter, until about
    ``events`` events are recorded; with the executor's default redaction, or ``redaction=None``.
    """
    store = SqlStore(url)
    executor = Executor(store) if redacted else Executor(store, redaction=None)
    try:
        store.list_runs()
        remaining = events
        started = time.perf_counter()
        while remaining > 0:
            steps = max(1, min(TEMPLATE_STEPS, remaining // 4))
            result = executor.run_sync(bench_agent(steps), None, "What is the answer?")
            remaining -= result.state.last_seq
        seconds = time.perf_counter() - started
        count = sum(summary.last_seq for summary in store.list_runs(RunQuery(limit=None)))
    finally:
        store.close()
    return count / seconds


def _add_rows(report: Report, case: str, results: dict[str, Measured], labels: dict[str, str]) -> None:
    limit = results[RAW_LIMIT].median
    for key, measured in results.items():
        report.add(
            Row(
                case,
                labels[key],
                measured.median,
                "events/s",
                ratio=measured.median / limit,
                reference=RAW_LIMIT,
                note=measured.spread(),
                samples=measured.samples,
            )
        )


def _judge(report: Report, case: str, results: dict[str, Measured] | None) -> None:
    if results is None:
        report.target(case, "executus append >= 0.60 of raw events", None, None)
        report.target(case, "executus append ahead of eventsourcing", None, None)
        return
    executus = results["executus"].median
    ratio = executus / results[RAW_LIMIT].median
    report.target(case, "executus append >= 0.60 of raw events", ratio, ratio >= 0.6)
    if "eventsourcing" in results:
        ratio = executus / results["eventsourcing"].median
        report.target(case, "executus append ahead of eventsourcing (x)", ratio, ratio > 1.0)
    else:
        report.target(case, "executus append ahead of eventsourcing (x)", None, None)


def _sqlite(report: Report, config: Config, batches: list[tuple[Event, ...]]) -> None:
    case = "1 append SQLite"
    rows = raw_batches(batches, "sqlite")
    tens = raw_batches(_in_tens(batches), "sqlite")
    count = sum(len(batch) for batch in batches)

    def on_fresh(write: Callable[[str], float], label: str = "append") -> Callable[[], float]:
        return lambda: write(str(fresh_sqlite(config.workdir, label)[0]))

    variants: dict[str, Callable[[], float]] = {
        RAW_LIMIT: on_fresh(lambda path: sqlite_append(path, rows, with_runs=False)),
        "raw events+runs": on_fresh(lambda path: sqlite_append(path, rows, with_runs=True)),
        "executus": on_fresh(lambda path: executus_append(f"sqlite:///{path}", batches)),
        "executor": on_fresh(lambda path: _executor_rate(f"sqlite:///{path}", count)),
        "executor unredacted": on_fresh(lambda path: _executor_rate(f"sqlite:///{path}", count, False)),
        "raw tens": on_fresh(lambda path: sqlite_append(path, tens, with_runs=False)),
    }
    labels = {
        RAW_LIMIT: "raw sqlite3: events rows only (the limit)",
        "raw events+runs": "raw sqlite3: events rows + runs row (same rows)",
        "executus": "executus SqlStore.append (executor's batches)",
        "executor": "executus Executor.run -> SqlStore (end to end)",
        "executor unredacted": "executus Executor.run -> SqlStore (end to end), redaction=None",
        "raw tens": "raw sqlite3: 10 events/transaction (anchor workload)",
        "eventsourcing": "eventsourcing SQLiteApplicationRecorder, synchronous=NORMAL",
        "eventsourcing defaults": "eventsourcing SQLiteApplicationRecorder, its defaults (FULL)",
    }
    missing = ""
    try:
        require("eventsourcing")
        variants["eventsourcing"] = lambda: eventsourcing_sqlite_append(
            str(new_path(config.workdir, "eventsourcing")), rows, normal_sync=True
        )
        variants["eventsourcing defaults"] = lambda: eventsourcing_sqlite_append(
            str(new_path(config.workdir, "eventsourcing")), rows
        )
    except PeerMissing as error:
        missing = str(error)
    results = interleave(variants, config.repetitions)
    _add_rows(report, case, results, labels)
    if missing:
        report.add(Row(case, labels["eventsourcing"], None, "events/s", note=missing))
    _judge(report, case, results)


def _postgres(
    report: Report, config: Config, postgres: Postgres | None, reason: str, template: CapturedRun
) -> None:
    case = "1 append PostgreSQL"
    if postgres is None:
        report.add(Row(case, "all PostgreSQL rows", None, "events/s", note=reason))
        _judge(report, case, None)
        return
    batches = _workload(template, config.append_events_postgres, "pg-append")
    rows = raw_batches(batches, "postgresql")
    url = postgres.fresh_database("bench_append")
    es_url = postgres.fresh_database("bench_append_eventsourcing")

    def on_reset(write: Callable[[], float]) -> Callable[[], float]:
        def measured() -> float:
            reset_postgres(url)
            return write()

        return measured

    variants: dict[str, Callable[[], float]] = {
        RAW_LIMIT: on_reset(lambda: psycopg_append(conninfo(url), rows, with_runs=False)),
        "raw events+runs": on_reset(lambda: psycopg_append(conninfo(url), rows, with_runs=True)),
        "executus": on_reset(lambda: executus_append(url, batches)),
    }
    labels = {
        RAW_LIMIT: "raw psycopg executemany: events rows only (the limit)",
        "raw events+runs": "raw psycopg: events rows + runs row (same rows)",
        "executus": "executus SqlStore.append (executor's batches)",
        "eventsourcing": "eventsourcing PostgresApplicationRecorder",
    }
    missing = ""
    try:
        require("eventsourcing", "psycopg_pool")

        def eventsourcing() -> float:
            postgres.fresh_database("bench_append_eventsourcing")
            return eventsourcing_postgres_append(es_url, rows)

        variants["eventsourcing"] = eventsourcing
    except PeerMissing as error:
        missing = str(error)
    try:
        results = interleave(variants, config.repetitions)
    finally:
        postgres.drop_database("bench_append")
        postgres.drop_database("bench_append_eventsourcing")
    _add_rows(report, case, results, labels)
    if missing:
        report.add(Row(case, labels["eventsourcing"], None, "events/s", note=missing))
    _judge(report, case, results)


def run(report: Report, config: Config, postgres: Postgres | None, postgres_reason: str) -> None:
    """Measure case 1 on SQLite and on PostgreSQL (if available) and add its rows and targets."""
    template = capture_run(TEMPLATE_STEPS)
    report.notes.append(transaction_note(template))
    _sqlite(report, config, _workload(template, config.append_events, "append"))
    _postgres(report, config, postgres, postgres_reason, template)
