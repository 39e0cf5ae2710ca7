"""The in-memory store keeps the append contract (the SQL store runs the full contract suite)."""

from __future__ import annotations

import pytest
from _support import record

from executus import Agent
from executus.storage import GENESIS_HASH, ConcurrencyError, MemoryStore, RunQuery, chain_hash, event_json
from executus.testing import ScriptedModel


def test_a_stale_writer_gets_concurrency_error_and_writes_nothing() -> None:
    events = record(Agent("a", ScriptedModel(["hi"]))).events
    store = MemoryStore()
    store.append("run-0001", events[:2], 0)
    with pytest.raises(ConcurrencyError) as raised:
        store.append("run-0001", events[1:3], 1)
    assert (raised.value.expected_seq, raised.value.actual_seq) == (1, 2)
    assert "expected to append after seq 1, but the log already ends at seq 2" in str(raised.value)
    assert store.read_run("run-0001") == events[:2]


def test_hash_chain_and_summary_follow_the_events() -> None:
    recorded = record(Agent("a", ScriptedModel(["hi"])))
    store = recorded.executor.store
    assert isinstance(store, MemoryStore)
    previous = GENESIS_HASH
    for event, digest in zip(recorded.events, store.hashes("run-0001"), strict=True):
        assert digest == chain_hash(previous, event_json(event))
        previous = digest
    summary = store.get_run("run-0001")
    assert (summary.status, summary.steps, summary.end_cause, summary.head_hash) == (
        "ok",
        1,
        "final answer",
        previous,
    )
    assert store.list_runs(RunQuery(status="error")) == []
    assert store.list_runs(RunQuery(agent="a")) == [summary]
