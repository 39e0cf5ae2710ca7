"""Event builders and log checks shared by the store tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from pydantic import JsonValue

from executus import ToolCall, Usage
from executus.events import (
    AgentSpec,
    ErrorInfo,
    Event,
    ModelRequested,
    ModelResponded,
    RunCancelled,
    RunFinished,
    RunStarted,
    RunStatus,
    ToolFinished,
    ToolStarted,
)
from executus.storage import (
    GENESIS_HASH,
    EventStore,
    MemoryStore,
    RunSummary,
    chain_hash,
    event_json,
    summarize,
)
from store import SqlStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def started(
    run_id: str, *, at: datetime = T0, agent: str = "librarian", caller_id: str | None = "alice"
) -> RunStarted:
    return RunStarted(
        run_id=run_id,
        seq=1,
        at=at,
        agent=AgentSpec(name=agent, model="scripted", system_prompt="Be brief.", max_iterations=5),
        input="Any books about otters?",
        caller_id=caller_id,
        executor_version="0.1.0",
    )


def step(
    run_id: str, seq: int, step: int, at: datetime, *, tokens: int = 10, call: bool = False
) -> list[Event]:
    """model_requested, model_responded and, with ``call``, one tool call: 2 or 4 events."""
    calls = (ToolCall(id=f"call-{step}", name="search", arguments={"query": "otters"}),) if call else ()
    events: list[Event] = [
        ModelRequested(
            run_id=run_id, seq=seq, at=at, step=step, fingerprint="f" * 64, message_count=2 * step
        ),
        ModelResponded(
            run_id=run_id,
            seq=seq + 1,
            at=at + timedelta(seconds=1),
            step=step,
            text=None if call else "3 books.",
            tool_calls=calls,
            usage=Usage(input_tokens=tokens, output_tokens=tokens // 2),
            latency=1.0,
        ),
    ]
    if call:
        events += [
            ToolStarted(
                run_id=run_id,
                seq=seq + 2,
                at=at + timedelta(seconds=1),
                call_id=f"call-{step}",
                name="search",
            ),
            ToolFinished(
                run_id=run_id,
                seq=seq + 3,
                at=at + timedelta(seconds=2),
                call_id=f"call-{step}",
                name="search",
                result="3 books",
                duration=1.0,
            ),
        ]
    return events


def finished(run_id: str, seq: int, at: datetime, status: RunStatus = "ok", steps: int = 1) -> RunFinished:
    return RunFinished(
        run_id=run_id,
        seq=seq,
        at=at,
        status=status,
        output="3 books." if status == "ok" else None,
        error=None if status == "ok" else ErrorInfo(type=status, message=f"ended as {status}"),
        steps=steps,
        duration=(at - T0).total_seconds(),
    )


def cancelled(run_id: str, seq: int, at: datetime) -> RunCancelled:
    return RunCancelled(run_id=run_id, seq=seq, at=at, cause="caller", detail="the user pressed ^C")


def run_events(
    run_id: str,
    *,
    at: datetime = T0,
    agent: str = "librarian",
    caller_id: str | None = "alice",
    steps: int = 2,
    status: RunStatus | None = "ok",
) -> list[Event]:
    """A whole run: started, ``steps`` steps (all but the last call a tool), then finished
    with ``status`` (None: still running)."""
    events: list[Event] = [started(run_id, at=at, agent=agent, caller_id=caller_id)]
    for number in range(1, steps + 1):
        events += step(
            run_id, len(events) + 1, number, at + timedelta(seconds=10 * number), call=number < steps
        )
    if status is not None:
        end = at + timedelta(seconds=10 * steps + 5)
        if status != "ok":
            events.append(cancelled(run_id, len(events) + 1, end))
        events.append(finished(run_id, len(events) + 1, end, status, steps))
    return events


def unusual_run(run_id: str) -> list[Event]:
    """A run whose text is not ASCII and whose numbers are floats that print awkwardly."""
    arguments: dict[str, JsonValue] = {
        "query": "Bücher über Otter — 東京 🦦",
        "quote": 'he said "\\n" \u2028 and left\n',
        "ratio": 0.1 + 0.2,
        "tiny": 1e-7,
        "huge": 1e22,
        "negative_zero": -0.0,
        "count": 2**60,
        "nested": {"ü": [1.5, None, True, {"kind": "not the envelope", "seq": 99}]},
    }
    call = ToolCall(id="call-ü", name="search", arguments=arguments)
    return [
        started(run_id).model_copy(update={"input": "Gibt es Bücher über Otter? 🦦"}),
        ModelResponded(
            run_id=run_id,
            seq=2,
            at=T0 + timedelta(seconds=1, microseconds=250),
            step=1,
            text="Ja — ich suche.",
            tool_calls=(call,),
            latency=1 / 3,
        ),
        ToolStarted(
            run_id=run_id,
            seq=3,
            at=T0 + timedelta(seconds=1.5),
            call_id=call.id,
            name="search",
            arguments=arguments,
        ),
        ToolFinished(
            run_id=run_id,
            seq=4,
            at=T0 + timedelta(seconds=2),
            call_id=call.id,
            name="search",
            result="3 Bücher: «Otter», 『かわうそ』",
            duration=2.5e-05,
        ),
    ]


def record(store: EventStore, events: Sequence[Event]) -> None:
    """Append a run's events one by one, as the executor does."""
    for event in events:
        store.append(event.run_id, [event], event.seq - 1)


def fold(events: Iterable[Event]) -> RunSummary | None:
    """The summary the events imply, computed exactly as every store must."""
    summary, head = None, GENESIS_HASH
    for event in events:
        head = chain_hash(head, event_json(event))
        summary = summarize(summary, event, head)
    return summary


def hashes_of(store: EventStore, run_id: str) -> list[str]:
    """The stored hash chain of a run, from whichever backend."""
    if isinstance(store, MemoryStore):
        return store.hashes(run_id)
    assert isinstance(store, SqlStore)
    return [stored.hash for stored in store.records(run_id)]


def expected_hashes(events: Iterable[Event]) -> list[str]:
    hashes, head = [], GENESIS_HASH
    for event in events:
        head = chain_hash(head, event_json(event))
        hashes.append(head)
    return hashes
