"""Streamed replies recorded as they arrive: both adapters end to end against a loopback server
speaking each API's SSE format, the real executor on the system clock and a real SQLite store.

A reply streams as hundreds of deltas; the log holds a few ``model_chunk`` events (batched),
then ``model_responded``. What arrived survives a cut stream, a cancel and a SIGKILL, and a
recorded streamed run replays after the server is gone, from SQLite and from a cassette.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from _loopback import (
    Call,
    LoopbackServer,
    Reply,
    Scripted,
    executus_command,
    provider_environment,
    serving_in_thread,
    sse_reply,
    write_agent_module,
)
from _providers import ANTHROPIC, KEY, Provider
from test_models_loopback import add, mul

from executus import (
    Agent,
    Cancellation,
    Executor,
    Invocation,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    Result,
    RetryPolicy,
    SystemClock,
)
from executus.events import Event, ModelChunk
from executus.models import ChatAdapter, TextDelta
from executus.models import ModelChunk as Chunk
from replay import Replayer
from replay.cassette import load_cassette, save_cassette
from store import SqlStore

LONG = "".join(f"Sentence {number} of a long streamed answer. " for number in range(80))
"""About 3,000 characters: 750 deltas of four characters each on the wire."""


def stream(provider: Provider, scripted: Scripted, **options: Any) -> Reply:
    return sse_reply(provider.stream(scripted), **options)


def agent_on(model: Any, **options: Any) -> Agent:
    options.setdefault("tools", [add, mul])
    return Agent(
        name="calc",
        model=model,
        system_prompt="You add and multiply.",
        model_settings=ModelSettings(stream=True),
        **options,
    )


class Tapped:
    """A streaming model that passes an adapter's chunks through and says when text arrived
    (what a test waits for before it cancels mid-stream)."""

    def __init__(self, adapter: ChatAdapter) -> None:
        self.adapter = adapter
        self.text_arrived = asyncio.Event()

    @property
    def name(self) -> str:
        return self.adapter.name

    async def request(self, request: ModelRequest) -> ModelResponse:
        return await self.adapter.request(request)

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        async for chunk in self.adapter.stream(request):
            yield chunk
            if isinstance(chunk, TextDelta):
                self.text_arrived.set()


def run_streamed(
    provider: Provider,
    store: SqlStore,
    replies: list[Reply],
    *,
    during: Callable[[LoopbackServer, Cancellation, Tapped], Awaitable[None]] | None = None,
    **agent_options: Any,
) -> tuple[Result, LoopbackServer]:
    async def scenario() -> tuple[Result, LoopbackServer]:
        async with LoopbackServer() as server, contextlib.AsyncExitStack() as stack:
            server.serve(*replies)
            adapter = provider.make(server.url)
            stack.push_async_callback(adapter.aclose)
            model = Tapped(adapter)
            cancellation = Cancellation()
            run = asyncio.ensure_future(
                Executor(store, clock=SystemClock()).run(
                    agent_on(model, **agent_options), Invocation(cancellation=cancellation), "1+2?"
                )
            )
            if during is not None:
                await during(server, cancellation, model)
            return await run, server

    return asyncio.run(scenario())


def chunks(events: list[Event]) -> list[ModelChunk]:
    return [event for event in events if isinstance(event, ModelChunk)]


def test_a_long_streamed_reply_is_a_few_chunk_events_then_the_reply(provider: Provider, db: SqlStore) -> None:
    result, _ = run_streamed(provider, db, [stream(provider, Scripted(text=LONG))])

    assert result.status == "ok", result.error
    assert result.output == LONG
    events = db.read_run(result.run_id)
    recorded = chunks(events)
    assert 1 <= len(recorded) <= 4  # 750 deltas on the wire
    assert "".join(chunk.text for chunk in recorded) == LONG
    kinds = [event.kind for event in events]
    assert kinds[: 2 + len(recorded) + 1] == ["run_started", "model_requested"] + ["model_chunk"] * len(
        recorded
    ) + ["model_responded"]
    assert result.usage.output_tokens == 7  # the usage came with the finished stream


def test_a_streamed_parallel_tool_call_is_recorded_as_fragments(provider: Provider, db: SqlStore) -> None:
    calls = (Call("call_a", "add", {"a": 1, "b": 2}), Call("call_m", "mul", {"x": 3, "y": 4}))
    replies = [stream(provider, Scripted(calls=calls)), stream(provider, Scripted(text="3 and 12"))]

    result, _ = run_streamed(provider, db, replies)

    assert result.status == "ok", result.error
    events = db.read_run(result.run_id)
    first_step = [chunk for chunk in chunks(events) if chunk.step == 1]
    assert len(first_step) == 1
    fragments = first_step[0].tool_calls
    assert {(f.index, f.id, f.name) for f in fragments if f.id} == {
        (0, "call_a", "add"),
        (1, "call_m", "mul"),
    }
    for index, call in enumerate(calls):
        arguments = "".join(f.arguments for f in fragments if f.index == index)
        assert json.loads(arguments) == call.arguments
    finished = {event.call_id: event.result for event in events if event.kind == "tool_finished"}
    assert finished == {"call_a": "3", "call_m": "12"}


def sent_text(provider: Provider, events: list[str]) -> str:
    """The reply text in these SSE records."""
    texts = []
    for event in events:
        for line in event.splitlines():
            if line.startswith("data: {"):
                body = json.loads(line[6:])
                if provider is ANTHROPIC:
                    texts.append(body.get("delta", {}).get("text", ""))
                else:
                    texts += [choice["delta"].get("content") or "" for choice in body["choices"]]
    return "".join(texts)


@pytest.mark.parametrize("retried", [False, True], ids=["no-retry", "retried"])
def test_a_stream_cut_mid_reply_keeps_the_partial_text_and_no_usage(
    provider: Provider, retried: bool, db: SqlStore
) -> None:
    answer = "The answer is three, because one and two."
    events_on_wire = provider.stream(Scripted(text=answer))
    replies = [sse_reply(events_on_wire, cut_after=6), stream(provider, Scripted(text=answer))]
    policy = RetryPolicy(attempts=2 if retried else 1, base_delay=0.01, jitter=0)

    result, _ = run_streamed(provider, db, replies[: 1 + retried], retry=policy)

    events = db.read_run(result.run_id)
    partial = sent_text(provider, events_on_wire[:6])
    assert partial
    cut_chunks = [c for c in chunks(events) if c.seq < next(e.seq for e in events if "failed" in e.kind)]
    assert "".join(chunk.text for chunk in cut_chunks) == partial  # what arrived is in the log
    failure = next(e for e in events if e.kind in ("model_attempt_failed", "model_failed"))
    assert "stream_interrupted" in failure.error.message
    assert "usage unknown" in failure.error.message
    if not retried:
        assert result.status == "error"
        assert not [event for event in events if event.kind == "model_responded"]  # no usage claimed
        return
    assert result.status == "ok", result.error
    assert result.output == answer
    kinds = [event.kind for event in events if event.kind.startswith("model_")]
    assert kinds == [
        "model_requested",
        *["model_chunk"] * len(cut_chunks),
        "model_attempt_failed",
        "model_chunk",
        "model_responded",
    ]
    assert result.usage.output_tokens == 7  # the second attempt's: the cut one's is unknown, not counted
    replayed = Replayer(blobs=db).replay_run(events)
    assert replayed.divergence is None, replayed.divergence


def test_a_cancel_mid_stream_keeps_what_arrived_and_closes_the_connection(
    provider: Provider, db: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("executus._streaming.FLUSH_SECONDS", 3600.0)  # only the cancel flushes

    async def cancel_mid_stream(server: LoopbackServer, cancellation: Cancellation, model: Tapped) -> None:
        await model.text_arrived.wait()
        cancellation.cancel("the user pressed stop")
        await server.disconnected.wait()

    events_on_wire = provider.stream(Scripted(text="A long answer, slowly."))
    result, server = run_streamed(
        provider, db, [sse_reply(events_on_wire, hang_after=5)], during=cancel_mid_stream
    )

    assert result.status == "cancelled"
    assert server.disconnected.is_set()
    events = db.read_run(result.run_id)
    kinds = [event.kind for event in events]
    assert kinds == ["run_started", "model_requested", "model_chunk", "run_cancelled", "run_finished"]
    assert "A long answer, slowly.".startswith(chunks(events)[0].text)
    assert chunks(events)[0].text
    cancelled = events[3]
    assert cancelled.kind == "run_cancelled"
    assert cancelled.cause == "caller"
    assert [item.kind for item in cancelled.in_flight] == ["model"]


def test_a_streamed_run_replays_after_the_server_is_gone(
    provider: Provider, db: SqlStore, tmp_path: Path
) -> None:
    calls = (Call("call_a", "add", {"a": 1, "b": 2}), Call("call_m", "mul", {"x": 3, "y": 4}))
    replies = [stream(provider, Scripted(calls=calls)), stream(provider, Scripted(text=LONG))]
    result, _ = run_streamed(provider, db, replies)  # the server stops when this returns
    assert result.status == "ok", result.error
    save_cassette(db, result.run_id, tmp_path / "run.jsonl")

    from_sqlite = Replayer(blobs=db).replay_run(db.read_run(result.run_id))
    from_cassette = Replayer().replay_run(load_cassette(tmp_path / "run.jsonl"))

    for replayed in (from_sqlite, from_cassette):
        assert replayed.divergence is None, replayed.divergence
        assert [e.kind for e in replayed.replayed].count("model_chunk") == len(
            chunks(db.read_run(result.run_id))
        )


def test_a_replay_with_streaming_turned_off_diverges_at_the_first_request(
    provider: Provider, db: SqlStore
) -> None:
    result, _ = run_streamed(provider, db, [stream(provider, Scripted(text="It is 3."))])
    changed = Agent(
        name="calc", model=result.state.agent.model, system_prompt="You add and multiply.", tools=[add, mul]
    )

    replayed = Replayer(blobs=db).replay_run(db.read_run(result.run_id), agent=changed)

    assert replayed.divergence is not None
    assert replayed.divergence.seq == 2
    assert replayed.divergence.expected is not None
    assert replayed.divergence.expected.kind == "model_requested"
    assert [d.path for d in replayed.divergence.differences] == ["fingerprint"]


# -- a SIGKILL mid-stream, then resume -------------------------------------------------------------


def test_a_sigkill_mid_stream_leaves_the_committed_chunks_and_the_run_resumes(
    provider: Provider, tmp_path: Path, sqlite_template: Path
) -> None:
    write_agent_module(tmp_path, provider.name)
    shutil.copyfile(sqlite_template, tmp_path / "runs.db")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    partial = provider.stream(Scripted(text="Working it out: one plus two is three."))
    replies = [sse_reply(partial, hang_after=6), stream(provider, Scripted(text="It is 3."))]
    with serving_in_thread(*replies) as server, (tmp_path / "child.err").open("wb") as errors:
        child = subprocess.Popen(
            [*executus_command(), "run", "calc_agent:agent", "1+2?", "--db", url],
            cwd=tmp_path,
            env=provider_environment(provider.name, server.url, KEY),
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        store = SqlStore(url)
        try:
            run_id = wait_for_chunk(store, child)
            child.send_signal(signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
        assert child.returncode == -signal.SIGKILL
        logged = store.read_run(run_id)
        assert [event.kind for event in logged][-1] == "model_chunk"
        assert "Working it out: one plus two is three.".startswith("".join(c.text for c in chunks(logged)))

        import calc_agent  # type: ignore[import-not-found]  # written above; tmp_path is on sys.path

        async def resume() -> Result:
            async with provider.make(server.url) as model:
                agent = Agent(
                    name="calc",
                    model=model,
                    system_prompt="You add.",
                    tools=[calc_agent.add],
                    model_settings=ModelSettings(stream=True),
                )
                # The killed process's lease is still live: the test knows it is dead.
                return await Executor(store, clock=SystemClock()).resume(run_id, agent, force=True)

        resumed = asyncio.run(resume())
    assert resumed.status == "ok", resumed.error
    assert resumed.output == "It is 3."
    events = store.read_run(run_id)
    assert "run_resumed" in [event.kind for event in events]
    replayed = Replayer(blobs=store).replay_run(events)
    assert replayed.divergence is None, replayed.divergence
    store.close()


def wait_for_chunk(store: SqlStore, child: subprocess.Popen[bytes]) -> str:
    """The run id, once the child has committed a model_chunk (it is killed after)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert child.poll() is None, "the child ended before it streamed"
        for summary in store.list_runs():
            if any(event.kind == "model_chunk" for event in store.read_run(summary.run_id)):
                return summary.run_id
        time.sleep(0.05)
    raise AssertionError("the child never committed a model_chunk")


@pytest.fixture(autouse=True)
def _importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("calc_agent", None)
