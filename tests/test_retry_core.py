"""Retries in the pure core and the policy: failed attempts in, back-off timers and events out,
by hand and as properties; recorded runs replay identically on the virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any

import pytest
from _support import START, record
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from executus import (
    Agent,
    Cancellation,
    ConfigurationError,
    Executor,
    IdleCritic,
    Invocation,
    Ladder,
    ModelCallError,
    Result,
    RetryPolicy,
    VirtualClock,
    kill,
)
from executus._attempts import attempts_summary, failure_label
from executus._core import CoreState, decide
from executus._describe import describe_event
from executus._effects import CallModel, CancelInFlight, WaitToRetry
from executus._inputs import (
    CallerCancelled,
    ModelCallFailed,
    RetryDue,
    RunRequested,
    RunResumeRequested,
    TimerFired,
)
from executus._retry import retry_delay
from executus.events import (
    AgentSpec,
    ErrorInfo,
    ModelAttemptFailed,
    RunStarted,
    decode_event,
    encode_event,
    rebuild,
)
from executus.forensics import explain
from executus.storage import MemoryStore
from executus.testing import ScriptedModel
from replay import Replayer

POLICY = RetryPolicy(attempts=4, base_delay=1.0, max_delay=8.0, jitter=0.0)
SPEC = AgentSpec(name="hand", model="m", system_prompt="", max_iterations=5, max_runtime=60, retry=POLICY)


def _error(
    status: int | None = 429, retry_after: float | None = None, *, retryable: bool = True
) -> ErrorInfo:
    return ErrorInfo(
        type="ModelCallError",
        message=f"HTTP {status}",
        status=status,
        code="connection" if status is None else None,
        retry_after=retry_after,
        retryable=retryable,
    )


def _at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def _started(spec: AgentSpec = SPEC) -> CoreState:
    core = CoreState("r1")
    decide(
        core,
        RunRequested(
            at=START,
            spec=spec,
            input="go",
            caller_id=None,
            parent_run_id=None,
            parent_call_id=None,
            executor_version="t",
        ),
    )
    return core


# -- the policy ---------------------------------------------------------------------------------


def test_the_back_off_doubles_up_to_its_cap_and_a_longer_retry_after_wins() -> None:
    delays = [retry_delay(RetryPolicy(attempts=9, jitter=0), _error(503), n, "r", 1) for n in range(1, 9)]

    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert retry_delay(POLICY, _error(429, retry_after=30.0), 1, "r", 1) == 30.0
    assert retry_delay(POLICY, _error(429, retry_after=0.1), 1, "r", 1) == 1.0
    ignoring = POLICY.model_copy(update={"honour_retry_after": False})
    assert retry_delay(ignoring, _error(429, retry_after=30.0), 1, "r", 1) == 1.0


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (_error(429), True),
        (_error(408), True),
        (_error(409), True),
        (_error(500), True),
        (_error(503), True),
        (_error(529), True),
        (_error(None), True),
        (_error(400, retryable=False), False),
        (_error(401, retryable=False), False),
        (_error(404, retryable=False), False),
        (_error(None, retryable=False), False),
        (ErrorInfo(type="RuntimeError", message="boom"), False),
    ],
)
def test_which_failures_the_default_policy_retries(error: ErrorInfo, retried: bool) -> None:
    assert (retry_delay(RetryPolicy(), error, 1, "r", 1) is not None) is retried


def test_the_attempts_are_a_budget_per_step_and_no_policy_never_retries() -> None:
    assert retry_delay(POLICY, _error(503), 3, "r", 1) == 4.0
    assert retry_delay(POLICY, _error(503), 4, "r", 1) is None
    assert retry_delay(None, _error(503), 1, "r", 1) is None
    only_429 = RetryPolicy(retry_on=("429",))
    assert retry_delay(only_429, _error(503), 1, "r", 1) is None
    assert retry_delay(only_429, _error(None), 1, "r", 1) is None


def test_jitter_is_the_same_for_a_run_and_spreads_different_runs() -> None:
    jittery = RetryPolicy(attempts=5, base_delay=4.0, max_delay=4.0, jitter=0.5)
    first = [retry_delay(jittery, _error(503), 1, f"run-{n}", 1) for n in range(20)]
    again = [retry_delay(jittery, _error(503), 1, f"run-{n}", 1) for n in range(20)]

    assert first == again
    assert len(set(first)) == 20
    assert all(delay is not None and 2.0 < delay <= 4.0 for delay in first)


def test_an_agent_refuses_a_retry_that_is_not_a_policy() -> None:
    with pytest.raises(ConfigurationError, match="retry must be a RetryPolicy or None"):
        Agent("a", "m", retry={"attempts": 5})  # type: ignore[arg-type]


@pytest.mark.parametrize("entry", ["4xx", "200", "600", "rate_limit", ""])
def test_an_unknown_retry_on_entry_is_refused(entry: str) -> None:
    with pytest.raises(ValidationError, match="retry_on entry"):
        RetryPolicy(retry_on=("429", entry))


@settings(max_examples=200, deadline=None)
@given(
    attempts=st.integers(1, 8),
    base=st.floats(0, 10),
    cap=st.floats(0, 60),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 10),
    status=st.sampled_from([None, 400, 408, 409, 429, 500, 503, 529]),
    retry_after=st.none() | st.floats(0, 1e12),
)
def test_the_delay_is_bounded_and_given_only_while_attempts_are_left(
    attempts: int,
    base: float,
    cap: float,
    jitter: float,
    attempt: int,
    status: int | None,
    retry_after: float | None,
) -> None:
    policy = RetryPolicy(attempts=attempts, base_delay=base, max_delay=cap, jitter=jitter)
    error = _error(status, retry_after, retryable=status != 400)

    delay = retry_delay(policy, error, attempt, "run", 1)

    assert (delay is None) is (attempt >= attempts or status == 400)
    if delay is not None:
        assert 0 <= delay <= max(cap, retry_after or 0)
        assert delay >= min(retry_after or 0, 366 * 24 * 3600)
        backoff = min(cap, base * 2 ** (attempt - 1))
        assert delay >= backoff * (1 - jitter) - 1e-9
        assert delay <= max(backoff, retry_after or 0)


# -- the core, by hand --------------------------------------------------------------------------


def test_a_retryable_failure_records_the_attempt_and_arms_a_back_off_then_the_same_request() -> None:
    core = _started()

    failed = decide(core, ModelCallFailed(at=_at(1), step=1, error=_error(429, retry_after=5.0)))
    (event,) = failed.events
    assert isinstance(event, ModelAttemptFailed)
    assert (event.step, event.attempt, event.error.status, event.next_attempt_at) == (1, 1, 429, _at(6))
    assert failed.effects == [WaitToRetry(1, _at(6))]
    assert [item.kind for item in core.run.in_flight] == ["model"]  # type: ignore[union-attr]

    due = decide(core, RetryDue(at=_at(6), step=1))
    assert due.events == []
    (call,) = due.effects
    assert isinstance(call, CallModel)
    assert (call.step, len(call.messages)) == (1, 2)
    assert core.run.steps == 1  # type: ignore[union-attr]  # a retry is not a new step


def test_the_policy_gives_up_with_model_failed_after_its_last_attempt() -> None:
    core = _started()
    kinds = []
    for attempt in range(1, 5):
        decision = decide(core, ModelCallFailed(at=_at(10 * attempt), step=1, error=_error(503)))
        kinds += [event.kind for event in decision.events]
        if attempt < 4:
            decide(core, RetryDue(at=_at(10 * attempt + 5), step=1))

    assert kinds == [*["model_attempt_failed"] * 3, "model_failed"]
    assert core.outcome is not None
    assert core.outcome.status == "error"
    assert core.outcome.error == _error(503)


def test_a_run_recorded_without_a_policy_never_retries() -> None:
    core = _started(SPEC.model_copy(update={"retry": None}))

    decision = decide(core, ModelCallFailed(at=_at(1), step=1, error=_error(429, retry_after=1.0)))

    assert [event.kind for event in decision.events] == ["model_failed"]


@pytest.mark.parametrize(
    ("input", "cause"),
    [
        (TimerFired(at=_at(60)), "timeout"),
        (CallerCancelled(at=_at(30), detail="stop"), "caller"),
    ],
)
def test_the_deadline_and_a_cancel_end_a_back_off_and_a_late_retry_is_ignored(
    input: TimerFired | CallerCancelled, cause: str
) -> None:
    core = _started()
    decide(core, ModelCallFailed(at=_at(1), step=1, error=_error(429, retry_after=120.0)))

    stopped = decide(core, input)

    assert [event.kind for event in stopped.events] == ["run_cancelled"]
    cancelled = stopped.events[0]
    assert cancelled.cause == cause  # type: ignore[union-attr]
    assert [item.kind for item in cancelled.in_flight] == ["model"]  # type: ignore[union-attr]
    assert CancelInFlight() in stopped.effects
    late = decide(core, RetryDue(at=_at(121), step=1))
    assert (late.events, late.effects) == ([], [])


def test_a_spec_without_a_policy_decodes_as_no_retries_and_keeps_its_bytes() -> None:
    started = RunStarted(
        run_id="r",
        seq=1,
        at=START,
        agent=SPEC.model_copy(update={"retry": None}),
        input="hi",
        executor_version="0.1.0",
    )
    data = encode_event(started)

    assert "retry" not in data["agent"]
    assert decode_event(data).agent.retry is None  # type: ignore[union-attr]
    with_policy = encode_event(started.model_copy(update={"agent": SPEC}))
    assert decode_event(with_policy).agent.retry == POLICY  # type: ignore[union-attr]


def test_an_error_info_without_the_new_fields_keeps_its_bytes_and_refuses_an_infinite_wait() -> None:
    assert ErrorInfo(type="E", message="m").model_dump(mode="json") == {"type": "E", "message": "m"}
    with pytest.raises(ValidationError):
        ErrorInfo.model_validate_json('{"type": "E", "message": "m", "retry_after": 1e999}')


# -- live on the virtual clock, and replayed ------------------------------------------------------


def _failure(status: int | None, retry_after: float | None = None) -> ModelCallError:
    return ModelCallError(
        "openai",
        "m",
        "it failed",
        status=status,
        error_type="rate_limit_exceeded" if status == 429 else "connection" if status is None else None,
        request_id=f"req_{status}",
        retry_after=retry_after,
        retryable=True,
    )


def test_a_429_storm_waits_on_the_virtual_clock_and_replays_identically() -> None:
    storm = [_failure(429, retry_after=30.0)] * 4
    agent = Agent("a", ScriptedModel([*storm, "done"]), retry=RetryPolicy(attempts=5))

    recorded = record(agent)

    assert recorded.result.status == "ok"
    attempts = recorded.of_kind("model_attempt_failed")
    assert [(a.attempt, a.error.status, a.error.request_id, a.error.retry_after) for a in attempts] == [
        (n, 429, "req_429", 30.0) for n in range(1, 5)
    ]
    assert [(a.next_attempt_at - a.at).total_seconds() for a in attempts] == [30.0] * 4
    assert recorded.result.duration == pytest.approx(120.0)
    replayed = Replayer().replay_run(recorded.events)
    assert replayed.identical, replayed.report()


@settings(max_examples=25, deadline=None)
@given(
    failures=st.lists(
        st.tuples(st.sampled_from([None, 408, 429, 500, 503, 529]), st.none() | st.floats(0, 90)),
        max_size=6,
    ),
    attempts=st.integers(1, 5),
)
def test_any_run_of_failures_is_logged_attempt_by_attempt_and_replays_identically(
    failures: list[tuple[int | None, float | None]], attempts: int
) -> None:
    script = [_failure(status, retry_after) for status, retry_after in failures]
    agent = Agent("a", ScriptedModel([*script, "done"]), retry=RetryPolicy(attempts=attempts))

    recorded = record(agent)

    made = min(len(failures) + 1, attempts)
    logged = recorded.of_kind("model_attempt_failed") + recorded.of_kind("model_failed")
    assert len(logged) == min(len(failures), attempts)
    assert recorded.result.status == ("ok" if len(failures) < attempts else "error")
    assert [event.attempt for event in recorded.of_kind("model_attempt_failed")] == list(range(1, made))
    replayed = Replayer().replay_run(recorded.events)
    assert replayed.identical, replayed.report()


def test_the_critic_kills_during_a_back_off_and_why_tells_the_story() -> None:
    critic = IdleCritic(10, policy=Ladder([kill("stuck on rate limits")]), check_interval=5)
    storm = [_failure(429, retry_after=6.0)] * 3 + [_failure(429, retry_after=600.0)]
    agent = Agent("a", ScriptedModel(storm), retry=RetryPolicy(attempts=10), critic=critic)

    recorded = record(agent)

    assert recorded.result.status == "killed"
    assert recorded.kinds[-4:] == ["model_attempt_failed", "critic_decided", "run_cancelled", "run_finished"]
    outcome = [statement.text for statement in explain(recorded.events).section("outcome")]
    assert outcome[-1] == (
        "Step 1: 4 x 429 (rate limited), then the critic killed the run while it waited to retry."
    )
    replayed = Replayer().replay_run(recorded.events)
    assert replayed.identical, replayed.report()


def test_why_says_when_the_policy_gave_up_and_when_a_retry_recovered() -> None:
    gave_up = record(Agent("a", ScriptedModel([_failure(503)] * 5), retry=RetryPolicy(attempts=5)))
    recovered = record(Agent("a", ScriptedModel([_failure(None), _failure(429), "done"])))

    failure = [statement.text for statement in explain(gave_up.events).section("failure")]
    assert failure[-1] == "The retry policy gave up after 5 attempts: 5 x 503 (service unavailable)."
    (along,) = explain(recovered.events).section("recoveries")
    assert along.text.startswith(
        "The model call of step 1 was retried after 1 x connection failed, 1 x 429 (rate limited); "
        "attempt 3 answered at +"
    )
    assert along.seqs == (3, 4, 5)


def test_a_cancel_during_a_back_off_is_recorded_with_the_model_in_flight() -> None:
    cancellation = Cancellation()
    agent = Agent(
        "a", ScriptedModel([_failure(503), "never"]), retry=RetryPolicy(base_delay=50, max_delay=50, jitter=0)
    )

    async def cancel_soon(run: Coroutine[Any, Any, Result]) -> Result:
        asyncio.get_running_loop().call_later(10, cancellation.cancel, "enough")
        return await run

    recorded = record(agent, invocation=Invocation(cancellation=cancellation), around=cancel_soon)

    assert recorded.result.status == "cancelled"
    assert recorded.kinds == [
        "run_started",
        "model_requested",
        "model_attempt_failed",
        "run_cancelled",
        "run_finished",
    ]
    assert [item.kind for item in recorded.of_kind("run_cancelled")[0].in_flight] == ["model"]
    outcome = explain(recorded.events).section("outcome")[-1].text
    assert outcome == (
        "Step 1: 1 x 503 (service unavailable), then the caller cancelled the run while it waited to retry."
    )
    replayed = Replayer().replay_run(recorded.events)
    assert replayed.identical, replayed.report()


def test_show_describes_an_attempt_in_one_line() -> None:
    event = ModelAttemptFailed(
        run_id="r", seq=3, at=_at(1), step=2, attempt=1, error=_error(529), next_attempt_at=_at(3.5)
    )

    assert describe_event(event) == (
        "step 2: attempt 1 failed, 529 (overloaded); retrying in 2.5s at 09:00:04",
        "warn",
    )
    assert failure_label(_error(None)) == "connection failed"
    assert attempts_summary([_error(429), _error(429), _error(503), _error(429)]) == (
        "2 x 429 (rate limited), 1 x 503 (service unavailable), 1 x 429 (rate limited)"
    )


def test_a_changed_retry_policy_shows_as_the_first_divergence() -> None:
    model = ScriptedModel([_failure(503), _failure(503), "done"])
    recorded = record(Agent("a", model, retry=RetryPolicy(attempts=3, jitter=0)))
    stricter = Agent("a", ScriptedModel([]), retry=RetryPolicy(attempts=2, jitter=0))
    slower = Agent("a", ScriptedModel([]), retry=RetryPolicy(attempts=3, base_delay=5, jitter=0))

    gave_up = Replayer().replay_run(recorded.events, agent=stricter)
    waited = Replayer().replay_run(recorded.events, agent=slower)

    assert [(c.path, c.expected, c.actual) for c in gave_up.agent_changes] == [("agent.retry.attempts", 3, 2)]
    assert gave_up.divergence is not None
    assert (gave_up.divergence.seq, gave_up.divergence.actual.kind) == (4, "model_failed")  # type: ignore[union-attr]
    assert waited.divergence is not None
    assert waited.divergence.seq == 3
    assert [d.path for d in waited.divergence.differences] == ["next_attempt_at"]


def test_a_resume_during_a_back_off_asks_for_the_step_again_with_a_fresh_budget() -> None:
    core = CoreState("r1")
    requested = RunRequested(
        at=START,
        spec=SPEC,
        input="go",
        caller_id=None,
        parent_run_id=None,
        parent_call_id=None,
        executor_version="t",
    )
    log = [*decide(core, requested).events]
    log += decide(core, ModelCallFailed(at=_at(1), step=1, error=_error(503))).events
    assert core.run is not None
    assert core.run.pending_model is not None
    assert (core.run.pending_model.attempt, core.run.pending_model.retry_at) == (2, _at(2))
    survivor = CoreState("r1", run=rebuild(log))  # the process died during the back-off

    resumed = decide(survivor, RunResumeRequested(at=_at(100), executor_version="t"))

    assert [event.kind for event in resumed.events] == ["run_resumed", "model_requested"]
    assert any(isinstance(effect, CallModel) and effect.step == 1 for effect in resumed.effects)
    assert survivor.run is not None
    assert survivor.run.pending_model is not None
    assert survivor.run.pending_model.attempt == 1


def test_a_run_whose_process_died_during_a_back_off_resumes_and_replays_identically() -> None:
    first = record(Agent("a", ScriptedModel([_failure(503), "never"]), retry=POLICY))
    died = first.events[:3]  # run_started, model_requested, model_attempt_failed
    store = MemoryStore()
    store.append(died[0].run_id, died, 0)
    executor = Executor(store, clock=VirtualClock(START + timedelta(minutes=5)))

    resumed = executor.clock.run(
        executor.resume(died[0].run_id, Agent("a", ScriptedModel(["done"]), retry=POLICY))
    )

    assert resumed.status == "ok"
    events = store.read_run(died[0].run_id)
    assert [event.kind for event in events][2:] == [
        "model_attempt_failed",
        "run_resumed",
        "model_requested",
        "model_responded",
        "run_finished",
    ]
    replayed = Replayer().replay_run(events)
    assert replayed.identical, replayed.report()


def test_an_error_code_from_a_log_is_shown_inert() -> None:
    planted = ErrorInfo(type="E\x1b]0;pwned\x07", message="m", code="\x1b[2J\x1b[31mevil\u202e")
    event = ModelAttemptFailed(
        run_id="r", seq=3, at=_at(1), step=1, attempt=1, error=planted, next_attempt_at=_at(2)
    )

    line, _ = describe_event(event)

    assert "\x1b" not in line
    assert "\u202e" not in line
    assert "\x1b" not in failure_label(planted.model_copy(update={"code": None}))
