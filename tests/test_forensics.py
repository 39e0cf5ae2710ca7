"""`explain` says how and why a run ended from its log alone, citing the seq of each event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from executus import (
    Agent,
    Executor,
    IdleCritic,
    Invocation,
    Ladder,
    SequentialIds,
    VirtualClock,
    kill,
    raise_steps,
)
from executus._forensics import Explanation, explain, format_duration
from executus.cli._demo import record_demo
from executus.events import EventOrderError
from executus.storage import MemoryStore
from executus.testing import ScriptedModel, hang

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo_store() -> MemoryStore:
    store = MemoryStore()
    record_demo(store, VirtualClock(START), SequentialIds("demo-"))
    return store


def why(store: MemoryStore, run_id: str) -> Explanation:
    return explain(store.read_run(run_id))


def texts(explanation: Explanation, section: str) -> list[str]:
    return [statement.text for statement in explanation.section(section)]  # type: ignore[arg-type]


def test_the_killed_run_is_explained_with_every_statement_citing_its_events(demo_store: MemoryStore) -> None:
    explanation = why(demo_store, "demo-0002")
    assert explanation.headline == "Run demo-0002 (scraper) was killed after 6m30s."
    assert [(s.section, s.text, s.seqs) for s in explanation.statements] == [
        (
            "outcome",
            "It started at 2026-03-01 09:00:10 UTC with input “Extract the revenue table from the Q3 "
            "report.”, for caller demo.",
            (1,),
        ),
        (
            "outcome",
            "The critic killed the run at 09:06:40 (+6m30s): the run stayed idle after nudges and an "
            "extension; it ended as killed.",
            (7, 8, 9),
        ),
        (
            "in_flight",
            "Tool call fetch_page(url='https://slow.example.com/report') [call-1] started at 09:00:11 "
            "(+1.2s) and never finished: it had been running for 6m29s when the run stopped.",
            (4, 8),
        ),
        (
            "idle",
            "The last activity was tool_started fetch_page at 09:00:11 (+1.2s); the run then showed no "
            "activity for 6m29s until it stopped at 09:06:40. In between, only 3 critic decisions were "
            "recorded.",
            (4, 5, 6, 7, 8),
        ),
        (
            "critic",
            "The run was watched by IdleCritic (check_interval 30, idle_after 120, "
            "policy nudge → extend+120s → kill).",
            (1,),
        ),
        (
            "critic",
            "At 09:02:40 (+2m30s), after 2m29s idle, the critic nudged the model with “You seem stuck. "
            "Summarise what you are waiting for and move on.”; never delivered: the model was not called "
            "again.",
            (5,),
        ),
        (
            "critic",
            "At 09:04:40 (+4m30s), after 4m29s idle, the critic extended the deadline 09:15:10 → 09:17:10 "
            "(+2m00s): the run is still idle; allowing it more time.",
            (6,),
        ),
        (
            "critic",
            "At 09:06:40 (+6m30s), after 6m29s idle, the critic decided to kill the run: the run stayed "
            "idle after nudges and an extension.",
            (7,),
        ),
        (
            "deadline",
            "Started at 09:00:10 with max_runtime 15m00s: deadline 09:00:10 + 15m00s = 09:15:10.",
            (1,),
        ),
        ("deadline", "Moved +2m00s by the critic at 09:04:40: 09:15:10 → 09:17:10.", (6,)),
        (
            "deadline",
            "The final deadline was 09:00:10 + 15m00s + 2m00s = 09:17:10; the run stopped at 09:06:40, "
            "10m30s before it, so the deadline did not end it.",
            (8,),
        ),
    ]


def test_a_timeout_names_the_model_call_in_flight_and_the_deadline(demo_store: MemoryStore) -> None:
    explanation = why(demo_store, "demo-0003")
    assert explanation.status == "timeout"
    assert texts(explanation, "in_flight")[0].startswith(
        "The model call of step 2 (fake-model) was requested"
    )
    assert explanation.section("in_flight")[0].seqs == (6, 7)
    assert "passed at" in texts(explanation, "deadline")[-1]
    assert "+ 30.0s =" in texts(explanation, "deadline")[-1]


def test_a_caller_cancel_names_the_cause_and_the_tool_in_flight(demo_store: MemoryStore) -> None:
    explanation = why(demo_store, "demo-0004")
    assert "The caller cancelled the run" in texts(explanation, "outcome")[1]
    assert "the user closed the chat window" in texts(explanation, "outcome")[1]
    assert "translate_chunk(" in texts(explanation, "in_flight")[0]


def test_a_recovered_tool_failure_is_reported_along_the_way(demo_store: MemoryStore) -> None:
    explanation = why(demo_store, "demo-0005")
    assert explanation.status == "ok"
    [recovery] = explanation.section("recoveries")
    assert "get_forecast [call-1] failed after 2.5s: ConnectionError" in recovery.text
    assert recovery.seqs == (4, 5, 6)
    assert explanation.section("in_flight") == []


def test_session_steering_and_artifacts_are_reported(demo_store: MemoryStore) -> None:
    explanation = why(demo_store, "demo-0006")
    assert "1 image" in texts(explanation, "recoveries")[0]
    assert texts(explanation, "post_run") == [
        "The post-run hook produced review.md (text/markdown, 118 bytes)."
    ]


def test_max_iterations_cites_every_model_call_and_the_last_reply(demo_store: MemoryStore) -> None:
    explanation = why(demo_store, "demo-0007")
    failure = explanation.section("failure")
    assert failure[0].text == "The agent made 3 model calls (max_iterations=3) and none gave a final answer."
    assert failure[0].seqs == (1, 2, 6, 10)
    assert failure[1].text == "Its last reply (step 3) still asked for check_status(job='J-42')."


def test_an_unfinished_log_says_what_was_in_flight(demo_store: MemoryStore) -> None:
    events = demo_store.read_run("demo-0002")[:4]
    explanation = explain(events)
    assert explanation.status == "running"
    assert explanation.headline == (
        "Run demo-0002 (scraper) has not finished: its log ends at seq 4 "
        "(tool_started, 2026-03-01 09:00:11 UTC)."
    )
    assert "without run_finished" in texts(explanation, "outcome")[1]
    assert texts(explanation, "in_flight") == [
        "Tool call fetch_page(url='https://slow.example.com/report') [call-1] started at 09:00:11 (+1.2s) "
        "and never finished: it had been running for 0.0s at the last recorded event."
    ]
    assert texts(explanation, "idle") == [
        "The last activity was tool_started fetch_page at 09:00:11 (+1.2s); it is the last event of the log."
    ]


def test_an_unfinished_log_ending_in_critic_decisions_counts_the_idle_time(demo_store: MemoryStore) -> None:
    explanation = explain(demo_store.read_run("demo-0002")[:6])
    [idle] = explanation.section("idle")
    assert idle.text.endswith(
        "the run then showed no activity for 4m29s up to the last event at 09:04:40. "
        "In between, only 2 critic decisions were recorded."
    )
    assert idle.seqs == (4, 5, 6)
    assert "it had been running for 4m29s at the last recorded event" in texts(explanation, "in_flight")[0]


def record(agent: Agent) -> MemoryStore:
    store = MemoryStore()
    Executor(store, clock=VirtualClock(START), ids=SequentialIds()).run_sync(agent, Invocation(), "go")
    return store


def test_a_model_failure_names_the_step_and_the_error() -> None:
    store = record(Agent("failing", ScriptedModel([RuntimeError("rate limited")]), max_iterations=3))
    [failure] = why(store, "run-0001").section("failure")
    assert (
        failure.text
        == "The model call of step 1 (requested at seq 2) failed at +0.0s: RuntimeError: rate limited."
    )
    assert failure.seqs == (2, 3)


def test_a_run_that_could_not_be_set_up_says_so() -> None:
    store = record(Agent("unknown", "no-such-model"))
    [failure] = why(store, "run-0001").section("failure")
    assert failure.text.startswith("The run could not be set up: UnknownModelError")


def test_raised_step_limits_and_a_kill_without_deadline_are_explained() -> None:
    critic = IdleCritic(idle_after=10, policy=Ladder([raise_steps(2), kill("still stuck")]))
    store = record(Agent("stuck", ScriptedModel([hang(3600)]), max_iterations=5, critic=critic))
    explanation = why(store, "run-0001")
    critic_texts = texts(explanation, "critic")
    assert "raised the step limit 5 → 7" in critic_texts[1]
    assert "decided to kill the run: still stuck" in critic_texts[2]
    assert texts(explanation, "deadline") == ["The agent had no max_runtime, so the run had no deadline."]
    assert "The model call of step 1" in texts(explanation, "in_flight")[0]


def test_an_empty_log_cannot_be_explained() -> None:
    with pytest.raises(EventOrderError):
        explain([])


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0.0s"), (0.84, "0.8s"), (24.34, "24.3s"), (59.96, "60.0s"), (388.8, "6m29s"), (3725, "1h02m")],
)
def test_durations_read_naturally(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_a_resume_moves_the_deadline_and_the_interrupted_tool_is_reported(demo_store: MemoryStore) -> None:
    crashed = MemoryStore()
    crashed.append("demo-0002", demo_store.read_run("demo-0002")[:4], 0)
    later = VirtualClock(START + timedelta(hours=1))
    agent = Agent("scraper", ScriptedModel([hang(3600)]), max_runtime=900, critic=IdleCritic(idle_after=120))
    later.run(Executor(crashed, clock=later).resume("demo-0002", agent))
    explanation = why(crashed, "demo-0002")
    assert explanation.status == "killed"
    deadline = texts(explanation, "deadline")
    assert deadline[1] == "Moved +59m49s for the downtime before a resume at 10:00:00: 09:15:10 → 10:14:59."
    assert "09:00:10 + 15m00s + 59m49s + 2m00s = 10:16:59" in deadline[-1]
    assert "Tool fetch_page [call-1] failed after 0.0s: Interrupted:" in texts(explanation, "recoveries")[0]
