"""The store writer's shortcuts give exactly what the plain definitions give.

The writer folds a batch's events into the run's row at once (``summarize_batch``) rather than
one row per event; these tests hold it to the plain per-event projection, written out here as
the oracle, on every golden run cut into batches at every point and on generated runs.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executus._store import summarize_batch
from executus.events import Event, EventOrderError
from executus.storage import GENESIS_HASH, RunSummary, chain_hash, event_json, summarize
from replay import load_cassette
from tests.store_events import T0, cancelled, finished, started, step

_GOLDEN = Path(__file__).parent / "golden"
GOLDEN_RUNS = {
    path.relative_to(_GOLDEN).as_posix(): load_cassette(path).events
    for path in sorted([*_GOLDEN.glob("*.jsonl"), *_GOLDEN.glob("v0_1_0/*.jsonl")])
}


def _oracle(summary: RunSummary | None, event: Event, head_hash: str) -> RunSummary:
    """The projection of one event, written plainly (as 0.1.0's ``summarize`` did)."""
    if summary is None:
        assert event.kind == "run_started"
        return RunSummary(
            run_id=event.run_id,
            agent=event.agent.name,
            model=event.agent.model,
            caller_id=event.caller_id,
            parent_run_id=event.parent_run_id,
            status="running",
            started_at=event.at,
            finished_at=None,
            steps=0,
            input_tokens=0,
            output_tokens=0,
            end_cause=None,
            last_seq=event.seq,
            last_event_at=event.at,
            head_hash=head_hash,
        )
    changes: dict[str, object] = {}
    if event.kind == "model_requested":
        changes["steps"] = event.step
    elif event.kind == "model_responded":
        changes["input_tokens"] = summary.input_tokens + event.usage.input_tokens
        changes["output_tokens"] = summary.output_tokens + event.usage.output_tokens
    elif event.kind == "run_cancelled":
        changes["end_cause"] = f"{event.cause}: {event.detail}" if event.detail else event.cause
    elif event.kind == "run_finished":
        changes["status"] = event.status
        changes["finished_at"] = event.at
        if summary.end_cause is None:
            changes["end_cause"] = "final answer" if event.status == "ok" else str(event.error)
    return dataclasses.replace(
        summary, **changes, last_seq=event.seq, last_event_at=event.at, head_hash=head_hash
    )


def _rows_batch_by_batch(events: Sequence[Event], cuts: Sequence[int]) -> list[RunSummary]:
    """The run's row after each batch, ``events`` cut before each index in ``cuts``."""
    rows: list[RunSummary] = []
    summary: RunSummary | None = None
    head = GENESIS_HASH
    bounds = [0, *sorted(set(cuts) - {0, len(events)}), len(events)]
    for start, end in itertools.pairwise(bounds):
        for event in events[start:end]:
            head = chain_hash(head, event_json(event))
        summary = summarize_batch(summary, events[start:end], head)
        rows.append(summary)
    return rows


def _rows_event_by_event(events: Sequence[Event], cuts: Sequence[int]) -> list[RunSummary]:
    summaries: list[RunSummary] = []
    summary: RunSummary | None = None
    head = GENESIS_HASH
    for event in events:
        head = chain_hash(head, event_json(event))
        summary = _oracle(summary, event, head)
        summaries.append(summary)
    ends = [*sorted(set(cuts) - {0, len(events)}), len(events)]
    return [summaries[end - 1] for end in ends]


@pytest.mark.parametrize("name", GOLDEN_RUNS)
def test_a_batch_folds_to_the_row_its_events_fold_to_one_by_one(name: str) -> None:
    events = GOLDEN_RUNS[name]
    for cut in range(1, len(events)):
        assert _rows_batch_by_batch(events, [cut]) == _rows_event_by_event(events, [cut])
    assert _rows_batch_by_batch(events, []) == _rows_event_by_event(events, [])
    every = list(range(1, len(events)))
    assert _rows_batch_by_batch(events, every) == _rows_event_by_event(events, every)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.integers(min_value=0, max_value=4),
    tokens=st.lists(st.integers(min_value=0, max_value=10**6), min_size=4, max_size=4),
    ending=st.sampled_from(["ok", "error", "cancelled", "running"]),
    cuts=st.lists(st.integers(min_value=1, max_value=30), max_size=6),
)
def test_generated_runs_fold_alike_batch_by_batch_and_event_by_event(
    steps: int, tokens: list[int], ending: str, cuts: list[int]
) -> None:
    events: list[Event] = [started("run-1")]
    for number in range(1, steps + 1):
        at = T0 + timedelta(seconds=number)
        events += step("run-1", len(events) + 1, number, at, tokens=tokens[number - 1], call=number % 2 == 1)
    end = T0 + timedelta(minutes=1)
    if ending == "cancelled":
        events.append(cancelled("run-1", len(events) + 1, end))
    if ending != "running":
        events.append(finished("run-1", len(events) + 1, end, "ok" if ending == "ok" else "error", steps))
    cuts = [cut for cut in cuts if cut < len(events)]
    assert _rows_batch_by_batch(events, cuts) == _rows_event_by_event(events, cuts)


def test_a_batch_that_starts_a_run_must_begin_with_run_started() -> None:
    events = step("run-1", 1, 1, T0)
    with pytest.raises(EventOrderError, match="must begin with run_started, got model_requested"):
        summarize_batch(None, events, GENESIS_HASH)
    with pytest.raises(EventOrderError, match="must begin with run_started"):
        summarize(None, events[0], GENESIS_HASH)
