"""Case 3, rebuild: read a run back from SQLite and fold it, against raw SELECT + json.loads.

One database holds a long run (``rebuild_steps`` steps, ~4 events a step) and
``rebuild_runs`` shorter runs, written through ``SqlStore.append`` ten events at a time and
round-robin across the short runs, so their rows interleave as concurrent runs' rows do. The
page cache is warm for every variant. The limit reads the same rows with sqlite3 and folds the
decoded dicts with a trivial fold (as the issue's anchor did); executus reads with
``SqlStore.read_run`` (JSON -> validated pydantic events, upcasting included) and folds with
``rebuild`` (the full state: transcript, its hash chain, usage, pending calls, deadlines).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from itertools import zip_longest
from typing import Any

from bench._config import Config
from bench._pg import Postgres
from bench._report import Report, Row
from bench._stores import fresh_sqlite
from bench._timing import Measured, interleave
from bench._workload import capture_run, renamed, run_id_for
from executus.events import Event, rebuild
from store import SqlStore

__all__ = ["fold_dicts", "load_runs", "run"]

CASE = "3 rebuild"
LIMIT = "raw SELECT + json.loads + fold"
# The kind is a column: stored payloads are the events' bodies, without the envelope.
_SQL = "SELECT kind, payload FROM events WHERE run_id = ? ORDER BY seq"


def fold_dicts(events: Sequence[tuple[str, dict[str, Any]]]) -> tuple[int, int, int]:
    """The anchor's trivial fold over decoded rows (kind, body): steps, output tokens, tool results."""
    steps = tokens = tools = 0
    for kind, event in events:
        if kind == "model_requested":
            steps += 1
        elif kind == "model_responded":
            tokens += event["usage"]["output_tokens"]
        elif kind == "tool_finished":
            tools += 1
    return steps, tokens, tools


def load_runs(store: SqlStore, runs: Sequence[Sequence[tuple[Event, ...]]], chunk: int) -> None:
    """Append each run's events ``chunk`` at a time, round-robin over the runs."""
    trimmed: list[list[tuple[Event, ...]]] = []
    for batches in runs:
        events = tuple(event for batch in batches for event in batch)
        trimmed.append([events[start : start + chunk] for start in range(0, len(events), chunk)])
    expected: dict[str, int] = {}
    for parts in zip_longest(*trimmed):
        for part in parts:
            if part:
                run_id = part[0].run_id
                store.append(run_id, part, expected.get(run_id, 0))
                expected[run_id] = expected.get(run_id, 0) + len(part)


def _rates(
    run_ids: Sequence[str], count: int, store: SqlStore, raw: sqlite3.Connection, repetitions: int
) -> dict[str, Measured]:
    def rate(work: Callable[[str], object]) -> Callable[[], float]:
        def measured() -> float:
            started = time.perf_counter()
            for run_id in run_ids:
                work(run_id)
            return count / (time.perf_counter() - started)

        return measured

    def rows(run_id: str) -> sqlite3.Cursor:
        return raw.execute(_SQL, (run_id,))

    events = {run_id: store.read_run(run_id) for run_id in run_ids}
    variants = {
        LIMIT: rate(lambda run_id: fold_dicts([(kind, json.loads(body)) for kind, body in rows(run_id)])),
        "raw SELECT only": rate(lambda run_id: rows(run_id).fetchall()),
        "executus read_run + rebuild": rate(lambda run_id: rebuild(store.read_run(run_id))),
        "executus read_run only": rate(store.read_run),
        "executus rebuild only (events in memory)": rate(lambda run_id: rebuild(events[run_id])),
    }
    return interleave(variants, repetitions)


def _add(report: Report, what: str, results: dict[str, Measured]) -> float:
    limit = results[LIMIT].median
    for name, measured in results.items():
        report.add(
            Row(
                CASE,
                f"{what}: {name}",
                measured.median,
                "events/s",
                ratio=measured.median / limit,
                reference="raw",
                note=measured.spread(),
                samples=measured.samples,
            )
        )
    return results["executus read_run + rebuild"].median / limit


def run(report: Report, config: Config, postgres: Postgres | None, postgres_reason: str) -> None:
    """Measure case 3 on SQLite and judge its target."""
    long_id = run_id_for("rebuild-long")
    long_run = renamed(capture_run(config.rebuild_steps).batches, long_id)
    short = capture_run(config.rebuild_runs_steps).batches
    short_runs = [renamed(short, run_id_for("rebuild", index)) for index in range(config.rebuild_runs)]
    path, url = fresh_sqlite(config.workdir, "rebuild")
    store = SqlStore(url)
    raw = sqlite3.connect(path)
    try:
        load_runs(store, [long_run], 500)
        load_runs(store, short_runs, 10)
        long_count = sum(len(batch) for batch in long_run)
        short_count = sum(len(batch) for runs in short_runs for batch in runs)
        long_results = _rates([long_id], long_count, store, raw, config.repetitions)
        short_ids = [runs[0][0].run_id for runs in short_runs]
        short_results = _rates(short_ids, short_count, store, raw, config.repetitions)
    finally:
        raw.close()
        store.close()
    ratio = _add(report, f"1 run of {long_count:,} events", long_results)
    report.target(CASE, f"read + fold 1 run of {long_count:,} events >= 0.8 of raw", ratio, ratio >= 0.8)
    ratio = _add(report, f"{len(short_runs)} runs, {short_count:,} events", short_results)
    report.target(CASE, f"read + fold {len(short_runs)} runs >= 0.8 of raw", ratio, ratio >= 0.8)
