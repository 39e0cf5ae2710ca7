"""Retries end to end: the real executor, a real SQLite store, the real SDKs of both adapters
and a loopback server speaking each API, on a virtual clock that the server shares: a
``retry-after: 30`` is waited on the run's clock (the log says so) and takes no real time.
Each recorded run then replays identically from SQLite and from a cassette, server stopped."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _loopback import LoopbackServer, Reply, Scripted, hang, json_reply, sse_reply
from _providers import Provider
from click.testing import CliRunner

from executus import (
    Agent,
    Cancellation,
    Executor,
    IdleCritic,
    Invocation,
    Ladder,
    ModelSettings,
    Result,
    RetryPolicy,
    SequentialIds,
    VirtualClock,
    kill,
)
from executus.cli import cli
from executus.events import Event, ModelAttemptFailed, RunCancelled
from executus.forensics import explain
from replay import Replayer, load_cassette
from replay.cassette import save_cassette
from store import SqlStore

START = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(attempts=3, base_delay=2.0, max_delay=8.0, jitter=0.0)


During = Callable[[LoopbackServer, Cancellation], Awaitable[None]]


def run_on_virtual_clock(
    provider: Provider,
    store: SqlStore,
    replies: list[Reply],
    *,
    during: During | None = None,
    on_event: Callable[[Event, Cancellation], None] | None = None,
    **agent_options: Any,
) -> tuple[Result, LoopbackServer]:
    """Run an agent against a loopback server on the same virtual-time event loop."""
    clock = VirtualClock(START)

    async def scenario() -> tuple[Result, LoopbackServer]:
        async with LoopbackServer() as server:
            server.serve(*replies)
            async with provider.make(server.url) as model:
                agent_options.setdefault("retry", POLICY)
                agent = Agent(name="calc", model=model, system_prompt="You add.", **agent_options)
                cancellation = Cancellation()
                listener = (lambda event: on_event(event, cancellation)) if on_event else None
                executor = Executor(store, clock=clock, ids=SequentialIds(), on_event=listener)
                run = asyncio.ensure_future(
                    executor.run(agent, Invocation(cancellation=cancellation), "1+2?")
                )
                if during is not None:
                    await during(server, cancellation)
                return await run, server

    return clock.run(scenario())


def ok(provider: Provider, text: str = "It is 3.") -> Reply:
    return json_reply(provider.whole(Scripted(text=text)))


def rate_limited(provider: Provider, seconds: str) -> Reply:
    return provider.error(429, "Slow down.", provider.rate_limit_type, {"retry-after": seconds})


def attempts(events: list[Event]) -> list[ModelAttemptFailed]:
    return [event for event in events if isinstance(event, ModelAttemptFailed)]


def replays_identically(store: SqlStore, run_id: str, tmp_path: Path) -> None:
    """From SQLite and from a cassette, with no server running any more."""
    events = store.read_run(run_id)
    from_sqlite = Replayer(blobs=store).replay_run(events)
    assert from_sqlite.identical, from_sqlite.report()
    save_cassette(store, run_id, tmp_path / f"{run_id}.jsonl")
    from_cassette = Replayer().replay_run(load_cassette(tmp_path / f"{run_id}.jsonl"))
    assert from_cassette.identical, from_cassette.report()


def test_a_429_with_retry_after_is_waited_on_the_run_clock_then_the_call_succeeds(
    provider: Provider, db: SqlStore, tmp_path: Path
) -> None:
    result, server = run_on_virtual_clock(provider, db, [rate_limited(provider, "30"), ok(provider)])

    assert result.status == "ok", result.error
    assert result.output == "It is 3."
    events = db.read_run(result.run_id)
    assert [event.kind for event in events] == [
        "run_started",
        "model_requested",
        "model_attempt_failed",
        "model_responded",
        "run_finished",
    ]
    (failed,) = attempts(events)
    assert (failed.step, failed.attempt, failed.error.status, failed.error.retry_after) == (1, 1, 429, 30.0)
    assert (failed.error.code, failed.error.request_id, failed.error.retryable) == (
        provider.rate_limit_type,
        "req_429",
        True,
    )
    assert (failed.next_attempt_at - failed.at).total_seconds() == 30.0
    assert events[3].at >= failed.next_attempt_at  # the second call waited for it
    assert len(server.received) == 2
    assert server.received[0].body == server.received[1].body  # the same request again
    replays_identically(db, result.run_id, tmp_path)


def test_5xx_beyond_the_budget_ends_the_run_as_an_error_with_every_attempt_logged(
    provider: Provider, db: SqlStore, tmp_path: Path
) -> None:
    overloaded = [provider.error(status, "Try later.", "overloaded_error") for status in (503, 529, 500)]

    result, server = run_on_virtual_clock(provider, db, [*overloaded, ok(provider)])

    assert result.status == "error"
    assert result.error is not None
    assert result.error.status == 500
    events = db.read_run(result.run_id)
    assert [event.kind for event in events][2:] == [
        "model_attempt_failed",
        "model_attempt_failed",
        "model_failed",
        "run_finished",
    ]
    assert [(a.attempt, a.error.status) for a in attempts(events)] == [(1, 503), (2, 529)]
    assert [(a.next_attempt_at - a.at).total_seconds() for a in attempts(events)] == [2.0, 4.0]
    assert len(server.received) == 3
    failure = [statement.text for statement in explain(events).section("failure")]
    assert failure[-1] == (
        "The retry policy gave up after 3 attempts: "
        "1 x 503 (service unavailable), 1 x 529 (overloaded), 1 x 500 (internal server error)."
    )
    replays_identically(db, result.run_id, tmp_path)


def test_a_retry_after_longer_than_the_deadline_ends_in_a_timeout(
    provider: Provider, db: SqlStore, tmp_path: Path
) -> None:
    result, server = run_on_virtual_clock(
        provider, db, [rate_limited(provider, "600"), ok(provider)], max_runtime=60
    )

    assert result.status == "timeout"
    events = db.read_run(result.run_id)
    assert [event.kind for event in events][2:] == ["model_attempt_failed", "run_cancelled", "run_finished"]
    cancelled = events[3]
    assert isinstance(cancelled, RunCancelled)
    assert (cancelled.at - START).total_seconds() == 60.0
    assert [item.kind for item in cancelled.in_flight] == ["model"]
    assert len(server.received) == 1
    outcome = explain(events).section("outcome")[-1].text
    assert outcome == "Step 1: 1 x 429 (rate limited), then the deadline passed while it waited to retry."
    replays_identically(db, result.run_id, tmp_path)


def test_the_critic_kills_a_run_backing_off(provider: Provider, db: SqlStore, tmp_path: Path) -> None:
    critic = IdleCritic(45, policy=Ladder([kill("stuck on rate limits")]), check_interval=15)
    storm = [rate_limited(provider, "30"), rate_limited(provider, "30"), rate_limited(provider, "300")]

    result, server = run_on_virtual_clock(
        provider, db, storm, critic=critic, retry=RetryPolicy(attempts=10, jitter=0)
    )

    assert result.status == "killed"
    events = db.read_run(result.run_id)
    assert [event.kind for event in events][-4:] == [
        "model_attempt_failed",
        "critic_decided",
        "run_cancelled",
        "run_finished",
    ]
    assert len(attempts(events)) == 3
    assert len(server.received) == 3
    outcome = explain(events).section("outcome")[-1].text
    assert (
        outcome == "Step 1: 3 x 429 (rate limited), then the critic killed the run while it waited to retry."
    )
    replays_identically(db, result.run_id, tmp_path)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    shown = CliRunner().invoke(cli, ["--db", url, "show", result.run_id])
    assert shown.exit_code == 0, shown.output
    assert (
        "model_attempt_failed  step 1: attempt 3 failed, 429 (rate limited); retrying in 5m00s"
        in shown.output
    )
    # The kind column is as wide as the longest kind shown: every summary starts in one column.
    summary_columns = {len(m.group(1)) for m in re.finditer(r"^( *\d+ +\+\S+ +\w+ +)\S", shown.output, re.M)}
    assert len(summary_columns) == 1, shown.output
    why = CliRunner().invoke(cli, ["--db", url, "why", result.run_id])
    assert why.exit_code == 0, why.output
    assert "then the critic killed the run while it waited to retry." in why.output


def test_a_cancel_during_a_back_off_sends_nothing_more(
    provider: Provider, db: SqlStore, tmp_path: Path
) -> None:
    def cancel_once_the_attempt_failed(event: Event, cancellation: Cancellation) -> None:
        if event.kind == "model_attempt_failed":
            cancellation.cancel("the user pressed stop")

    result, server = run_on_virtual_clock(
        provider, db, [rate_limited(provider, "30"), ok(provider)], on_event=cancel_once_the_attempt_failed
    )

    assert result.status == "cancelled"
    events = db.read_run(result.run_id)
    assert [event.kind for event in events][2:] == ["model_attempt_failed", "run_cancelled", "run_finished"]
    assert len(server.received) == 1
    replays_identically(db, result.run_id, tmp_path)


def test_a_cancel_during_a_retried_request_closes_its_connection(
    provider: Provider, db: SqlStore, tmp_path: Path
) -> None:
    async def cancel_the_second_request(server: LoopbackServer, cancellation: Cancellation) -> None:
        await server.requested.wait()
        server.requested.clear()
        await server.requested.wait()
        assert len(server.received) == 2
        cancellation.cancel("the user pressed stop")
        await server.disconnected.wait()

    result, server = run_on_virtual_clock(
        provider, db, [rate_limited(provider, "5"), hang()], during=cancel_the_second_request
    )

    assert result.status == "cancelled"
    assert server.disconnected.is_set()
    events = db.read_run(result.run_id)
    assert [event.kind for event in events][2:] == ["model_attempt_failed", "run_cancelled", "run_finished"]
    outcome = explain(events).section("outcome")[-1].text
    assert outcome == "Step 1: 1 x 429 (rate limited), then the caller cancelled the run during attempt 2."
    replays_identically(db, result.run_id, tmp_path)


def test_a_stream_cut_off_mid_reply_is_retried_and_the_next_attempt_answers(
    provider: Provider, db: SqlStore, tmp_path: Path
) -> None:
    events = provider.stream(Scripted(text="It is 3."))
    cut, whole = sse_reply(events, cut_after=4), sse_reply(events)

    result, server = run_on_virtual_clock(
        provider, db, [cut, whole], model_settings=ModelSettings(stream=True)
    )

    assert result.status == "ok", result.error
    assert result.output == "It is 3."
    (failed,) = attempts(db.read_run(result.run_id))
    assert (failed.error.status, failed.error.code, failed.error.retryable) == (
        None,
        "stream_interrupted",
        True,
    )
    assert len(server.received) == 2
    replays_identically(db, result.run_id, tmp_path)
