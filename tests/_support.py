"""Shared helpers for the core tests: record a run on a virtual clock and check its fold."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executus import Agent, Executor, Invocation, Result, SequentialIds, VirtualClock
from executus.events import Event, rebuild
from executus.storage import EventStore, MemoryStore

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class CountingStore(MemoryStore):
    """A memory store that remembers the kinds of each appended batch (one per transaction)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def append(
        self, run_id: str, events: Sequence[Event], expected_seq: int, *, epoch: int | None = None
    ) -> None:
        super().append(run_id, events, expected_seq, epoch=epoch)
        self.batches.append([event.kind for event in events])


@dataclass
class Recorded:
    result: Result
    events: list[Event]
    executor: Executor

    @property
    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    def of_kind(self, kind: str) -> list[Any]:
        return [event for event in self.events if event.kind == kind]


def new_executor(**kwargs: Any) -> Executor:
    kwargs.setdefault("clock", VirtualClock(START))
    kwargs.setdefault("ids", SequentialIds())
    return Executor(MemoryStore(), **kwargs)


def record(
    agent: Agent,
    input: str = "go",
    invocation: Invocation | None = None,
    executor: Executor | None = None,
    *,
    around: Callable[[Coroutine[Any, Any, Result]], Coroutine[Any, Any, Result]] | None = None,
) -> Recorded:
    """Run ``agent`` on a virtual clock and check that rebuilding its log gives the live state."""
    executor = executor or new_executor()
    coroutine = executor.run(agent, invocation, input)
    result = executor.clock.run(around(coroutine) if around else coroutine)
    events = executor.store.read_run(result.run_id)
    assert rebuild(events) == result.state, "the fold of the log differs from the executor's own state"
    return Recorded(result, events, executor)


def offsets(recorded: Recorded) -> list[tuple[float, str]]:
    """Each event as (seconds since the run started, kind): the run's timeline."""
    start = recorded.events[0].at
    return [((event.at - start).total_seconds(), event.kind) for event in recorded.events]


def store_goldens(event_store: EventStore, *names: str) -> None:
    """Store the runs of golden cassettes ``tests/golden/<name>.jsonl`` as ``<name>-run``."""
    from replay import load_cassette

    for name in names:
        cassette = load_cassette(Path(__file__).parent / "golden" / f"{name}.jsonl")
        events = [event.model_copy(update={"run_id": f"{name}-run"}) for event in cassette.events]
        for blob in cassette.blobs:
            event_store.put_blob(blob.data, blob.media_type)
        event_store.append(f"{name}-run", events, 0)
