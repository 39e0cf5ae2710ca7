"""Case 4, strict replay: ``Replayer().replay_run(events)`` of recorded runs, against rebuild.

The runs are recorded by the real executor (bench agent, virtual clock) and replayed from their
events in memory, so the figure is the replay itself: the executor re-run on a virtual clock
with the recorded model and tools, plus the event-by-event comparison. Its ratio is taken
against ``rebuild`` of the same events (the cheapest thing that reads a whole run).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from functools import partial

from bench._config import Config
from bench._pg import Postgres
from bench._report import Report, Row
from bench._timing import interleave
from bench._workload import capture_run
from executus.events import Event, rebuild

__all__ = ["replay_rate", "run"]

CASE = "4 replay"


def replay_rate(events: Sequence[Event]) -> float:
    """Events/s of one strict replay of ``events``; raises if the replay diverged."""
    from replay import Replayer

    started = time.perf_counter()
    result = Replayer().replay_run(events)
    seconds = time.perf_counter() - started
    if not result.identical:
        raise RuntimeError(f"the bench run's replay diverged: {result.divergence}")
    return len(events) / seconds


def _rebuild_rate(events: Sequence[Event]) -> float:
    started = time.perf_counter()
    rebuild(events)
    return len(events) / (time.perf_counter() - started)


def run(report: Report, config: Config, postgres: Postgres | None, postgres_reason: str) -> None:
    """Measure case 4; issue 11's target: strict replay at least 0.2 of rebuild's rate."""
    if importlib.util.find_spec("replay") is None:
        report.add(Row(CASE, "strict replay", None, "events/s", note="the replay package is not installed"))
        return
    for steps in config.replay_lengths:
        events = capture_run(steps).events
        repetitions = config.repetitions_for(steps)
        results = interleave(
            {"replay": partial(replay_rate, events), "rebuild": partial(_rebuild_rate, events)}, repetitions
        )
        replay, folded = results["replay"], results["rebuild"]
        ratio = replay.median / folded.median
        report.add(
            Row(
                CASE,
                f"strict replay, {steps:,} steps ({len(events):,} events)",
                replay.median,
                "events/s",
                ratio=ratio,
                reference="rebuild",
                note=f"n={len(replay.samples)} {replay.spread()}".strip(),
                samples=replay.samples,
            )
        )
        report.target(CASE, f"strict replay, {steps:,} steps >= 0.2 of rebuild", ratio, ratio >= 0.2, ".2f")
        report.add(
            Row(
                CASE,
                f"rebuild in memory, {steps:,} steps",
                folded.median,
                "events/s",
                note=folded.spread(),
                samples=folded.samples,
            )
        )
    rates = [row.value for row in report.rows if row.case == CASE and row.name.startswith("strict")]
    first, last = (rates[0], rates[-1]) if len(rates) >= 2 else (None, None)
    if first and last:
        lengths = config.replay_lengths
        report.notes.append(
            f"replay rate at {lengths[-1]:,} steps is {last / first:.2f}x the rate at {lengths[0]:,} steps "
            "(1.00 = per-event cost independent of run length)"
        )
