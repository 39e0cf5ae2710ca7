"""One appender process of the scaling case (``bench.case_scaling``).

``python -m bench._append_child URL LABEL RUNS STEPS GO_FILE`` replays the executor's own batches
of ``RUNS`` runs of the bench agent (``STEPS`` steps each) through the store's writer, all runs at
once on one event loop through the store's writer, as fast as the store takes them (no model
latency). Each run holds a lease and its appends are fenced by it, as a worker's are (a store
without leases, an executus from before them, appends unfenced); the leases are taken before
the clock starts and released after it stops: a worker takes one per run, not per append.
The batches are prepared, the store connected and the file
``GO_FILE.LABEL.ready`` written before it waits for ``GO_FILE``, so that every process starts
appending at the same moment. It prints one JSON line: ``events``, ``started``, ``finished``
(``time.time()``, comparable across the processes of one host), ``cpu`` (this process's CPU
seconds from start to finish, every thread) and ``transactions``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._workload import capture_run, renamed, run_id_for
from executus.events import Event
from store import SqlStore

__all__ = ["main"]

_GIVE_UP_SECONDS = 120.0
"""Never outlive a parent that failed before saying go."""


async def _append_run(
    writer: Any, run_id: str, batches: Sequence[Sequence[Event]], epoch: int | None
) -> None:
    fence = {} if epoch is None else {"epoch": epoch}
    seq = 0
    for batch in batches:
        await writer.append(run_id, batch, seq, **fence)
        seq += len(batch)


def main(argv: Sequence[str]) -> None:
    url, label, runs, steps, go_file = argv[0], argv[1], int(argv[2]), int(argv[3]), Path(argv[4])
    template = capture_run(steps).batches
    work = {run_id_for(label, index): renamed(template, run_id_for(label, index)) for index in range(runs)}
    events = sum(len(batch) for batches in work.values() for batch in batches)
    with SqlStore(url) as store:
        store.list_runs()  # connected
        writer = store.writer()
        leases = {}
        if hasattr(store, "acquire"):
            leases = {run_id: store.acquire(run_id, label, 600.0) for run_id in work}
        before = store.write_transactions
        Path(f"{go_file}.{label}.ready").touch()
        give_up = time.monotonic() + _GIVE_UP_SECONDS
        while not go_file.exists():
            if time.monotonic() > give_up:
                raise SystemExit(f"no {go_file} after {_GIVE_UP_SECONDS:g}s")
            time.sleep(0.001)

        async def append_all() -> None:
            await asyncio.gather(
                *(
                    _append_run(writer, run_id, batches, leases[run_id].epoch if leases else None)
                    for run_id, batches in work.items()
                )
            )

        started, cpu = time.time(), time.process_time()
        asyncio.run(append_all())
        finished, cpu = time.time(), time.process_time() - cpu
        transactions = store.write_transactions - before
        for lease in leases.values():
            store.release(lease)
    print(
        json.dumps(
            {
                "events": events,
                "started": started,
                "finished": finished,
                "cpu": cpu,
                "transactions": transactions,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
