"""Every status and every demo run replays identically from each store backend and a cassette."""

from __future__ import annotations

import io

import pytest
from test_replay_scenarios import GOLDEN, SCENARIOS

from executus import VirtualClock
from executus.cli._demo import record_demo
from executus.storage import EventStore
from replay import Replayer, import_cassette, load_cassette, read_cassette, write_cassette


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_status_replays_identically_from_each_store(store: EventStore, name: str) -> None:
    run_id = import_cassette(store, load_cassette(GOLDEN / f"{name}.jsonl"))
    result = Replayer(blobs=store).replay_run(store.read_run(run_id))
    assert result.identical, result.report()


@pytest.mark.parametrize("source", ["store", "cassette"])
def test_every_demo_run_replays_identically(store: EventStore, source: str) -> None:
    demo = record_demo(store, VirtualClock())
    statuses = {run.result.status for run in demo}
    assert statuses >= {"ok", "error", "timeout", "cancelled", "killed"}
    replayer = Replayer(blobs=store)
    for run in demo:
        run_id = run.result.run_id
        if source == "store":
            result = replayer.replay_run(store.read_run(run_id))
        else:
            stream = io.StringIO()
            write_cassette(store, run_id, stream)
            result = replayer.replay_run(read_cassette(io.StringIO(stream.getvalue())))
        assert result.identical, f"{run.scenario}: {result.report()}"
