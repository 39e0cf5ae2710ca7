"""A bench process of case 11 (``python -m bench._workers_child MODE URL ...``).

``runs URL LABEL COUNT STEPS LATENCY``: connect, print ``ready``, wait for a line on stdin,
then run COUNT runs of the bench agent at once (owned: leased, fenced, heartbeat) and print
``{"seconds": ..., "cpu": ...}`` (wall and CPU seconds of this process).

``worker URL LEASE POLL STEPS LATENCY``: run a :class:`~executus.Worker` with the bench agent
until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bench._workload import bench_agent, run_id_for
from executus import Executor, Invocation, Worker
from store import SqlStore


async def _runs(store: SqlStore, label: str, count: int, steps: int, latency: float) -> float:
    executor = Executor(store, redaction=None)
    agent = bench_agent(steps, latency=latency)
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            executor.run(agent, Invocation(run_id=run_id_for(label, index)), "What is the answer?")
            for index in range(count)
        )
    )
    seconds = time.perf_counter() - started
    failed = [result.error for result in results if result.status != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} runs did not end ok, e.g. {failed[0]}")
    return seconds


def main(argv: list[str]) -> None:
    mode, url = argv[0], argv[1]
    with SqlStore(url) as store:
        store.list_runs()
        if mode == "runs":
            label, count, steps, latency = argv[2], int(argv[3]), int(argv[4]), float(argv[5])
            print("ready", flush=True)
            sys.stdin.readline()
            cpu = time.process_time()
            seconds = asyncio.run(_runs(store, label, count, steps, latency))
            print(json.dumps({"seconds": seconds, "cpu": time.process_time() - cpu}), flush=True)
        else:
            lease, poll, steps, latency = float(argv[2]), float(argv[3]), int(argv[4]), float(argv[5])
            agent = bench_agent(steps, latency=latency)
            worker = Worker(store, [agent], concurrency=4, lease_ttl=lease, poll_interval=poll)
            print(f"ready {worker.worker_id}", flush=True)
            asyncio.run(worker.run_until_signalled())


if __name__ == "__main__":
    main(sys.argv[1:])
