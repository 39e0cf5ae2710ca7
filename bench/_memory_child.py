"""One memory measurement in a fresh process: ``python -m bench._memory_child MODE STEPS URL [--trace]``.

The peak RSS of a process only ever grows, so each measurement needs its own process. Modes:

* ``record``: record one run of STEPS steps through the executor into the SQLite store at URL.
* ``replay``: read the run recorded there back and replay it strictly.

A short warm-up of the same kind runs first, so imports and caches are in the baseline. With
``--trace`` the Python heap is traced (tracemalloc: slower, and its own bookkeeping inflates
RSS, which is why RSS and heap are measured in separate processes). Prints one JSON object.
"""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any

from bench._workload import bench_agent, run_id_for
from executus import Executor, Invocation
from replay import Replayer
from store import SqlStore

__all__ = ["main", "measure"]

WARM_UP = run_id_for("memory-warm-up")
MEASURED = run_id_for("memory")


def _status_bytes(field: str) -> int:
    """A ``VmRSS``/``VmHWM`` figure of this process from /proc (Linux), in bytes."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark to the current RSS and return it (bytes).

    ``ru_maxrss`` cannot be used: Linux carries it over ``exec``, so a child would report its
    parent's peak. ``VmHWM`` belongs to the new address space and can be reset by writing 5 to
    ``clear_refs``, so the peak read afterwards is the peak of what follows.
    """
    Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    return _status_bytes("VmRSS")


def _record(store: SqlStore, run_id: str, steps: int) -> None:
    Executor(store).run_sync(bench_agent(steps), Invocation(run_id=run_id), "What is the answer?")


def measure(mode: str, steps: int, url: str, trace: bool) -> dict[str, Any]:
    """Run one measurement and return its figures (bytes)."""
    store = SqlStore(url)
    out: dict[str, Any] = {"mode": mode, "steps": steps}
    try:
        if mode == "record":
            _record(store, WARM_UP, 10)
        else:
            Replayer().replay_run(store.read_run(WARM_UP))
        gc.collect()
        if trace:
            tracemalloc.start()
        baseline = _reset_peak_rss()
        if mode == "record":
            _record(store, MEASURED, steps)
        else:
            before = tracemalloc.get_traced_memory()[0] if trace else 0
            events = store.read_run(MEASURED)
            if trace:
                out["log_in_memory"] = tracemalloc.get_traced_memory()[0] - before
            result = Replayer().replay_run(events)
            out["identical"] = result.identical
            out["divergence"] = " ".join(result.report().split())[:400] if not result.identical else ""
            out["events"] = len(events)
        out["baseline_rss"] = baseline
        out["peak_rss"] = _status_bytes("VmHWM")
        if trace:
            out["heap_peak"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    finally:
        store.close()
    return out


def main(argv: list[str]) -> None:
    """Parse ``MODE STEPS URL [--trace]`` and print the figures as JSON."""
    mode, steps, url = argv[0], int(argv[1]), argv[2]
    print(json.dumps(measure(mode, steps, url, "--trace" in argv[3:])))


if __name__ == "__main__":
    main(sys.argv[1:])
