"""A streamed reply's secrets are redacted in its ``model_chunk`` events, wherever batches end.

Each chunk is redacted on its own, so a batch must never end inside anything a detector
matches. A reply holds one secret per built-in detector and one for a user pattern; it is
batched with a cut attempted at every position (a flush before another input, or the timer),
in deltas of several sizes, and as a tool call's arguments too. No piece of any secret may be
in a chunk, the chunks must still make the reply (redacted as a whole), and a recorded run's
SQLite file and PostgreSQL dump must hold no piece of any secret and replay identically.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_redaction import KEY, START
from test_redaction import SECRETS as PLANTED
from test_redaction_artifacts import pg_dump

from executus import (
    Agent,
    Executor,
    Invocation,
    ModelSettings,
    SequentialIds,
    SystemClock,
    VirtualClock,
    tool,
)
from executus._inputs import ModelChunksArrived
from executus._streaming import ChunkBatcher
from executus.events import ModelChunk, ModelResponded
from executus.models import TextDelta, ToolCallDelta
from executus.redaction import PatternRule, Redactor
from executus.testing import ScriptedModel, call
from replay import Replayer
from store import SqlStore

RULES = (PatternRule("customer_id", r"CUST-\d{6}"),)  # as in test_redaction

SECRETS = {
    **{
        name: PLANTED[name]
        for name in (
            "openai_api_key",
            "anthropic_api_key",
            "aws_access_key_id",
            "aws_secret_access_key",
            "github_token",
            "slack_token",
            "google_api_key",
            "bearer_token",
            "jwt",
            "customer_id",  # the user PatternRule
        )
    },
    "slack_webhook": "https://hooks.slack.com/services/T0AB12CD3/B0EF45GH6/qWeRtYuIoPaSdFgH",
    "url_password": "hunter2-superpass99",
    "libpq_password": "open sesame 4242 now",  # quoted: a secret with spaces in it
    "private_key": "MIIEpAIBAAKCAQEAr4nD0mPr1vAt3KeYb0dY\nQm9keSBvZiB0aGUga2V5IGxpbmUgdHdv",
}
REPLY = (
    f"Use OPENAI_API_KEY={SECRETS['openai_api_key']} or {SECRETS['anthropic_api_key']}; "
    f"AWS {SECRETS['aws_access_key_id']} aws_secret_access_key = {SECRETS['aws_secret_access_key']}. "
    f"Customer {SECRETS['customer_id']}, slack {SECRETS['slack_token']} at {SECRETS['slack_webhook']} "
    f"with Authorization: Bearer  {SECRETS['bearer_token']}; dsn postgresql://app:{SECRETS['url_password']}"
    f"@db.example.com/prod; repo {SECRETS['github_token']} maps {SECRETS['google_api_key']}.\n"
    f"Connect with host=db password = '{SECRETS['libpq_password']}' dbname=prod and\n"
    f"-----BEGIN RSA PRIVATE KEY-----\n{SECRETS['private_key']}\n-----END RSA PRIVATE KEY-----\n"
    f"session {SECRETS['jwt']} done."
)
PIECE = 6
"""A secret cut anywhere leaves a piece at least this long (every secret has 2 * PIECE - 1)."""
PIECES = {secret[at : at + PIECE] for secret in SECRETS.values() for at in range(len(secret) - PIECE + 1)}


def pieces_in(haystack: str | bytes) -> set[str]:
    """Pieces of secrets found in ``haystack`` (any piece means a secret was stored in part)."""
    if isinstance(haystack, bytes):
        return {piece for piece in PIECES if piece.encode() in haystack}
    return {piece for piece in PIECES if piece in haystack}


def test_every_secret_is_long_enough_to_leave_a_piece_when_cut() -> None:
    assert all(len(secret) >= 2 * PIECE - 1 for secret in SECRETS.values())
    assert pieces_in(Redactor(KEY, RULES).redact_text(REPLY)[0]) == set()  # the detectors find each
    assert {rule for _, rule in Redactor(KEY, RULES).redact_text(REPLY)[1]} == set(SECRETS)


def batches(
    deltas: list[TextDelta | ToolCallDelta], cut_after: int | None, characters: int
) -> list[ModelChunksArrived]:
    """The batches of a stream of ``deltas``, with a flush (as before another input) after delta
    number ``cut_after``, and the stream's final flush."""
    taken: list[ModelChunksArrived] = []

    async def stream() -> None:
        batcher = ChunkBatcher(1, SystemClock(), taken.append, seconds=3600.0, characters=characters)
        for number, delta in enumerate(deltas):
            batcher.add(delta)
            if number == cut_after:
                batcher.flush()
        batcher.flush(final=True)

    asyncio.run(stream())
    return taken


def text_deltas(text: str, size: int) -> list[TextDelta | ToolCallDelta]:
    return [TextDelta(text=text[at : at + size]) for at in range(0, len(text), size)]


@pytest.mark.parametrize("size", [1, 3, 7])
def test_no_cut_of_a_streamed_text_parts_a_secret(size: int) -> None:
    redactor = Redactor(KEY, RULES)
    whole = redactor.redact_text(REPLY)[0]
    deltas = text_deltas(REPLY, size)
    for characters in (1, 2048):  # a flush tried after every delta, or only where cut
        for cut_after in range(len(deltas)):
            texts = [redactor.redact_text(batch.text)[0] for batch in batches(deltas, cut_after, characters)]
            assert pieces_in("\n".join(texts)) == set(), (characters, cut_after, texts)
            assert "".join(texts) == whole, (characters, cut_after)


@pytest.mark.parametrize("size", [1, 4])
def test_no_cut_of_streamed_tool_call_arguments_parts_a_secret(size: int) -> None:
    redactor = Redactor(KEY, RULES)
    arguments = json.dumps({"note": REPLY, "token": SECRETS["github_token"]})
    whole = redactor.redact_text(arguments)[0]
    deltas: list[TextDelta | ToolCallDelta] = [ToolCallDelta(index=0, id="call-1", name="lookup")]
    deltas += [
        ToolCallDelta(index=0, arguments=arguments[at : at + size]) for at in range(0, len(arguments), size)
    ]
    for cut_after in range(len(deltas)):
        recorded = [
            redactor.redact_text(fragment.arguments)[0]
            for batch in batches(deltas, cut_after, 5)
            for fragment in batch.tool_calls
        ]
        assert pieces_in("\n".join(recorded)) == set(), (cut_after, recorded)
        assert "".join(recorded) == whole, cut_after


def test_a_word_is_held_back_until_it_ends_and_everything_is_recorded_at_the_end() -> None:
    recorded = [batch.text for batch in batches(text_deltas("one two three", 1), 5, 2048)]
    assert recorded == ["one ", "two three"]  # "tw" could have been the start of a secret


def test_text_with_no_whitespace_is_still_recorded_once_too_much_is_held_back() -> None:
    deltas = text_deltas("x" * 9000, 100)
    recorded = [len(batch.text) for batch in batches(deltas, None, 2048)]
    assert recorded[0] > 8000  # past HOLD_CHARACTERS (8,192) held back, it is recorded as it is
    assert sum(recorded) == 9000


@tool
def lookup(token: str) -> str:
    """Look a token up."""
    return "found"


@pytest.mark.parametrize(
    ("size", "timing"),
    [(1, "every delta"), (3, "every delta"), (7, "every delta"), (1, "timer"), (5, "timer")],
)
def test_a_recorded_streamed_run_holds_no_piece_of_a_secret(
    sql_url: str, size: int, timing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if timing == "every delta":
        monkeypatch.setattr("executus._streaming.FLUSH_CHARACTERS", 1)  # a batch cut tried after each
    elif sql_url.startswith("postgresql"):
        pytest.skip("PostgreSQL: one timing is enough")
    model = ScriptedModel(
        [call("lookup", token=f"use {SECRETS['github_token']} now"), REPLY], chunk_size=size, chunk_delay=0.15
    )
    agent = Agent(name="leaky", model=model, tools=[lookup], model_settings=ModelSettings(stream=True))
    with SqlStore(sql_url) as sql_store:
        executor = Executor(
            sql_store, clock=VirtualClock(START), ids=SequentialIds("leak-"), redaction=Redactor(KEY, RULES)
        )
        result = executor.run_sync(agent, Invocation(), "go")
        assert result.status == "ok", result.error
        assert result.output == REPLY

        stored = sql_store.read_run(result.run_id)
        chunks = [event for event in stored if isinstance(event, ModelChunk) and event.step == 2]
        (responded,) = [event for event in stored if isinstance(event, ModelResponded) and event.step == 2]
        assert len(chunks) > 1
        assert pieces_in("\n".join(chunk.text for chunk in chunks)) == set()
        assert "".join(chunk.text for chunk in chunks) == responded.text  # the reply, redacted whole
        assert Replayer(blobs=sql_store).replay_run(stored).identical

    if sql_url.startswith("sqlite"):
        database = Path(sql_url.removeprefix("sqlite:///"))
        for path in database.parent.glob(database.name + "*"):  # the file, and its WAL if any
            assert pieces_in(path.read_bytes()) == set(), path
    else:
        assert pieces_in(pg_dump(sql_url)) == set()
