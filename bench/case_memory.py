"""Case 6, memory: peak RSS and Python heap recording, then replaying, the long run.

Each figure comes from its own child process (:mod:`bench._memory_child`), because the peak
RSS of a process never goes down. Recording writes to SQLite through ``SqlStore``; replaying
reads the recorded run back from that database and replays it strictly. The yardstick is the
log itself held once in memory: the list of events ``read_run`` returns (traced heap), so
"x of the log" says how many copies of the whole log a phase held at its peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench._config import Config
from bench._pg import Postgres
from bench._report import Report, Row
from bench._stores import fresh_sqlite

__all__ = ["run"]

CASE = "6 memory"
_MIB = 1024 * 1024


def _child(mode: str, steps: int, url: str, trace: bool) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench._memory_child",
        mode,
        str(steps),
        url,
        *(["--trace"] if trace else []),
    ]
    root = str(Path(__file__).resolve().parent.parent)
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    finished = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {finished.stderr.strip()[-2000:]}")
    figures: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    return figures


def run(report: Report, config: Config, postgres: Postgres | None, postgres_reason: str) -> None:
    """Measure case 6 and judge its target."""
    steps = config.memory_steps
    _path, url = fresh_sqlite(config.workdir, "memory")
    _traced_path, traced_url = fresh_sqlite(config.workdir, "memory-traced")
    record = _child("record", steps, url, trace=False)
    record_heap = _child("record", steps, traced_url, trace=True)
    replay = _child("replay", steps, url, trace=False)
    replay_heap = _child("replay", steps, url, trace=True)
    log = replay_heap["log_in_memory"]
    events = replay_heap["events"]
    report.add(
        Row(
            CASE, f"the log held once: {events:,} events from read_run", log / _MIB, "MiB", note="traced heap"
        )
    )
    for phase, rss, heap in (("record", record, record_heap), ("replay", replay, replay_heap)):
        grown = (rss["peak_rss"] - rss["baseline_rss"]) / _MIB
        report.add(
            Row(
                CASE,
                f"{phase} {steps:,} steps: peak RSS",
                rss["peak_rss"] / _MIB,
                "MiB",
                note=f"+{grown:,.1f} MiB over the {rss['baseline_rss'] / _MIB:,.1f} MiB before the run",
            )
        )
        report.add(
            Row(
                CASE,
                f"{phase} {steps:,} steps: Python heap peak",
                heap["heap_peak"] / _MIB,
                "MiB",
                ratio=heap["heap_peak"] / log,
                reference="the log",
                note="tracemalloc, from the start of the run",
            )
        )
    for figures in (replay, replay_heap):
        if not figures.get("identical", False):
            report.notes.append(
                f"memory case: the replay of the real-clock run diverged: {figures['divergence']}"
            )
    beyond = (replay_heap["heap_peak"] - log) / log
    report.add(
        Row(
            CASE,
            f"replay {steps:,} steps: heap beyond the log it replays",
            (replay_heap["heap_peak"] - log) / _MIB,
            "MiB",
            ratio=beyond,
            reference="the log",
            note="the replayed run's state, as recording holds it",
        )
    )
    copies = record_heap["heap_peak"] / log
    report.target(CASE, "record holds the whole log at most once (copies)", copies, copies <= 1.0)
    # Replaying needs the recorded log in memory (it is the input): that is the one copy allowed,
    # and a second would put the peak at two logs or more.
    copies = replay_heap["heap_peak"] / log
    report.target(
        CASE, "replay holds the whole log at most once (copies, input included)", copies, copies < 2.0
    )
