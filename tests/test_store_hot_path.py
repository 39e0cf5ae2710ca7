"""The store writer's shortcuts give exactly what the plain definitions give.

- An event's texts (``event_json_and_body``: what its hash covers, and the body a row keeps)
  are encoded without pydantic's ``model_dump`` wrapper: they must stay byte for byte what
  ``json.dumps`` of ``model_dump(mode="json")`` gives, and what the golden cassettes hold.
- The writer folds a batch's events into the run's row at once (``summarize_batch``) rather
  than one row per event: it must give the plain per-event projection, written out here as the
  oracle, on every golden run cut into batches at every point and on generated runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executus import ToolCall, Usage
from executus._store import summarize_batch
from executus.events import (
    ErrorInfo,
    Event,
    EventOrderError,
    ModelResponded,
    RunCancelled,
    ToolFinished,
    ToolStarted,
    encode_event,
)
from executus.storage import GENESIS_HASH, RunSummary, chain_hash, event_json, event_json_and_body, summarize
from replay import load_cassette
from tests.store_events import T0, cancelled, finished, started, step

_GOLDEN = Path(__file__).parent / "golden"
_GOLDEN_FILES = sorted([*_GOLDEN.glob("*.jsonl"), *_GOLDEN.glob("v0_1_0/*.jsonl")])
GOLDEN_RUNS = {path.relative_to(_GOLDEN).as_posix(): load_cassette(path).events for path in _GOLDEN_FILES}
_ENVELOPE = ("run_id", "seq", "kind", "schema_version", "at")


def _plain_texts(event: Event) -> tuple[str, str]:
    """An event's full and body texts by their definition: the standard library's JSON encoder
    with sorted keys and no whitespace, over pydantic's ``model_dump(mode="json")``."""
    data = event.model_dump(mode="json")
    body = {key: value for key, value in data.items() if key not in _ENVELOPE}
    encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return encoder.encode(data), encoder.encode(body)


@pytest.mark.parametrize("path", _GOLDEN_FILES, ids=lambda path: path.relative_to(_GOLDEN).as_posix())
def test_every_golden_events_texts_are_its_stored_line_and_the_plain_encoding(path: Path) -> None:
    lines = set(path.read_text(encoding="utf-8").splitlines())
    for event in load_cassette(path).events:
        full, body = event_json_and_body(event)
        assert full in lines
        assert (full, body) == _plain_texts(event)
        assert encode_event(event) == event.model_dump(mode="json")


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_ARGUMENTS = st.dictionaries(st.text(max_size=8), _JSON_VALUES, max_size=5)
_ENVELOPES = st.fixed_dictionaries(
    {
        "run_id": st.text(min_size=1, max_size=20),
        "seq": st.integers(min_value=1, max_value=2**31 - 1),
        "at": st.datetimes(
            min_value=datetime(1970, 1, 2),
            max_value=datetime(9998, 12, 31),
            timezones=st.sampled_from([UTC, timezone(timedelta(hours=-9, minutes=-30))]),
        ),
    }
)
_SECONDS = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
_ERRORS = st.builds(ErrorInfo, type=st.text(max_size=10), message=st.text(max_size=30))
_EVENTS = st.one_of(
    st.builds(
        lambda envelope, call_id, name, arguments: ToolStarted(
            **envelope, call_id=call_id, name=name, arguments=arguments
        ),
        _ENVELOPES,
        st.text(max_size=10),
        st.text(max_size=10),
        _ARGUMENTS,
    ),
    st.builds(
        lambda envelope, result, error, duration: ToolFinished(
            **envelope, call_id="call-1", name="search", result=result, error=error, duration=duration
        ),
        _ENVELOPES,
        st.none() | st.text(),
        st.none() | _ERRORS,
        _SECONDS,
    ),
    st.builds(
        lambda envelope, text, arguments, tokens, latency, finish: ModelResponded(
            **envelope,
            step=1,
            text=text,
            tool_calls=tuple(
                ToolCall(id=f"call-{index}", name="search", arguments=args)
                for index, args in enumerate(arguments)
            ),
            usage=Usage(input_tokens=tokens, output_tokens=tokens // 3),
            latency=latency,
            finish_reason=finish,
        ),
        _ENVELOPES,
        st.none() | st.text(),
        st.lists(_ARGUMENTS, max_size=3),
        st.integers(min_value=0, max_value=2**40),
        _SECONDS,
        st.none() | st.text(max_size=10),
    ),
    st.builds(
        lambda envelope, detail: RunCancelled(**envelope, cause="caller", detail=detail),
        _ENVELOPES,
        st.text(),
    ),
)


@settings(max_examples=400, deadline=None)
@given(event=_EVENTS)
def test_generated_events_texts_are_the_plain_encoding(event: Event) -> None:
    assert event_json_and_body(event) == _plain_texts(event)
    assert event_json(event) == _plain_texts(event)[0]


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
