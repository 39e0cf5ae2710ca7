"""The event-store contract, run against every backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_events import T0, expected_hashes, finished, fold, hashes_of, record, run_events, started, step

from executus import Agent, Executor, RunNotFoundError, SequentialIds, SystemClock, VirtualClock, tool
from executus.events import Event, EventOrderError, RunStatus, rebuild
from executus.storage import (
    BlobNotFoundError,
    ConcurrencyError,
    EventStore,
    MemoryStore,
    RunQuery,
    event_json,
)
from executus.testing import ScriptedModel, call, hang


def test_appended_events_read_back_in_order(store: EventStore) -> None:
    events = run_events("run-1")
    record(store, events)
    assert store.read_run("run-1") == events
    assert store.read_run("run-1", after_seq=3) == events[3:]
    assert store.read_run("run-1", after_seq=len(events)) == []


def test_a_batch_is_appended_whole(store: EventStore) -> None:
    events = run_events("run-1")
    store.append("run-1", events[:3], 0)
    store.append("run-1", events[3:], 3)
    assert store.read_run("run-1") == events
    assert store.get_run("run-1") == fold(events)


def test_unknown_run_is_not_found_with_suggestions(store: EventStore) -> None:
    record(store, run_events("run-0001"))
    record(store, run_events("other"))
    with pytest.raises(RunNotFoundError) as raised:
        store.read_run("run-")
    assert raised.value.run_id == "run-"
    assert raised.value.suggestions == ["run-0001"]
    with pytest.raises(RunNotFoundError):
        store.get_run("run-")


def test_stale_expected_seq_raises_and_writes_nothing(store: EventStore) -> None:
    events = run_events("run-1")
    store.append("run-1", events[:2], 0)
    before = store.get_run("run-1")
    for stale in (0, 1, 5):
        with pytest.raises(ConcurrencyError) as raised:
            store.append("run-1", [events[2].model_copy(update={"seq": stale + 1})], stale)
        assert (raised.value.run_id, raised.value.expected_seq, raised.value.actual_seq) == (
            "run-1",
            stale,
            2,
        )
        assert "run-1" in str(raised.value)
    assert store.read_run("run-1") == events[:2]
    assert store.get_run("run-1") == before


def test_two_writers_racing_for_one_run_exactly_one_wins(store: EventStore) -> None:
    """Two executors that both believe the run ends at seq 3 each append seq 4."""
    events = run_events("run-1", steps=2)
    store.append("run-1", events[:3], 0)
    winner = [events[3]]
    loser = [finished("run-1", 4, T0 + timedelta(minutes=9), "error")]
    store.append("run-1", winner, 3)
    with pytest.raises(ConcurrencyError) as raised:
        store.append("run-1", loser, 3)
    assert raised.value.actual_seq == 4
    assert store.read_run("run-1") == events[:4]
    assert store.get_run("run-1") == fold(events[:4])


def test_a_refused_batch_leaves_nothing(store: EventStore) -> None:
    events = run_events("run-1")
    with pytest.raises(EventOrderError):  # a new run must begin with run_started
        store.append("run-1", events[1:3], 0)
    with pytest.raises(RunNotFoundError):
        store.read_run("run-1")
    store.append("run-1", events[:2], 0)
    gap = [events[2], events[4]]
    with pytest.raises(EventOrderError):
        store.append("run-1", gap, 2)
    wrong_run = [events[2], events[3].model_copy(update={"run_id": "run-2"})]
    with pytest.raises(EventOrderError):
        store.append("run-1", wrong_run, 2)
    assert store.read_run("run-1") == events[:2]
    assert store.get_run("run-1") == fold(events[:2])
    assert [summary.run_id for summary in store.list_runs()] == ["run-1"]


def test_an_empty_batch_changes_nothing(store: EventStore) -> None:
    store.append("run-1", [], 0)
    with pytest.raises(RunNotFoundError):
        store.get_run("run-1")
    record(store, run_events("run-1", status=None))
    before = store.get_run("run-1")
    store.append("run-1", [], before.last_seq)
    assert store.get_run("run-1") == before


def test_hash_chain_is_continuous_and_reproducible(store: EventStore) -> None:
    """Importing the same events anywhere gives the same chain as the in-memory store."""
    events = run_events("run-1", steps=3)
    reference = MemoryStore()
    record(reference, events)
    store.append("run-1", events[:4], 0)
    record(store, events[4:])
    hashes = hashes_of(store, "run-1")
    assert hashes == reference.hashes("run-1") == expected_hashes(events)
    assert store.get_run("run-1").head_hash == hashes[-1]


def test_an_event_at_in_another_zone_is_kept_as_the_same_instant_in_utc(store: EventStore) -> None:
    """Validation puts ``at`` in UTC; an unvalidated copy in another zone is hashed as UTC too,
    so every store can rebuild the exact text it hashed."""
    plus_five = timezone(timedelta(hours=5, minutes=30))
    first = started("run-1", at=T0.astimezone(plus_five))  # validated: converted to UTC
    assert first.at == T0
    assert first.at.utcoffset() == timedelta(0)
    events: list[Event] = [first]
    for event in run_events("run-1")[1:]:  # copied without validation: still +05:30
        events.append(event.model_copy(update={"at": event.at.astimezone(plus_five)}))
    record(store, events)
    stored = store.read_run("run-1")
    assert stored == events  # aware datetimes compare by instant
    if not isinstance(store, MemoryStore):  # which keeps the very objects it was given
        assert {event.at.utcoffset() for event in stored} == {timedelta(0)}
    assert [event_json(event) for event in stored] == [event_json(event) for event in events]
    assert '"at":"2026-01-01T00:00:00Z"' in event_json(events[0])
    assert hashes_of(store, "run-1") == expected_hashes(run_events("run-1"))


@st.composite
def runs_in_batches(draw: st.DrawFn) -> tuple[list[Event], list[int]]:
    steps = draw(st.integers(min_value=0, max_value=4))
    statuses: list[RunStatus | None] = [None, "ok", "error", "timeout", "cancelled", "killed"]
    status = draw(st.sampled_from(statuses))
    events = run_events("run-x", steps=steps, status=status)
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=len(events)), max_size=len(events))))
    return events, [*cuts, len(events)]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=runs_in_batches(), number=st.integers(min_value=0, max_value=10**9))
def test_projection_always_equals_what_the_events_imply(
    store: EventStore, case: tuple[list[Event], list[int]], number: int
) -> None:
    events, cuts = case
    run_id = f"run-{number}-{len(events)}-{'-'.join(map(str, cuts))}"
    if any(summary.run_id == run_id for summary in store.list_runs(RunQuery(limit=None))):
        return  # hypothesis repeated an example on the same store
    events = [event.model_copy(update={"run_id": run_id}) for event in events]
    done = 0
    for cut in cuts:
        if cut > done:
            store.append(run_id, events[done:cut], done)
            assert store.get_run(run_id) == fold(store.read_run(run_id)) == fold(events[:cut])
            done = cut
    assert store.read_run(run_id) == events
    assert store.list_runs(RunQuery(agent="librarian", limit=None)).count(store.get_run(run_id)) == 1


def test_list_runs_filters_and_orders_newest_first(store: EventStore) -> None:
    hour = timedelta(hours=1)
    plan: list[tuple[str, datetime, str, str | None, RunStatus | None]] = [
        ("r1", T0, "librarian", "alice", "ok"),
        ("r2", T0 + hour, "librarian", "bob", "error"),
        ("r3", T0 + 2 * hour, "critic", "alice", None),
        ("r4", T0 + 3 * hour, "librarian", None, "killed"),
        ("r5", T0 + 3 * hour, "critic", "bob", "ok"),  # same start as r4: ties by run id
    ]
    for run_id, at, agent, caller, status in plan:
        record(store, run_events(run_id, at=at, agent=agent, caller_id=caller, status=status))

    def ids(**filters: object) -> list[str]:
        return [summary.run_id for summary in store.list_runs(RunQuery(**filters))]  # type: ignore[arg-type]

    assert ids() == ["r5", "r4", "r3", "r2", "r1"]
    assert ids(limit=2) == ["r5", "r4"]
    assert ids(limit=None) == ["r5", "r4", "r3", "r2", "r1"]
    assert ids(status="ok") == ["r5", "r1"]
    assert ids(status="running") == ["r3"]
    assert ids(agent="critic") == ["r5", "r3"]
    assert ids(caller_id="alice") == ["r3", "r1"]
    assert ids(since=T0 + hour) == ["r5", "r4", "r3", "r2"]
    assert ids(until=T0 + 2 * hour) == ["r2", "r1"]
    assert ids(since=T0 + hour, until=T0 + 3 * hour, agent="librarian") == ["r2"]
    assert ids(status="cancelled") == []
    killed = store.get_run("r4")
    assert (killed.status, killed.caller_id, killed.end_cause) == (
        "killed",
        None,
        "caller: the user pressed ^C",
    )
    assert killed.finished_at is not None
    assert killed.finished_at.utcoffset() == timedelta(0)
    assert store.list_runs(RunQuery(status="killed")) == [killed]


def test_blobs_are_stored_once_by_content(store: EventStore) -> None:
    data = bytes(range(256)) * 3
    digest = store.put_blob(data, "image/png")
    assert store.put_blob(data, "image/png") == digest
    assert len(digest) == 64
    blob = store.get_blob(digest)
    assert (blob.sha256, blob.media_type, blob.data) == (digest, "image/png", data)
    empty = store.put_blob(b"", "application/octet-stream")
    assert store.get_blob(empty).data == b""
    with pytest.raises(BlobNotFoundError):
        store.get_blob("0" * 64)


@tool
def search(query: str) -> str:
    """Search the catalogue.

    Args:
        query: words to look for.
    """
    return f"3 books about {query}"


def librarian(*script: object) -> Agent:
    return Agent(name="librarian", model=ScriptedModel(script), tools=[search], max_runtime=600)  # type: ignore[arg-type]


def test_an_executor_run_is_recorded_and_rebuilds(store: EventStore) -> None:
    executor = Executor(store, clock=VirtualClock(T0), ids=SequentialIds())
    agent = librarian(call("search", query="otters"), "There are 3 books about otters.")
    result = executor.run_sync(agent, None, "Any books about otters?")
    assert (result.status, result.output) == ("ok", "There are 3 books about otters.")
    events = store.read_run(result.run_id)
    assert [event.kind for event in events] == [
        "run_started",
        "model_requested",
        "model_responded",
        "tool_started",
        "tool_finished",
        "model_requested",
        "model_responded",
        "run_finished",
    ]
    state = rebuild(events)
    assert (state.status, state.output, state.steps) == ("ok", result.output, 2)
    summary = store.get_run(result.run_id)
    assert summary == fold(events)
    assert (summary.status, summary.steps, summary.input_tokens) == ("ok", 2, result.usage.input_tokens)


def test_ten_concurrent_runs_on_one_event_loop(store: EventStore) -> None:
    executor = Executor(store, clock=SystemClock(), ids=SequentialIds())

    async def main() -> list[str]:
        runs = [
            executor.run(
                librarian(hang(0.01), call("search", query=f"q{n}"), hang(0.01), f"answer {n}"),
                None,
                f"question {n}",
            )
            for n in range(10)
        ]
        return [result.output or "" for result in await asyncio.gather(*runs)]

    assert asyncio.run(main()) == [f"answer {n}" for n in range(10)]
    summaries = store.list_runs(RunQuery(limit=None))
    assert len(summaries) == 10
    for summary in summaries:
        events = store.read_run(summary.run_id)
        assert [event.seq for event in events] == list(range(1, 9))
        assert summary == fold(events)
        assert summary.status == "ok"
        assert hashes_of(store, summary.run_id) == expected_hashes(events)


def test_first_event_must_start_the_run(store: EventStore) -> None:
    with pytest.raises(EventOrderError):
        store.append("run-1", step("run-1", 1, 1, T0), 0)
    record(store, [started("run-1")])
    assert store.get_run("run-1").status == "running"
