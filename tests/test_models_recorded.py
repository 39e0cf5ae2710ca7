"""Runs recorded against a real model API: named by provider prefix, replayed offline, and
written to the log with the bytes 0.1.0 wrote whenever the new fields are unset."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _loopback import (
    Call,
    LoopbackServer,
    Scripted,
    anthropic_message,
    json_reply,
    openai_completion,
    serving_in_thread,
)

from executus import (
    Agent,
    ConfigurationError,
    Executor,
    ModelRegistry,
    ModelSettings,
    SystemClock,
    Usage,
    tool,
)
from executus._state import request_fingerprint
from executus.events import AgentSpec, ModelResponded, RunStarted, rebuild
from executus.models import AnthropicModel, OpenAIModel
from executus.models._base import retry_after_seconds
from executus.storage import event_json
from replay import Replayer, load_cassette
from replay.cassette import save_cassette
from store import SqlStore

AT = datetime(2026, 1, 1, tzinfo=UTC)
EXAMPLES = Path(__file__).parent.parent / "examples"


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@pytest.fixture
def no_provider_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for variable in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("model", "body", "prefix"),
    [
        ("openai:gpt-4.1-mini", openai_completion, "OPENAI"),
        ("anthropic:claude-sonnet-4-5", anthropic_message, "ANTHROPIC"),
    ],
)
def test_a_prefixed_model_name_runs_from_the_sdk_environment_and_replays_offline(
    model: str, body: object, prefix: str, db: SqlStore, no_provider_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = Scripted(calls=(Call("call_1", "add", {"a": 1, "b": 2}),))
    replies = [json_reply(body(first)), json_reply(body(Scripted(text="It is 3.")))]  # type: ignore[operator]

    async def record() -> str:
        async with LoopbackServer() as server:
            server.serve(*replies)
            no_provider_env.setenv(f"{prefix}_API_KEY", "sk-from-the-environment")
            no_provider_env.setenv(f"{prefix}_BASE_URL", server.url + ("/v1" if prefix == "OPENAI" else ""))
            registry = ModelRegistry()
            agent = Agent(name="calc", model=model, tools=[add])
            result = await Executor(db, models=registry, clock=SystemClock()).run(agent, None, "1+2?")
            assert result.status == "ok", result.error
            await registry(model).aclose()  # type: ignore[attr-defined]
            return result.run_id

    run_id = asyncio.run(record())  # the server is stopped from here on
    events = db.read_run(run_id)
    started = events[0]
    assert isinstance(started, RunStarted)
    assert started.agent.model == model
    assert "sk-from-the-environment" not in json.dumps([event_json(event) for event in events])

    from_sqlite = Replayer(blobs=db).replay_run(events)
    assert from_sqlite.identical, from_sqlite.report()
    save_cassette(db, run_id, tmp_path / "run.jsonl")
    from_cassette = Replayer().replay_run(load_cassette(tmp_path / "run.jsonl"))
    assert from_cassette.identical, from_cassette.report()


def test_a_missing_api_key_is_one_clear_configuration_error(no_provider_env: pytest.MonkeyPatch) -> None:
    expected = "no openai API key: set OPENAI_API_KEY or pass api_key= to OpenAIModel"
    with pytest.raises(ConfigurationError, match=expected):
        OpenAIModel("gpt-4.1-mini")
    with pytest.raises(ConfigurationError, match="set ANTHROPIC_API_KEY"):
        ModelRegistry()("anthropic:claude-sonnet-4-5")


def test_a_run_naming_a_model_without_its_key_ends_with_that_error(
    no_provider_env: pytest.MonkeyPatch, db: SqlStore
) -> None:
    agent = Agent(name="calc", model="openai:gpt-4.1-mini")

    result = asyncio.run(Executor(db, clock=SystemClock()).run(agent, None, "hi"))

    assert result.status == "error"
    assert result.error is not None
    assert result.error.type == "ConfigurationError"
    assert "set OPENAI_API_KEY" in result.error.message


def test_a_name_without_a_known_prefix_is_still_unknown() -> None:
    with pytest.raises(ConfigurationError, match="unknown model 'mistral:large'"):
        ModelRegistry()("mistral:large")


def test_explicit_adapters_name_themselves_after_their_provider(no_provider_env: pytest.MonkeyPatch) -> None:
    openai_model = OpenAIModel("llama3.2", api_key="local", base_url="http://127.0.0.1:11434/v1")
    anthropic_model = AnthropicModel("claude-sonnet-4-5", api_key="sk-x", name="claude")

    assert openai_model.name == "openai:llama3.2"
    assert openai_model.base_url == "http://127.0.0.1:11434/v1/"
    assert anthropic_model.name == "claude"
    assert "local" not in repr(openai_model)


# -- what the log holds ----------------------------------------------------------------------------


def _spec(**changes: object) -> AgentSpec:
    return AgentSpec(name="a", model="m", system_prompt="", max_iterations=3, **changes)  # type: ignore[arg-type]


def test_unset_new_fields_leave_the_bytes_0_1_0_wrote() -> None:
    started = RunStarted(run_id="r", seq=1, at=AT, agent=_spec(), input="hi", executor_version="0.1.0")
    responded = ModelResponded(run_id="r", seq=2, at=AT, step=1, usage=Usage(input_tokens=5), latency=0.5)

    assert "model_settings" not in event_json(started)
    assert '"usage":{"input_tokens":5,"output_tokens":0}' in event_json(responded)
    assert "finish_reason" not in event_json(responded)


def test_set_fields_are_recorded_and_read_back() -> None:
    settings = ModelSettings(temperature=0.0, seed=1, stream=True)
    started = RunStarted(
        run_id="r", seq=1, at=AT, agent=_spec(model_settings=settings), input="hi", executor_version="x"
    )
    usage = Usage(input_tokens=5, output_tokens=2, cached_input_tokens=4, reasoning_tokens=1)
    responded = ModelResponded(
        run_id="r", seq=2, at=AT, step=1, usage=usage, latency=0.5, finish_reason="stop"
    )

    for event in (started, responded):
        assert type(event).model_validate_json(event_json(event)) == event
    assert rebuild([started]).agent.model_settings == settings


def test_the_fingerprint_changes_only_when_settings_are_set() -> None:
    unset = request_fingerprint("m", "tools", "transcript")
    assert unset == request_fingerprint("m", "tools", "transcript", None)
    colder = request_fingerprint("m", "tools", "transcript", ModelSettings(temperature=0.0))
    warmer = request_fingerprint("m", "tools", "transcript", ModelSettings(temperature=1.0))
    assert len({unset, colder, warmer}) == 3
    started = RunStarted(
        run_id="r",
        seq=1,
        at=AT,
        agent=_spec(model_settings=ModelSettings(seed=3)),
        input="hi",
        executor_version="x",
    )
    assert (
        rebuild([started]).fingerprint != rebuild([started.model_copy(update={"agent": _spec()})]).fingerprint
    )


def test_usage_sums_what_was_reported_and_keeps_unreported_unknown() -> None:
    reported = Usage(input_tokens=10, output_tokens=5, cached_input_tokens=4)
    silent = Usage(input_tokens=1, output_tokens=1)

    total = reported + silent + silent

    assert total == Usage(input_tokens=12, output_tokens=7, cached_input_tokens=4)
    assert (silent + silent).cached_input_tokens is None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5", "retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "Thu, 01 Jan 2026 00:00:30 GMT", "date": "Thu, 01 Jan 2026 00:00:00 GMT"}, 30.0),
        ({"retry-after": "Thu, 01 Jan 2026 00:00:30 GMT"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-4"}, 0.0),
        ({}, None),
    ],
)
def test_retry_after_is_read_from_either_header(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(headers) == seconds


def test_the_readme_example_records_against_a_local_server_and_replays(tmp_path: Path) -> None:
    first = Scripted(
        calls=(Call("call_1", "add", {"a": 1234, "b": 4321}),), input_tokens=96, output_tokens=18
    )
    second = Scripted(text="1234 + 4321 = 5555.", input_tokens=131, output_tokens=12, cached_tokens=0)
    with serving_in_thread(
        json_reply(openai_completion(first)), json_reply(openai_completion(second))
    ) as server:
        environment = {
            **os.environ,
            "OPENAI_BASE_URL": f"{server.url}/v1",
            "OPENAI_API_KEY": "local",
            "EXECUTUS_DB": f"sqlite:///{tmp_path / 'runs.db'}",
        }
        environment.pop("EXECUTUS_MODEL", None)
        shown = subprocess.run(
            [sys.executable, str(EXAMPLES / "real_model.py")],
            env=environment,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout

    assert ": ok, 2 steps\n" in shown
    assert "output: 1234 + 4321 = 5555.\n" in shown
    assert (
        "usage: input_tokens=227 output_tokens=30 cached_input_tokens=3 "
        "cache_write_tokens=None reasoning_tokens=4\n" in shown
    )
    assert ": identical (" in shown
    assert [received.body["model"] for received in server.received] == ["gpt-4.1-mini"] * 2


def test_agent_settings_reach_the_wire_are_recorded_and_replay(db: SqlStore) -> None:
    settings = ModelSettings(temperature=0.0, max_tokens=50, seed=11)

    async def record() -> tuple[str, list[dict[str, object]]]:
        async with LoopbackServer() as server:
            server.serve(json_reply(openai_completion(Scripted(text="5"))))
            async with OpenAIModel("gpt-4.1-mini", api_key="k", base_url=server.url + "/v1") as model:
                agent = Agent(name="calc", model=model, model_settings=settings)
                result = await Executor(db, clock=SystemClock()).run(agent, None, "2+3?")
            return result.run_id, [received.body for received in server.received]

    run_id, bodies = asyncio.run(record())

    assert (bodies[0].get("temperature"), bodies[0].get("seed")) == (0.0, 11)
    events = db.read_run(run_id)
    assert isinstance(events[0], RunStarted)
    assert events[0].agent.model_settings == settings
    responded = [event for event in events if isinstance(event, ModelResponded)]
    assert responded[0].finish_reason == "stop"
    replayed = Replayer(blobs=db).replay_run(events)
    assert replayed.identical, replayed.report()
