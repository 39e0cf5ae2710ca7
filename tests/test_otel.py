"""OpenTelemetry export from the log: the span tree of every demo run, stable ids, live export.

Spans go through the OpenTelemetry SDK's own in-memory exporter, so what is asserted is what
any exporter would send.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel, ConfigDict

from executus import Agent, Executor, Invocation, SequentialIds, VirtualClock
from executus.events import Event, RunStarted
from executus.models import AnthropicModel, ChatAdapter, OpenAIModel
from executus.otel import (
    CAPTURE_CONTENT_ENV,
    ContentCapture,
    OtelExporter,
    content_capture_from_env,
    export_runs,
    readable_spans,
    span_id_for,
    trace_id_for,
)
from executus.redaction import PatternRule, Redactor
from executus.storage import MemoryStore
from executus.testing import ScriptedModel
from replay import Replayer
from tests._observed_runs import demo_runs, record_family, record_resumed

Outline = list[tuple[str, str, str, str | None]]


@pytest.fixture(scope="module")
def demo() -> MemoryStore:
    return demo_runs()[0]


def exported(store: MemoryStore, *run_ids: str, content: ContentCapture | None = None) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    export_runs(store, run_ids, memory, content=content or ContentCapture())
    return list(memory.get_finished_spans())


def outline(spans: Sequence[ReadableSpan]) -> Outline:
    """Each span as (name, kind, parent's name, error.type), in start order."""
    names = {span.context.span_id: span.name for span in spans}
    return [
        (
            span.name,
            span.kind.name,
            names.get(span.parent.span_id, "?") if span.parent else "-",
            str(span.attributes.get("error.type")) if "error.type" in span.attributes else None,
        )
        for span in sorted(spans, key=lambda s: (s.start_time, s.context.span_id != _root(spans)))
    ]


def _root(spans: Sequence[ReadableSpan]) -> int:
    return next(span.context.span_id for span in spans if span.parent is None)


def events_of(span: ReadableSpan) -> list[tuple[str, dict[str, object]]]:
    return [(event.name, dict(event.attributes or {})) for event in span.events]


AGENT = "invoke_agent"
CHAT = "chat fake-model"
EXPECTED: dict[str, Outline] = {
    "demo-0001": [
        (f"{AGENT} researcher", "INTERNAL", "-", None),
        (CHAT, "CLIENT", f"{AGENT} researcher", None),
        ("execute_tool search", "INTERNAL", f"{AGENT} researcher", None),
        (CHAT, "CLIENT", f"{AGENT} researcher", None),
        ("execute_tool fetch", "INTERNAL", f"{AGENT} researcher", None),
        (CHAT, "CLIENT", f"{AGENT} researcher", None),
    ],
    "demo-0002": [
        (f"{AGENT} scraper", "INTERNAL", "-", "killed"),
        (CHAT, "CLIENT", f"{AGENT} scraper", None),
        ("execute_tool fetch_page", "INTERNAL", f"{AGENT} scraper", "killed"),
    ],
    "demo-0003": [
        (f"{AGENT} summarizer", "INTERNAL", "-", "timeout"),
        (CHAT, "CLIENT", f"{AGENT} summarizer", None),
        ("execute_tool load_document", "INTERNAL", f"{AGENT} summarizer", None),
        (CHAT, "CLIENT", f"{AGENT} summarizer", "timeout"),
    ],
    "demo-0004": [
        (f"{AGENT} translator", "INTERNAL", "-", "cancelled"),
        (CHAT, "CLIENT", f"{AGENT} translator", None),
        ("execute_tool translate_chunk", "INTERNAL", f"{AGENT} translator", "cancelled"),
    ],
    "demo-0005": [
        (f"{AGENT} weather", "INTERNAL", "-", None),
        (CHAT, "CLIENT", f"{AGENT} weather", None),
        ("execute_tool get_forecast", "INTERNAL", f"{AGENT} weather", "ConnectionError"),
        (CHAT, "CLIENT", f"{AGENT} weather", None),
        ("execute_tool get_forecast", "INTERNAL", f"{AGENT} weather", None),
        (CHAT, "CLIENT", f"{AGENT} weather", None),
    ],
    "demo-0006": [
        (f"{AGENT} ui-reviewer", "INTERNAL", "-", None),
        (CHAT, "CLIENT", f"{AGENT} ui-reviewer", None),
        ("execute_tool screenshot", "INTERNAL", f"{AGENT} ui-reviewer", None),
        (CHAT, "CLIENT", f"{AGENT} ui-reviewer", None),
    ],
    "demo-0007": [
        (f"{AGENT} poller", "INTERNAL", "-", "MaxIterationsExceeded"),
        *[
            span
            for _ in range(3)
            for span in (
                (CHAT, "CLIENT", f"{AGENT} poller", None),
                ("execute_tool check_status", "INTERNAL", f"{AGENT} poller", None),
            )
        ],
    ],
}


@pytest.mark.parametrize("run_id", sorted(EXPECTED))
def test_every_demo_run_exports_its_span_tree(demo: MemoryStore, run_id: str) -> None:
    spans = exported(demo, run_id)

    assert outline(spans) == EXPECTED[run_id]
    events = demo.read_run(run_id)
    started = events[0]
    assert isinstance(started, RunStarted)
    assert {span.context.trace_id for span in spans} == {trace_id_for(run_id)}
    root = next(span for span in spans if span.parent is None)
    assert root.context.span_id == span_id_for(run_id, 1)
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == started.agent.name
    assert root.attributes["executus.run.id"] == run_id
    assert root.start_time == _ns(events[0].at)
    assert root.end_time == _ns(events[-1].at)
    assert (root.status.status_code is StatusCode.ERROR) == (root.attributes["executus.run.status"] != "ok")
    for span in spans:
        if span.kind is SpanKind.CLIENT:
            assert span.attributes["gen_ai.operation.name"] == "chat"
            assert span.attributes["gen_ai.request.model"] == "fake-model"
        elif span is not root:
            assert span.attributes["gen_ai.operation.name"] == "execute_tool"
            assert span.attributes["gen_ai.tool.name"] == span.name.removeprefix("execute_tool ")
            assert str(span.attributes["gen_ai.tool.call.id"]).startswith("call-")
        assert span.start_time is not None
        assert span.end_time is not None
        assert span.start_time <= span.end_time


def _ns(at: datetime) -> int:
    return int((at - datetime(1970, 1, 1, tzinfo=at.tzinfo)) / timedelta(microseconds=1)) * 1000


def test_model_steps_carry_usage_finish_reasons_and_their_latency(demo: MemoryStore) -> None:
    chats = [span for span in exported(demo, "demo-0001") if span.kind is SpanKind.CLIENT]
    replies = [event for event in demo.read_run("demo-0001") if event.kind == "model_responded"]

    assert [span.attributes["gen_ai.usage.input_tokens"] for span in chats] == [
        reply.usage.input_tokens for reply in replies
    ]
    assert [span.attributes["gen_ai.usage.output_tokens"] for span in chats] == [
        reply.usage.output_tokens for reply in replies
    ]
    assert [span.attributes["gen_ai.response.finish_reasons"] for span in chats] == [
        ("tool_calls",),
        ("tool_calls",),
        ("stop",),
    ]
    assert [(span.end_time or 0) - (span.start_time or 0) for span in chats] == [
        round(reply.latency * 1e9) for reply in replies
    ]


def test_critic_decisions_and_the_cancel_cause_are_span_events(demo: MemoryStore) -> None:
    root = next(span for span in exported(demo, "demo-0002") if span.parent is None)

    named = events_of(root)
    assert [name for name, _ in named] == [
        "executus.critic.decided",
        "executus.critic.decided",
        "executus.critic.decided",
        "executus.run.cancelled",
    ]
    assert [attributes["executus.critic.decision"] for _, attributes in named[:3]] == [
        "nudge",
        "extend",
        "kill",
    ]
    extend = named[1][1]
    assert extend["executus.critic.old_deadline"] < extend["executus.critic.new_deadline"]  # type: ignore[operator]
    assert named[3][1]["executus.cancel.cause"] == "critic_kill"
    assert named[3][1]["executus.cancel.in_flight"] == 1


def test_steer_injections_and_artifacts_are_span_events(demo: MemoryStore) -> None:
    root = next(span for span in exported(demo, "demo-0006") if span.parent is None)

    named = dict(events_of(root))
    assert named["executus.steer.injected"]["executus.steer.source"] == "session"
    assert named["executus.steer.injected"]["executus.steer.images"] == 1
    assert named["executus.post_run.finished"]["executus.artifacts"] == ("review.md",)


def test_a_second_export_and_a_replay_yield_the_same_spans(demo: MemoryStore) -> None:
    def identities(spans: Sequence[ReadableSpan]) -> set[tuple[int, int, int | None, int | None, int | None]]:
        return {
            (
                s.context.trace_id,
                s.context.span_id,
                s.parent.span_id if s.parent else None,
                s.start_time,
                s.end_time,
            )
            for s in spans
        }

    run_ids = sorted(EXPECTED)
    first, second = exported(demo, *run_ids), exported(demo, *run_ids)
    assert identities(first) == identities(second)
    assert len(identities(first)) == len(first)  # no two spans share an id

    replayed = Replayer(blobs=demo).replay_run(demo.read_run("demo-0002"))
    assert replayed.identical
    assert identities(readable_spans(replayed.replayed, content=ContentCapture())) == identities(
        exported(demo, "demo-0002")
    )


def test_parallel_tool_calls_are_siblings_and_a_child_run_nests_under_its_tool_call() -> None:
    store = record_family()
    spans = exported(store, "fam-0001", "fam-0002")

    assert {span.context.trace_id for span in spans} == {trace_id_for("fam-0001")}
    by_id = {span.context.span_id: span for span in spans}

    def parent_name(span: ReadableSpan) -> str:
        return by_id[span.parent.span_id].name if span.parent else "-"

    parent_tools = [
        span
        for span in spans
        if span.name.startswith("execute_tool") and span.attributes["executus.run.id"] == "fam-0001"
    ]
    assert [(s.name, parent_name(s)) for s in parent_tools] == [
        ("execute_tool lookup", "invoke_agent manager"),
        ("execute_tool delegate", "invoke_agent manager"),
    ]
    assert parent_tools[0].start_time == parent_tools[1].start_time  # side by side
    child = next(span for span in spans if span.name == "invoke_agent summariser")
    assert parent_name(child) == "execute_tool delegate"
    assert child.attributes["executus.parent_run.id"] == "fam-0001"
    assert (
        sorted(parent_name(span) for span in spans if span.name == "chat small-model")
        == ["invoke_agent summariser"] * 2
    )
    delegate = next(span for span in parent_tools if span.name == "execute_tool delegate")
    assert [name for name, _ in events_of(delegate)] == ["executus.child_run.started"]


def test_a_child_exported_without_its_parents_log_still_lands_in_a_trace_of_its_parent() -> None:
    store = record_family()
    alone = readable_spans(store.read_run("fam-0002"), content=ContentCapture())

    assert {span.context.trace_id for span in alone} == {trace_id_for("fam-0001")}
    root = next(span for span in alone if span.name == "invoke_agent summariser")
    assert root.parent is not None
    assert root.parent.span_id == span_id_for("fam-0001", 1)


def test_live_export_gives_the_spans_a_backfill_gives() -> None:
    memory = InMemorySpanExporter()
    live = OtelExporter(processor=SimpleSpanProcessor(memory), content=ContentCapture())
    store = record_family(on_event=live)
    live.shutdown()

    def comparable(spans: Sequence[ReadableSpan]) -> list[tuple[object, ...]]:
        return sorted(
            (
                s.name,
                s.context.trace_id,
                s.context.span_id,
                s.parent.span_id if s.parent else None,
                s.start_time,
                s.end_time,
                tuple(sorted(s.attributes.items())),
                tuple((e.name, e.timestamp) for e in s.events),
            )
            for s in spans
        )

    backfill = exported(store, "fam-0001", "fam-0002")
    assert comparable(memory.get_finished_spans()) == comparable(backfill)
    assert len(backfill) == 5 + 4  # each run: its own span and two chats; the parent two tools, the child one


def test_live_export_picks_up_a_run_resumed_in_another_process(demo: MemoryStore) -> None:
    memory = InMemorySpanExporter()
    live = OtelExporter(processor=SimpleSpanProcessor(memory), lookup=demo, content=ContentCapture())
    events = demo.read_run("demo-0001")
    for event in events[6:]:  # this process sees the run from seq 7 on
        live(event)

    # The spans whose closing event is seq 7 or later, with the ids the whole log gives them;
    # those closed earlier were sent by the process that recorded them.
    full = {s.context.span_id: s for s in exported(demo, "demo-0001")}
    got = {s.context.span_id: s for s in memory.get_finished_spans()}
    assert sorted(got) == sorted(span_id_for("demo-0001", seq) for seq in (1, 6, 8, 10))
    for span_id, span in got.items():
        assert (span.name, span.parent, span.start_time, span.end_time) == (
            full[span_id].name,
            full[span_id].parent,
            full[span_id].start_time,
            full[span_id].end_time,
        )


def all_attribute_text(spans: Sequence[ReadableSpan]) -> str:
    values = [str(v) for s in spans for v in s.attributes.values()]
    values += [str(v) for s in spans for e in s.events for v in (e.attributes or {}).values()]
    return "\n".join(values)


def test_message_content_is_off_unless_the_environment_opts_in(
    demo: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CAPTURE_CONTENT_ENV, raising=False)
    memory = InMemorySpanExporter()
    export_runs(demo, ["demo-0001"], memory)
    quiet = all_attribute_text(memory.get_finished_spans())
    assert "Everest" not in quiet
    assert not any(
        key.startswith(
            ("gen_ai.input", "gen_ai.output", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result")
        )
        for span in memory.get_finished_spans()
        for key in span.attributes
    )

    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "true")
    memory = InMemorySpanExporter()
    export_runs(demo, ["demo-0001"], memory)
    spans = memory.get_finished_spans()
    root = next(span for span in spans if span.parent is None)
    assert "Everest" in str(root.attributes["gen_ai.input.messages"])
    assert "71 °C" in str(root.attributes["gen_ai.output.messages"])
    search = next(span for span in spans if span.name == "execute_tool search")
    assert "boiling point" in str(search.attributes["gen_ai.tool.call.arguments"])
    assert "3 results" in str(search.attributes["gen_ai.tool.call.result"])
    # Each model step carries the chat history it was sent, in the conventions' message shape.
    second = [span for span in spans if span.kind is SpanKind.CLIENT][1]
    history = json.loads(str(second.attributes["gen_ai.input.messages"]))
    assert [message["role"] for message in history] == ["user", "assistant", "tool"]
    assert history[1]["parts"][0]["type"] == "tool_call"
    assert history[1]["parts"][0]["name"] == "search"
    assert history[2]["parts"][0]["type"] == "tool_call_response"
    assert history[2]["parts"][0]["response"].startswith("3 results")
    assert json.loads(str(second.attributes["gen_ai.output.messages"]))[0]["finish_reason"] == "tool_calls"


def test_captured_content_always_goes_through_the_redaction_hook(demo: MemoryStore) -> None:
    hidden = ContentCapture(enabled=True, redact=lambda text: text.replace("Everest", "[REDACTED]"))
    spans = exported(demo, "demo-0001", content=hidden)

    text = all_attribute_text(spans)
    assert "[REDACTED]" in text
    assert "Everest" not in text


def test_live_export_with_content_from_the_environment_never_sees_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A live exporter hears each event as the store keeps it: redacted by the executor's own
    # redactor (its user rules too), with no second pass of the exporter's.
    secret = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "true")
    assert content_capture_from_env().redact(secret) == secret  # nothing redacts twice
    memory = InMemorySpanExporter()
    live = OtelExporter(processor=SimpleSpanProcessor(memory))
    agent = Agent(name="leaky", model=ScriptedModel([f"Your key is {secret}, customer CUST-482913."]))
    redactor = Redactor(b"otel-test-key-0123456789", [PatternRule("customer_id", r"CUST-\d{6}")])
    executor = Executor(clock=VirtualClock(), ids=SequentialIds("leak"), on_event=live, redaction=redactor)
    result = executor.run_sync(agent, Invocation(), f"Remember {secret}")
    live.shutdown()

    assert result.output == f"Your key is {secret}, customer CUST-482913."  # the caller gets the real reply
    text = all_attribute_text(memory.get_finished_spans())
    assert "Your key is [REDACTED:openai_api_key:" in text
    assert "customer [REDACTED:customer_id:" in text
    assert secret not in text
    assert "CUST-482913" not in text


class _FutureEvent(BaseModel):
    """An event of a kind the exporter has no handler for (the catalogue grows)."""

    model_config = ConfigDict(frozen=True)
    run_id: str
    seq: int
    at: datetime
    kind: str
    schema_version: int = 1
    note: str = "a note"
    attempt: int = 2


def test_unknown_and_new_kinds_become_span_events_instead_of_failing(demo: MemoryStore) -> None:
    events: list[Event] = list(demo.read_run("demo-0001"))
    at = events[1].at
    future = [
        _FutureEvent(run_id="demo-0001", seq=0, at=at, kind="model_attempt_failed"),
        _FutureEvent(run_id="demo-0001", seq=0, at=at, kind="run_paused"),
    ]
    mixed = [*events[:2], *future, *events[2:]]  # type: ignore[list-item]

    spans = readable_spans(mixed, content=ContentCapture(enabled=True))

    chat = next(span for span in spans if span.kind is SpanKind.CLIENT)
    assert [(name, attributes.get("executus.attempt")) for name, attributes in events_of(chat)] == [
        ("executus.model.attempt_failed", 2)
    ]
    root = next(span for span in spans if span.parent is None)
    assert (
        "executus.run_paused",
        {"executus.event.seq": 0, "executus.note": "a note", "executus.attempt": 2},
    ) in (events_of(root))


@pytest.mark.parametrize("with_store", [True, False])
def test_a_resumed_run_exports_each_span_once_with_the_interrupted_step_marked(with_store: bool) -> None:
    memory = InMemorySpanExporter()

    def listener(store: MemoryStore) -> OtelExporter:
        lookup = store if with_store else None
        return OtelExporter(processor=SimpleSpanProcessor(memory), lookup=lookup, content=ContentCapture())

    resumed = record_resumed(listener)  # the live exporter hears only what the new process records

    backfill = exported(resumed, "run-0001")
    assert outline(backfill) == [
        ("invoke_agent slow", "INTERNAL", "-", None),
        ("chat scripted", "CLIENT", "invoke_agent slow", "interrupted"),
        ("chat scripted", "CLIENT", "invoke_agent slow", None),
    ]
    root = next(span for span in backfill if span.parent is None)
    assert [name for name, _ in events_of(root)] == ["executus.run.resumed"]
    assert events_of(root)[0][1]["executus.resume.downtime"] == 300.0
    live = sorted(span.context.span_id for span in memory.get_finished_spans())
    if with_store:  # it rebuilt the run's open spans from the log: the ids the back-fill gives
        assert live == sorted(span.context.span_id for span in backfill)
    else:  # it cannot place a run it did not see start: nothing, rather than wrong ids
        assert live == []


def spans_of_a_run_on(model_name: str) -> tuple[ReadableSpan, ReadableSpan]:
    """The run span and the chat span of a one-step run whose agent recorded ``model_name``."""
    store = MemoryStore()
    executor = Executor(store, clock=VirtualClock(datetime(2026, 3, 1, tzinfo=UTC)), ids=SequentialIds("p-"))
    agent = Agent(name="asker", model=ScriptedModel(["done"], name=model_name))
    assert executor.run_sync(agent, Invocation(), "hello").status == "ok"
    spans = exported(store, "p-0001")
    root = next(span for span in spans if span.parent is None)
    return root, next(span for span in spans if span.kind is SpanKind.CLIENT)


@pytest.mark.parametrize(
    ("adapter", "provider", "model"),
    [(OpenAIModel, "openai", "gpt-4.1-mini"), (AnthropicModel, "anthropic", "claude-sonnet-4-5")],
)
def test_a_provider_prefixed_model_gives_the_provider_and_the_bare_model_name(
    adapter: type[ChatAdapter], provider: str, model: str
) -> None:
    recorded = adapter(model, api_key="test-key").name  # what a run on this adapter records
    root, chat = spans_of_a_run_on(recorded)

    assert adapter.provider == provider
    for span in (root, chat):
        assert span.attributes["gen_ai.provider.name"] == provider
        assert span.attributes["gen_ai.request.model"] == model
    assert chat.name == f"chat {model}"
    assert chat.attributes["gen_ai.response.model"] == model


@pytest.mark.parametrize("recorded", ["fake-model", "llama3.2:8b", "ollama:llama3.2", "openai:"])
def test_a_model_of_no_known_provider_gets_no_provider_name(recorded: str) -> None:
    root, chat = spans_of_a_run_on(recorded)

    for span in (root, chat):
        assert "gen_ai.provider.name" not in span.attributes
        assert span.attributes["gen_ai.request.model"] == recorded  # a colon of its own is kept
    assert chat.name == f"chat {recorded}"
