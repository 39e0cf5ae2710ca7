"""The fold (apply/rebuild) and the event codec: order checks, upcasting, refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from _support import START, record

from executus import Agent
from executus._messages import AssistantMessage, ToolCall, ToolMessage, trusted
from executus.events import (
    EventOrderError,
    ModelResponded,
    SchemaVersionError,
    UnknownEventError,
    apply,
    decode_event,
    encode_event,
    rebuild,
)
from executus.testing import ScriptedModel


def _events() -> list:  # type: ignore[type-arg]
    return record(Agent("a", ScriptedModel(["hello"]))).events


def test_every_event_round_trips_through_its_stored_form() -> None:
    events = _events()
    assert [decode_event(encode_event(event)) for event in events] == events


def test_rebuild_refuses_a_gap_in_the_sequence() -> None:
    events = _events()
    with pytest.raises(EventOrderError, match="expected seq 3, got 4"):
        rebuild([events[0], events[1], events[3]])


def test_rebuild_refuses_a_log_that_does_not_begin_with_run_started() -> None:
    with pytest.raises(EventOrderError, match="must begin with run_started"):
        rebuild(_events()[1:])


def test_apply_refuses_events_after_run_finished() -> None:
    events = _events()
    state = rebuild(events)
    late = events[1].model_copy(update={"seq": len(events) + 1})
    with pytest.raises(EventOrderError, match="after run_finished"):
        apply(state, late)


def test_apply_refuses_an_event_of_another_run() -> None:
    events = _events()
    stray = events[1].model_copy(update={"run_id": "someone-else"})
    with pytest.raises(EventOrderError, match="belongs to run someone-else"):
        rebuild([events[0], stray])


def test_unknown_kind_and_newer_schema_are_refused_with_clear_errors() -> None:
    data = encode_event(_events()[0])
    with pytest.raises(UnknownEventError, match="unknown event kind 'run_paused'"):
        decode_event({**data, "kind": "run_paused"})
    with pytest.raises(SchemaVersionError, match=r"schema version 7.*upgrade executus"):
        decode_event({**data, "schema_version": 7})


def test_a_v0_model_responded_row_is_upcast_to_the_current_version() -> None:
    v0_row = {
        "kind": "model_responded",
        "schema_version": 0,
        "run_id": "old-run",
        "seq": 3,
        "at": "2025-06-01T12:00:00Z",
        "step": 1,
        "text": "hi",
        "tool_calls": [],
        "usage": {"input_tokens": 10, "output_tokens": 2},
        "latency_ms": 1250,
    }
    event = decode_event(v0_row)
    assert isinstance(event, ModelResponded)
    assert (event.latency, event.schema_version, event.text) == (1.25, 1, "hi")


def test_fingerprint_changes_with_the_system_prompt_and_nothing_else_equal() -> None:
    first = record(Agent("a", ScriptedModel(["x"]), "prompt one")).of_kind("model_requested")[0]
    same = record(Agent("a", ScriptedModel(["x"]), "prompt one")).of_kind("model_requested")[0]
    other = record(Agent("a", ScriptedModel(["x"]), "prompt two")).of_kind("model_requested")[0]
    assert first.fingerprint == same.fingerprint != other.fingerprint


def test_state_tracks_deadline_and_idle_time_from_events_alone() -> None:
    state = rebuild(record(Agent("a", ScriptedModel(["x"]), max_runtime=30)).events)
    assert state.deadline == START + timedelta(seconds=30)
    assert state.last_activity_at == START
    assert (state.status, state.output, state.steps) == ("ok", "x", 1)


def test_messages_a_fold_builds_without_validation_equal_validated_ones() -> None:
    calls = (ToolCall(id="c1", name="lookup", arguments={"q": "otters"}),)
    folded = [
        trusted(ToolMessage, call_id="c1", name="lookup", content="found"),
        trusted(AssistantMessage, text=None, tool_calls=calls),
    ]
    validated = [
        ToolMessage(call_id="c1", name="lookup", content="found"),
        AssistantMessage(text=None, tool_calls=calls),
    ]
    assert folded == validated
    assert [m.model_dump_json() for m in folded] == [m.model_dump_json() for m in validated]
    assert repr(folded[0]) == repr(validated[0])
    assert folded[0].model_fields_set == {"call_id", "name", "content"}
    with pytest.raises(TypeError, match="ToolMessage needs content"):
        trusted(ToolMessage, call_id="c1", name="lookup")
    with pytest.raises(TypeError, match=r"ToolMessage has no field \['colour'\]"):
        trusted(ToolMessage, call_id="c1", name="lookup", content="found", colour="red")


def test_the_fingerprints_hand_built_message_data_is_pydantics_dump() -> None:
    from executus import (
        AssistantMessage,
        ImagePart,
        SystemMessage,
        TextPart,
        ToolCall,
        ToolMessage,
        UserMessage,
    )
    from executus._state import message_data

    messages = [
        SystemMessage(content="be brief"),
        UserMessage(parts=(TextPart(text="hi"), ImagePart(media_type="image/png", sha256="ab" * 32, size=3))),
        UserMessage(parts=(TextPart(text="nudge"),), source="critic"),
        AssistantMessage(
            text=None, tool_calls=(ToolCall(id="c1", name="f", arguments={"a": [1, {"b": None}]}),)
        ),
        AssistantMessage(text="done"),
        ToolMessage(call_id="c1", name="f", content="error: x", is_error=True),
    ]
    assert [message_data(message) for message in messages] == [m.model_dump(mode="json") for m in messages]
