"""Secrets are redacted before anything is written or hashed, while the live run sees them.

A run is recorded with one planted secret per built-in detector plus three user rules, spread
over its input, tool arguments, tool result and model text. Afterwards no secret appears in
the raw SQLite file, in any text column of PostgreSQL, in an export, in ``show --json``, in
``why`` or in an HTML report (``report RUN`` and ``report --all``); the run still verifies and
replays identically.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from executus import Agent, ConfigurationError, Executor, Invocation, SequentialIds, VirtualClock, tool
from executus._store import InlineWriter
from executus.cli import cli
from executus.cli._common import Settings
from executus.redaction import FieldRule, FunctionRule, PatternRule, RedactingStore, RedactingWriter, Redactor
from executus.storage import MemoryStore, event_json
from executus.testing import ScriptedModel, call
from replay import Replayer
from store import SqlStore, verify_all
from store._engine import create_store_engine

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
KEY = b"test-redaction-key-0123456789"

# The secret part of each planted value: what must be found nowhere.
SECRETS = {
    "openai_api_key": "sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6",
    "anthropic_api_key": "sk-ant-api03-Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4",
    "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "github_token": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "slack_token": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "google_api_key": "AIza" + "SyD-4bC3dE2fG1hI0jK9lM8nO7pQ6rS5tUv",
    "bearer_token": "tok_9f8e7d6c5b4a3210fedcba",
    "url_password": "hunter2-supersecret",
    "libpq_password": "s3cr3t-libpq-pw",
    "private_key": "MIIEpAIBAAKCAQEAr4nD0mPr1vAt3KeYb0dY",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "customer_id": "CUST-482913",  # a user PatternRule
    "card": "4111-1111-1111-1111",  # a user FieldRule
    "codename": "operation-bluebird",  # a user FunctionRule
}
RULES = (
    PatternRule("customer_id", r"CUST-\d{6}"),
    FieldRule("card", "*.arguments.card"),
    FunctionRule("codename", lambda path, value: re.findall(r"operation-[a-z]+", value)),
)

INPUT = (
    f"Use OPENAI_API_KEY={SECRETS['openai_api_key']} or {SECRETS['anthropic_api_key']}; "
    f"AWS {SECRETS['aws_access_key_id']} aws_secret_access_key={SECRETS['aws_secret_access_key']}. "
    f"Customer {SECRETS['customer_id']}, {SECRETS['codename']}."
)
RESULT = (
    f"slack {SECRETS['slack_token']}; headers: Authorization: Bearer {SECRETS['bearer_token']}; "
    f"dsn postgresql://app:{SECRETS['url_password']}@db.example.com/prod"
)
ANSWER = (
    f"Connect with host=db user=app password={SECRETS['libpq_password']} dbname=prod and\n"
    f"-----BEGIN RSA PRIVATE KEY-----\n{SECRETS['private_key']}\n-----END RSA PRIVATE KEY-----\n"
    f"session {SECRETS['jwt']}"
)


def agent(seen: list[dict[str, str]]) -> Agent:
    @tool
    def lookup(query: str, card: str) -> str:
        """Look something up."""
        seen.append({"query": query, "card": card})
        return RESULT

    model = ScriptedModel(
        [
            call(
                "lookup",
                query=f"repo {SECRETS['github_token']} maps {SECRETS['google_api_key']}",
                card=SECRETS["card"],
            ),
            ANSWER,
        ]
    )
    return Agent(name="leaky", model=model, tools=[lookup])


def record(store: object) -> tuple[str, str, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []
    redacting = RedactingStore(store, Redactor(KEY, RULES))  # type: ignore[arg-type]
    executor = Executor(redacting, clock=VirtualClock(START), ids=SequentialIds("leak-"))
    result = executor.run_sync(agent(seen), Invocation(), INPUT)
    assert result.status == "ok", result.error
    fired = {redaction.rule for redaction in redacting.redactions}
    assert fired == set(SECRETS)  # every detector and rule fired...
    assert all(secret not in repr(redacting.redactions) for secret in SECRETS.values())  # ...not its value
    return result.run_id, result.output or "", seen


def found_in(haystack: str | bytes) -> list[str]:
    return [
        name
        for name, secret in SECRETS.items()
        if (secret.encode() if isinstance(haystack, bytes) else secret) in haystack
    ]


def test_the_live_run_sees_real_values_and_the_log_only_placeholders() -> None:
    store = MemoryStore()
    run_id, output, seen = record(store)
    assert output == ANSWER  # the caller's result is the model's real answer
    assert seen == [
        {"query": f"repo {SECRETS['github_token']} maps {SECRETS['google_api_key']}", "card": SECRETS["card"]}
    ]
    log = "\n".join(event_json(event) for event in store.read_run(run_id))
    assert found_in(log) == []
    assert "[REDACTED:card:" in log
    assert "[REDACTED:libpq_password:" in log
    assert "dsn postgresql://app:[REDACTED:url_password:" in log  # the rest of the text is kept


def test_equal_secrets_get_equal_placeholders_and_other_keys_other_ones() -> None:
    one, other = Redactor(KEY), Redactor(b"another-key-0123456789")
    token = SECRETS["github_token"]
    first, _ = one.redact_text(f"a {token}")
    again, _ = one.redact_text(f"b {token}")
    assert first[2:] == again[2:]
    assert first != other.redact_text(f"a {token}")[0]
    assert one.redact_text(first) == (first, [])  # redacting twice changes nothing


def test_a_redactor_needs_a_real_key_and_usable_rule_names() -> None:
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        Redactor(b"short")
    with pytest.raises(ConfigurationError, match="rule name"):
        Redactor(KEY, [PatternRule("Bad Name", "x")])


def test_a_redacted_run_replays_identically() -> None:
    store = MemoryStore()
    run_id, _, _ = record(store)
    replayed = Replayer(blobs=store).replay_run(store.read_run(run_id))
    assert replayed.identical, replayed.report()


def test_the_redacting_writer_redacts_at_the_executors_future_write_port() -> None:
    store = MemoryStore()
    writer = RedactingWriter(InlineWriter(store), Redactor(KEY, RULES), read_run=store.read_run)
    plain = MemoryStore()
    executor = Executor(plain, clock=VirtualClock(START), ids=SequentialIds("leak-"), redaction=None)
    result = executor.run_sync(agent([]), Invocation(), INPUT)

    async def copy() -> None:
        for event in plain.read_run(result.run_id):
            await writer.append(result.run_id, [event], event.seq - 1)

    asyncio.run(copy())
    assert found_in("\n".join(event_json(e) for e in store.read_run(result.run_id))) == []
    assert Replayer(blobs=store).replay_run(store.read_run(result.run_id)).identical


def database_text(url: str) -> str:
    """Every text and binary column of every table, as a dump would hold them."""
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            tables = ("events", "runs", "blobs", "ledger")
            rows: Iterable[object] = [
                row for table in tables for row in connection.execute(text(f"SELECT * FROM {table}"))
            ]
            return "\n".join(repr(tuple(row)) for row in rows)  # type: ignore[arg-type]
    finally:
        engine.dispose()


def test_no_secret_is_stored_exported_or_shown(sql_url: str, tmp_path: Path) -> None:
    with SqlStore(sql_url) as sql_store:
        run_id, _, _ = record(sql_store)
        assert verify_all(sql_store).ok
        assert Replayer(blobs=sql_store).replay_run(sql_store.read_run(run_id)).identical
    if sql_url.startswith("sqlite"):
        database = Path(sql_url.removeprefix("sqlite:///"))
        for path in database.parent.glob(database.name + "*"):  # the file, and its WAL if any
            assert found_in(path.read_bytes()) == [], path
    assert found_in(database_text(sql_url)) == []
    settings = Settings(now=lambda: START)
    for args in (["export", run_id], ["show", run_id, "--json"], ["show", run_id], ["why", run_id]):
        shown = CliRunner().invoke(cli, ["--db", sql_url, *args], obj=settings)
        assert shown.exit_code == 0, shown.output
        assert found_in(shown.output) == [], args
    reports = tmp_path / "reports"
    for args in (
        ["report", run_id, "-o", str(tmp_path / "run.html")],
        ["report", "--all", "-o", str(reports)],
    ):
        written = CliRunner().invoke(cli, ["--db", sql_url, *args], obj=settings)
        assert written.exit_code == 0, written.output
    pages = [tmp_path / "run.html", reports / "index.html", *reports.glob("leak-*.html")]
    assert len(pages) == 3
    for page in pages:
        assert found_in(page.read_bytes()) == [], page
        assert found_in(unescape(page.read_text(encoding="utf-8"))) == [], page  # nor escaped
    report = (tmp_path / "run.html").read_text(encoding="utf-8")
    assert "Integrity: verified" in report
    assert "[REDACTED:card:" in report  # the page does show the run, placeholders and all


def test_a_store_wrapped_for_redaction_never_hands_out_its_bare_writer() -> None:
    class StoreWithWriter(MemoryStore):
        def writer(self) -> InlineWriter:
            return InlineWriter(self)

    inner = StoreWithWriter()
    plain = MemoryStore()
    result = Executor(plain, clock=VirtualClock(START), ids=SequentialIds("leak-"), redaction=None).run_sync(
        agent([]), Invocation(), INPUT
    )
    for store in (inner, MemoryStore()):
        port = RedactingStore(store, Redactor(KEY, RULES)).writer()

        async def copy(port: object = port) -> None:
            for event in plain.read_run(result.run_id):
                await port.append(result.run_id, [event], event.seq - 1)  # type: ignore[attr-defined]

        asyncio.run(copy())
        assert found_in("\n".join(event_json(e) for e in store.read_run(result.run_id))) == []


def test_case_insensitive_detectors_match_what_their_regex_matches() -> None:
    # (?i) matches U+017F (long s) for "s" and U+212A (Kelvin) for "k"; the cheap test that
    # decides whether a detector runs at all must not skip such text.
    redactor = Redactor(KEY)
    for planted, rule in (
        ("host=db pa\u017fsword=hunter2-secret", "libpq_password"),
        ("Authorization: BEARER tok_9f8e7d6c5b4a3210", "bearer_token"),
        ("AWS_SECRET_ACCESS_\u212aEY=" + SECRETS["aws_secret_access_key"], "aws_secret_access_key"),
    ):
        redacted, found = redactor.redact_text(planted)
        assert found == [("", rule)], planted
        assert f"[REDACTED:{rule}:" in redacted
