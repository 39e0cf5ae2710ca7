"""Redaction is on by default: a plain ``Executor`` stores no secret a built-in detector knows.

The run of :mod:`test_redaction` (one planted secret per built-in detector, in the input, the
tool arguments, the tool result and the model's text) is recorded by an executor given no
redactor and no wrapper, on every backend and through each kind of writer it may choose. The
user-rule secrets of that run stay (no user rules are configured), the built-in ones are found
nowhere, while the model and the tool saw every real value; ``redaction=None`` stores them all.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_executor_resume import _crash_when
from test_redaction import INPUT, KEY, RESULT, RULES, SECRETS, START, agent, database_text, found_in

from executus import Agent, ConfigurationError, Executor, Invocation, SequentialIds, VirtualClock, tool
from executus._redact import DEFAULT_REDACTION_KEY, REDACTION_KEY_VARIABLE
from executus._store import InlineWriter
from executus.redaction import BUILTIN_DETECTORS, RedactingStore, Redactor
from executus.storage import EventStore, MemoryStore, event_json
from executus.testing import ScriptedModel, call
from replay import Replayer
from store import SqlStore

BUILT_IN = {detector.name for detector in BUILTIN_DETECTORS}
USER_RULES = set(SECRETS) - BUILT_IN


def run(executor: Executor) -> tuple[str, Agent, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []
    leaky = agent(seen)
    result = executor.run_sync(leaky, Invocation(), INPUT)
    assert result.status == "ok", result.error
    return result.run_id, leaky, seen


def stored(store: EventStore, run_id: str) -> str:
    return "\n".join(event_json(event) for event in store.read_run(run_id))


def assert_the_live_run_saw_real_values(leaky: Agent, seen: list[dict[str, str]]) -> None:
    assert isinstance(leaky.model, ScriptedModel)
    sent = "\n".join(message.model_dump_json() for message in leaky.model.requests[-1].messages)
    assert INPUT in sent  # the model got the real input...
    assert RESULT in sent  # ...and the real tool result
    assert seen[0]["query"] == f"repo {SECRETS['github_token']} maps {SECRETS['google_api_key']}"


@pytest.mark.parametrize("clock", ["system", "virtual"])
def test_a_default_executor_stores_no_built_in_secret(
    store: EventStore, clock: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # System clock on SQL: the store's writer thread; virtual clock or memory: an InlineWriter.
    monkeypatch.delenv(REDACTION_KEY_VARIABLE, raising=False)
    executor = Executor(store, clock=VirtualClock(START) if clock == "virtual" else None)
    run_id, leaky, seen = run(executor)
    log = stored(store, run_id)
    assert set(found_in(log)) == USER_RULES  # no user rules configured: those stay
    placeholder = Redactor(DEFAULT_REDACTION_KEY).placeholder("github_token", SECRETS["github_token"])
    assert placeholder in log  # keyed by the public default key when none is configured
    assert_the_live_run_saw_real_values(leaky, seen)
    assert Replayer(blobs=store).replay_run(store.read_run(run_id)).identical


def test_no_built_in_secret_reaches_the_database_files_or_rows(sql_url: str) -> None:
    with SqlStore(sql_url) as sql_store:
        _, leaky, seen = run(Executor(sql_store))
        assert_the_live_run_saw_real_values(leaky, seen)
    if sql_url.startswith("sqlite"):
        database = Path(sql_url.removeprefix("sqlite:///"))
        for path in database.parent.glob(database.name + "*"):  # the file, and its WAL if any
            assert set(found_in(path.read_bytes())) <= USER_RULES, path
    assert set(found_in(database_text(sql_url))) == USER_RULES


def test_redaction_none_stores_values_verbatim(sql_url: str) -> None:
    with SqlStore(sql_url) as sql_store:
        run(Executor(sql_store, redaction=None))
    assert set(found_in(database_text(sql_url))) == set(SECRETS)


def test_an_explicit_writer_is_redacted_too() -> None:
    store = MemoryStore()
    run_id, _, _ = run(Executor(MemoryStore(), writer=InlineWriter(store), clock=VirtualClock(START)))
    assert set(found_in(stored(store, run_id))) == USER_RULES


def test_the_key_comes_from_the_environment_and_replay_needs_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REDACTION_KEY_VARIABLE, KEY.decode())
    store = MemoryStore()
    run_id, _, _ = run(Executor(store, clock=VirtualClock(START), ids=SequentialIds("env-")))
    log = stored(store, run_id)
    assert Redactor(KEY).placeholder("jwt", SECRETS["jwt"]) in log
    assert Redactor(DEFAULT_REDACTION_KEY).placeholder("jwt", SECRETS["jwt"]) not in log
    monkeypatch.delenv(REDACTION_KEY_VARIABLE)  # the recorded text is already redacted
    assert Replayer(blobs=store).replay_run(store.read_run(run_id)).identical
    monkeypatch.setenv(REDACTION_KEY_VARIABLE, "short")
    with pytest.raises(ConfigurationError, match=REDACTION_KEY_VARIABLE):
        Executor(MemoryStore())


def test_a_redacting_store_is_not_redacted_twice_under_the_default_key() -> None:
    store = MemoryStore()
    run_id, _, _ = run(Executor(RedactingStore(store, Redactor(KEY, RULES)), clock=VirtualClock(START)))
    log = stored(store, run_id)
    assert found_in(log) == []
    assert Redactor(KEY).placeholder("aws_access_key_id", SECRETS["aws_access_key_id"]) in log
    assert (
        Redactor(DEFAULT_REDACTION_KEY).placeholder("aws_access_key_id", SECRETS["aws_access_key_id"])
        not in log
    )
    assert Replayer(blobs=store).replay_run(store.read_run(run_id)).identical


def test_an_executor_redactor_and_a_redacting_store_compose_and_still_replay() -> None:
    # The executor's redactor goes first; the store's sees its placeholders, leaves them alone,
    # and adds its user rules (fingerprinting the requests again over the twice-redacted log).
    store = MemoryStore()
    other = b"the-stores-own-key-0123456789"
    executor = Executor(
        RedactingStore(store, Redactor(other, RULES)), redaction=Redactor(KEY), clock=VirtualClock(START)
    )
    run_id, _, _ = run(executor)
    log = stored(store, run_id)
    assert found_in(log) == []
    assert Redactor(KEY).placeholder("slack_token", SECRETS["slack_token"]) in log
    assert Redactor(other).placeholder("customer_id", SECRETS["customer_id"]) in log
    assert Replayer(blobs=store).replay_run(store.read_run(run_id)).identical


@tool
async def slow_lookup(query: str) -> str:
    """Look something up, slowly.

    Args:
        query: what to look up.
    """
    await asyncio.sleep(30)
    return RESULT


def test_a_resumed_run_is_redacted_and_still_replays() -> None:
    # The first secret comes after the resume: the new executor's redactor has not seen the
    # run, and must fold its stored history to fingerprint the next request as a replay will.
    crashed = _crash_when(
        "tool_started", Agent("r", ScriptedModel([call("slow_lookup", query="x")]), tools=[slow_lookup])
    )
    later = VirtualClock(START.replace(hour=10))
    model = ScriptedModel([call("slow_lookup", query=f"key {SECRETS['openai_api_key']}"), "done"])
    result = later.run(
        Executor(crashed, clock=later).resume("run-0001", Agent("r", model, tools=[slow_lookup]))
    )
    assert result.status == "ok", result.error
    assert SECRETS["openai_api_key"] in model.requests[-1].messages[-2].model_dump_json()  # the model saw it
    log = stored(crashed, "run-0001")
    assert found_in(log) == []
    assert "[REDACTED:openai_api_key:" in log
    assert Replayer(blobs=crashed).replay_run(crashed.read_run("run-0001")).identical
