"""Streamed replies on virtual time: how deltas are batched into ``model_chunk`` events (by time
on the run's clock, by size, before any other input), what the core refuses, and replay."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from executus import Agent, Executor, Invocation, ModelSettings, SequentialIds, VirtualClock, tool
from executus._core import CoreState, decide
from executus._inputs import ModelChunksArrived
from executus.events import ModelChunk, rebuild
from executus.forensics import explain
from executus.storage import MemoryStore
from executus.testing import ScriptedModel, call
from replay import Replayer
from replay._compare import compare
from replay._recording import Recording

START = datetime(2026, 1, 1, tzinfo=UTC)
FORTY = "0123456789" * 4


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def record(model: ScriptedModel, **agent_options: object) -> tuple[MemoryStore, str]:
    store = MemoryStore()
    agent = Agent(
        name="streamer", model=model, tools=[add], model_settings=ModelSettings(stream=True), **agent_options
    )  # type: ignore[arg-type]
    executor = Executor(store, clock=VirtualClock(START), ids=SequentialIds("run-"), redaction=None)
    result = executor.run_sync(agent, Invocation(), "go")
    return store, result.run_id


def chunk_events(store: MemoryStore, run_id: str) -> list[ModelChunk]:
    return [event for event in store.read_run(run_id) if isinstance(event, ModelChunk)]


def offset(event: ModelChunk) -> float:
    return round((event.at - START).total_seconds(), 6)


def test_a_slow_stream_is_recorded_every_flush_interval_on_the_run_clock() -> None:
    # Deltas of 4 characters at 0, 0.15, 0.3, … 1.35 s; a batch is recorded 0.5 s after its first.
    store, run_id = record(ScriptedModel([FORTY], chunk_delay=0.15))

    recorded = chunk_events(store, run_id)

    assert (
        [(offset(c), c.text) for c in recorded]
        == [
            (0.5, FORTY[:16]),  # the deltas of 0 to 0.45 s, recorded 0.5 s after the first
            (1.1, FORTY[16:32]),  # 0.6 s + 0.5 s
            (1.35, FORTY[32:]),  # the stream ended
        ]
    )
    assert [event.kind for event in store.read_run(run_id)][-3:] == [
        "model_chunk",
        "model_responded",
        "run_finished",
    ]


def test_a_fast_stream_is_recorded_every_so_many_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("executus._streaming.FLUSH_CHARACTERS", 10)

    store, run_id = record(ScriptedModel([FORTY]))

    assert [c.text for c in chunk_events(store, run_id)] == [
        FORTY[:12],
        FORTY[12:24],
        FORTY[24:36],
        FORTY[36:],
    ]


def test_what_arrived_before_the_deadline_is_recorded_before_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("executus._streaming.FLUSH_SECONDS", 3600.0)  # only the deadline flushes

    store, run_id = record(ScriptedModel([FORTY], chunk_delay=0.15), max_runtime=0.5)

    events = store.read_run(run_id)
    assert [event.kind for event in events] == [
        "run_started",
        "model_requested",
        "model_chunk",
        "run_cancelled",
        "run_finished",
    ]
    assert events[2].text == FORTY[:16]  # the deltas of 0 to 0.45 s
    assert events[3].cause == "timeout"
    assert rebuild(events).status == "timeout"


def test_tool_calls_stream_as_fragments_and_the_run_replays() -> None:
    store, run_id = record(ScriptedModel([call("add", a=1, b=2), "It is 3."]))

    recorded = chunk_events(store, run_id)
    fragments = recorded[0].tool_calls
    assert [(f.index, f.id, f.name) for f in fragments] == [(0, "call-1", "add")]
    assert fragments[0].arguments == '{"a": 1, "b": 2}'
    assert recorded[1].text == "It is 3."
    replayed = Replayer(blobs=store).replay_run(store.read_run(run_id))
    assert replayed.divergence is None, replayed.divergence
    assert [e.kind for e in replayed.replayed] == [e.kind for e in store.read_run(run_id)]


def test_a_reply_that_streamed_differently_diverges_at_its_first_chunk() -> None:
    store, run_id = record(ScriptedModel(["It is 3."]))
    other_store, other_id = record(ScriptedModel(["It is 4."]))

    compared = compare(
        Recording.of(store.read_run(run_id)),
        tuple(other_store.read_run(other_id)),
        agent_under_test=False,
        what_if_critic=False,
        tolerance=0.01,
    )

    assert compared.divergence is not None
    assert compared.divergence.seq == 3
    assert compared.divergence.expected is not None
    assert compared.divergence.expected.kind == "model_chunk"
    assert [(d.path, d.expected, d.actual) for d in compared.divergence.differences] == [
        ("text", "It is 3.", "It is 4.")
    ]


def test_the_core_records_no_chunk_for_a_step_nobody_waits_for() -> None:
    store, run_id = record(ScriptedModel(["done"]))
    state = rebuild(store.read_run(run_id)[:2])  # the model was asked for step 1
    core = CoreState(run_id, run=state)
    at = state.last_event_at

    stale = decide(core, ModelChunksArrived(at=at, step=2, text="late", tool_calls=()))
    current = decide(core, ModelChunksArrived(at=at, step=1, text="on time", tool_calls=()))

    assert stale.events == []
    assert stale.effects == []
    assert [event.kind for event in current.events] == ["model_chunk"]
    assert current.effects == []
    assert core.run is not None
    assert core.run.pending_model is not None
    assert core.run.pending_model.streamed_text == ["on time"]


def test_why_says_what_had_streamed_when_the_run_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("executus._streaming.FLUSH_SECONDS", 3600.0)
    store, run_id = record(ScriptedModel([FORTY], chunk_delay=0.15), max_runtime=0.5)

    explanation = explain(store.read_run(run_id), now=START)

    (statement,) = explanation.section("in_flight")
    assert statement.text.endswith(
        f"never answered: it had been waiting 0.5s when the run stopped, after 16 characters of text "
        f"had streamed, ending “{FORTY[:16]}”."
    )
    assert statement.seqs == (2, 3, 4)  # requested, the chunk, the cancel
