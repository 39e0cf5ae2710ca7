"""Case 2, per-step cost against run length: the executor on SQLite, and LangGraph's SqliteSaver.

Each executus run is a whole :meth:`Executor.run` of the bench agent (fake model, one tool call
a step, ~300-byte tool result) recording into a fresh SQLite database through ``SqlStore``; the
timing covers the run only (the store is opened and its schema created before). Bytes per step
is how much the database files grew (closed before and after), divided by the steps. LangGraph
runs the same lengths (up to its own maximum) in the same process, measured the same way.
The executor records with its default redaction (the built-in detectors at its write port);
``executus redaction=None`` runs the same lengths up to 1,000 steps without it, for its cost.

Two time figures per length: wall time / steps (every stall included), and the median step
(from one step's start to the next, over every step of every repetition), which a burst of
load from elsewhere on the machine barely moves. Lengths are interleaved repetition by
repetition, so drift in the machine spreads over all of them. The time targets are judged on
the median step for executus against itself, and on wall time against LangGraph (whose
default durability writes a checkpoint in a background thread while the next step runs, so its
step-to-step gaps leave the writes out; wall time includes them).
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable

from bench._config import Config
from bench._peers import PeerMissing, langgraph_run, require
from bench._pg import Postgres
from bench._report import Report, Row
from bench._stores import database_bytes, fresh_sqlite
from bench._timing import RunFigures
from bench._workload import bench_agent
from executus import Executor, Invocation
from executus.events import ModelResponded
from store import SqlStore

__all__ = ["executus_run", "run"]

CASE = "2 steps"
LANGGRAPH = "LangGraph SqliteSaver"
UNREDACTED = "executus redaction=None"
Runner = Callable[[int], RunFigures]


def executus_run(config: Config, steps: int, redacted: bool = True) -> RunFigures:
    """One recorded run of ``steps`` steps; step marks are taken as each model reply is recorded."""
    path, url = fresh_sqlite(config.workdir, f"steps-{steps}")
    empty = database_bytes(path)  # closed, as it is measured again after the run
    marks: list[float] = []

    def mark(_event: ModelResponded) -> None:
        marks.append(time.perf_counter())

    store = SqlStore(url)
    try:
        store.list_runs()
        # Random 32-hex run ids and the default redaction, as in production.
        executor = Executor(store) if redacted else Executor(store, redaction=None)
        agent = bench_agent(steps)
        started = time.perf_counter()
        result = executor.run_sync(agent, Invocation(on_step=mark), "What is the answer?")
        seconds = time.perf_counter() - started
        if result.status != "ok" or result.steps != steps:
            raise RuntimeError(f"the bench run did not end as scripted: {result}")
    finally:
        store.close()
    grown = database_bytes(path) - empty
    path.unlink()
    return RunFigures(steps, seconds, grown, tuple(marks))


def _langgraph(config: Config, durability: str | None) -> Runner:
    def run_once(steps: int) -> RunFigures:
        directory = config.workdir / f"langgraph-{steps}-{time.perf_counter_ns()}"
        directory.mkdir()
        try:
            return langgraph_run(steps, directory, durability)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    return run_once


def _measure(
    runners: dict[str, tuple[Runner, tuple[int, ...]]], config: Config
) -> dict[str, list[RunFigures]]:
    """Every (system, length) pair repeated, interleaved: forward on even rounds, reversed on odd."""
    plan = [(name, steps) for name, (_runner, lengths) in runners.items() for steps in lengths]
    for runner, lengths in runners.values():
        runner(lengths[0])  # warm-up: imports, caches, first connections
    figures: dict[str, list[RunFigures]] = {f"{name} {steps}": [] for name, steps in plan}
    rounds = max(config.repetitions_for(steps) for _name, steps in plan)
    for round_index in range(rounds):
        for name, steps in plan if round_index % 2 == 0 else reversed(plan):
            if round_index < config.repetitions_for(steps):
                figures[f"{name} {steps}"].append(runners[name][0](steps))
    return figures


def _median_step(runs: list[RunFigures]) -> float:
    return statistics.median(step for run in runs for step in run.step_seconds) * 1000


def _wall(runs: list[RunFigures]) -> float:
    return statistics.median(run.seconds / run.steps for run in runs) * 1000


def _rows(report: Report, name: str, lengths: tuple[int, ...], figures: dict[str, list[RunFigures]]) -> None:
    first = figures[f"{name} {lengths[0]}"]
    for steps in lengths:
        runs = figures[f"{name} {steps}"]
        label = f"{name}, {steps:,} steps"
        walls = tuple(run.seconds / run.steps * 1000 for run in runs)
        spread = f"n={len(runs)} {min(walls):.3g}..{max(walls):.3g}"
        for what, value, reference in (
            ("wall time / steps", _wall(runs), _wall(first)),
            ("median step", _median_step(runs), _median_step(first)),
        ):
            ratio = value / reference
            note = spread if what.startswith("wall") else ""
            report.add(
                Row(CASE, f"{label}: {what}", value, "ms/step", ratio, f"{lengths[0]} steps", note, walls)
            )
        sizes = tuple(run.disk_bytes / run.steps for run in runs)
        report.add(Row(CASE, f"{label}: disk", statistics.median(sizes), "bytes/step", samples=sizes))


def run(report: Report, config: Config, postgres: Postgres | None, postgres_reason: str) -> None:
    """Measure case 2 and judge its targets."""
    runners: dict[str, tuple[Runner, tuple[int, ...]]] = {
        "executus": (lambda steps: executus_run(config, steps), config.run_lengths),
        UNREDACTED: (
            lambda steps: executus_run(config, steps, redacted=False),
            tuple(steps for steps in config.run_lengths if steps <= 1_000),
        ),
    }
    try:
        require("langgraph", "langgraph.checkpoint.sqlite")
        runners[LANGGRAPH] = (_langgraph(config, None), config.langgraph_lengths)
        if not config.quick:
            runners[f"{LANGGRAPH} durability=sync"] = (_langgraph(config, "sync"), config.langgraph_lengths)
    except PeerMissing as error:
        report.add(Row(CASE, LANGGRAPH, None, "ms/step", note=str(error)))
    figures = _measure(runners, config)
    for name, (_runner, lengths) in runners.items():
        _rows(report, name, lengths, figures)
    _judge(report, figures)


def _by_length(figures: dict[str, list[RunFigures]], name: str) -> dict[int, list[RunFigures]]:
    """The runs of one system (exactly ``name``, not its variants), by run length."""
    return {
        int(key.removeprefix(f"{name} ")): runs
        for key, runs in figures.items()
        if key.startswith(f"{name} ") and key.removeprefix(f"{name} ").isdigit()
    }


def _judge(report: Report, figures: dict[str, list[RunFigures]]) -> None:
    executus = _by_length(figures, "executus")
    langgraph = _by_length(figures, LANGGRAPH)
    unredacted = _by_length(figures, UNREDACTED)
    longest = max(unredacted.keys() & executus.keys(), default=None)
    redaction = None
    if longest is not None:
        redaction = _median_step(executus[longest]) / _median_step(unredacted[longest])
    report.target(
        CASE,
        "executus median step with default redaction <= 1.1x redaction=None, longest common run (x)",
        redaction,
        (redaction or 0) <= 1.1,
    )
    growth = None
    if {10, 1_000} <= executus.keys():
        growth = _median_step(executus[1_000]) / _median_step(executus[10])
    report.target(CASE, "executus median step at 1,000 <= 1.2x at 10 (x)", growth, (growth or 0) <= 1.2)
    sizes = [
        statistics.median(run.disk_bytes / run.steps for run in runs)
        for steps, runs in executus.items()
        if steps >= 100
    ]
    flat = max(sizes) / min(sizes) if sizes else None
    report.target(CASE, "executus bytes/step flat from 100 steps on (max/min)", flat, (flat or 0) <= 1.2)
    size_ratio = time_ratio = None
    if 1_000 in executus and 1_000 in langgraph:
        executus_size = statistics.median(run.disk_bytes for run in executus[1_000])
        size_ratio = executus_size / statistics.median(run.disk_bytes for run in langgraph[1_000])
        time_ratio = _wall(executus[1_000]) / _wall(langgraph[1_000])
    report.target(
        CASE,
        "executus bytes/step at 1,000 < 1/100 of LangGraph's",
        size_ratio,
        (size_ratio or 1) < 0.01,
        ".4f",
    )
    report.target(
        CASE, "executus wall ms/step at 1,000 < 1/4 of LangGraph's", time_ratio, (time_ratio or 1) < 0.25
    )
