"""The built-in demo records seven runs that cover every status, on virtual time."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from executus import SequentialIds, VirtualClock
from executus.cli._demo import DEMO_CALLER, DemoRun, record_demo
from executus.events import rebuild
from executus.storage import MemoryStore

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def recorded() -> tuple[MemoryStore, list[DemoRun]]:
    store = MemoryStore()
    return store, record_demo(store, VirtualClock(START), SequentialIds("demo-"))


def kinds(store: MemoryStore, run_id: str) -> list[str]:
    return [event.kind for event in store.read_run(run_id)]


def test_the_demo_covers_every_status(recorded: tuple[MemoryStore, list[DemoRun]]) -> None:
    _, runs = recorded
    assert [(run.result.run_id, run.result.status) for run in runs] == [
        ("demo-0001", "ok"),
        ("demo-0002", "killed"),
        ("demo-0003", "timeout"),
        ("demo-0004", "cancelled"),
        ("demo-0005", "ok"),
        ("demo-0006", "ok"),
        ("demo-0007", "error"),
    ]
    assert all(run.scenario for run in runs)


def test_every_demo_log_folds_to_its_result(recorded: tuple[MemoryStore, list[DemoRun]]) -> None:
    store, runs = recorded
    for run in runs:
        state = rebuild(store.read_run(run.result.run_id))
        assert state.status == run.result.status
        assert state.caller_id == DEMO_CALLER


def test_the_research_run_calls_two_tools_then_answers(recorded: tuple[MemoryStore, list[DemoRun]]) -> None:
    store, _ = recorded
    events = store.read_run("demo-0001")
    assert [event.name for event in events if event.kind == "tool_started"] == ["search", "fetch"]
    assert events[-1].kind == "run_finished"
    assert "71 °C" in (events[-1].output or "")


def test_the_stalled_run_is_nudged_extended_then_killed(recorded: tuple[MemoryStore, list[DemoRun]]) -> None:
    store, runs = recorded
    assert kinds(store, "demo-0002") == [
        "run_started",
        "model_requested",
        "model_responded",
        "tool_started",
        "critic_decided",
        "critic_decided",
        "critic_decided",
        "run_cancelled",
        "run_finished",
    ]
    decisions = [event for event in store.read_run("demo-0002") if event.kind == "critic_decided"]
    assert [decision.decision for decision in decisions] == ["nudge", "extend", "kill"]
    extend = decisions[1]
    assert extend.new_deadline is not None
    assert extend.old_deadline is not None
    assert extend.new_deadline - extend.old_deadline == timedelta(minutes=2)
    # Minutes of virtual idleness, with realistic timestamps.
    assert runs[1].result.duration == pytest.approx(390.0)
    assert decisions[0].idle_seconds > 120


def test_the_timeout_run_is_stopped_at_its_max_runtime(recorded: tuple[MemoryStore, list[DemoRun]]) -> None:
    store, runs = recorded
    cancelled = next(event for event in store.read_run("demo-0003") if event.kind == "run_cancelled")
    assert cancelled.cause == "timeout"
    assert [item.kind for item in cancelled.in_flight] == ["model"]
    assert runs[2].result.duration == pytest.approx(30.0)


def test_the_caller_cancels_the_translation_mid_tool(recorded: tuple[MemoryStore, list[DemoRun]]) -> None:
    store, _ = recorded
    cancelled = next(event for event in store.read_run("demo-0004") if event.kind == "run_cancelled")
    assert (cancelled.cause, cancelled.detail) == ("caller", "the user closed the chat window")
    assert [item.name for item in cancelled.in_flight] == ["translate_chunk"]


def test_the_weather_model_recovers_from_a_raising_tool(recorded: tuple[MemoryStore, list[DemoRun]]) -> None:
    store, _ = recorded
    finished = [event for event in store.read_run("demo-0005") if event.kind == "tool_finished"]
    assert finished[0].error is not None
    assert finished[0].error.type == "ConnectionError"
    assert finished[1].error is None


def test_the_session_attaches_an_image_and_leaves_an_artifact(
    recorded: tuple[MemoryStore, list[DemoRun]],
) -> None:
    store, runs = recorded
    events = store.read_run("demo-0006")
    steer = next(event for event in events if event.kind == "steer_injected")
    image = steer.messages[0].images[0]
    assert store.get_blob(image.sha256).data.startswith(b"\x89PNG\r\n\x1a\n")
    post_run = next(event for event in events if event.kind == "post_run_finished")
    assert [artifact.name for artifact in post_run.artifacts] == ["review.md"]
    assert runs[5].result.artifacts[0].data.startswith(b"# UI review")


def test_the_poller_exceeds_its_max_iterations(recorded: tuple[MemoryStore, list[DemoRun]]) -> None:
    _, runs = recorded
    error = runs[6].result.error
    assert error is not None
    assert error.type == "MaxIterationsExceeded"
    assert runs[6].result.steps == 3


def test_runs_follow_one_another_on_the_virtual_clock(recorded: tuple[MemoryStore, list[DemoRun]]) -> None:
    store, runs = recorded
    starts = [store.get_run(run.result.run_id).started_at for run in runs]
    assert starts[0] == START
    assert starts == sorted(starts)
    assert all(later > earlier for earlier, later in itertools.pairwise(starts))
