"""Text from a log or a cassette never drives the terminal: a planted corpus of escape sequences,
in every place a run records text, goes through every command that prints it, in-process and as
a real process, and nothing of it reaches stdout or stderr raw."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import store as sql_store
from executus import Agent, Executor, Invocation, ModelSettings, SequentialIds, VirtualClock, tool
from executus._text import terminal_text
from executus.cli import cli
from executus.cli._common import Settings
from executus.storage import MemoryStore
from executus.testing import ScriptedModel, call
from replay.cassette import dump_cassette

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
EXECUTUS = Path(sys.executable).parent / "executus"

CORPUS = {
    "OSC 52 (writes the clipboard)": "\x1b]52;c;cm0gLXJmIH4=\x07",
    "OSC 8 (a hyperlink)": "\x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\",
    "OSC 0 (the window title)": "\x1b]0;pwned\x07",
    "CSI (clear screen, red)": "\x1b[2J\x1b[31m",
    "C1 CSI": "\x9b1;31m",
    "DCS": "\x1bP1$r0m\x1b\\",
    "backspace": "safe\x08\x08\x08\x08evil",
    "carriage return": "all good\rFAKE",
    "bidi override": "\u202egnp.exe",
}
PLANT = "".join(CORPUS.values())
# What must never be printed: the C0 controls but newline, DEL, C1, bidi controls.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
RUN_ID = "planted-" + PLANT


@tool
def fetch(url: str) -> str:
    """Fetch a page.

    Args:
        url: where.
    """
    return f"page {url} says {PLANT}"


@tool
def broken(reason: str) -> str:
    """Always fails.

    Args:
        reason: why.
    """
    raise RuntimeError(f"failed: {reason}")


def _record(event_store: MemoryStore | sql_store.SqlStore) -> None:
    model = ScriptedModel([call("fetch", url=PLANT), call("broken", reason=PLANT), f"answer: {PLANT}"])
    # Streamed: the reply's text is in model_chunk events as well as in model_responded.
    agent = Agent("agent" + PLANT, model, tools=[fetch, broken], model_settings=ModelSettings(stream=True))
    executor = Executor(event_store, clock=VirtualClock(START), ids=SequentialIds("id-"))
    executor.run_sync(agent, Invocation(run_id=RUN_ID, caller_id="caller" + PLANT), f"input {PLANT}")


@pytest.fixture(scope="module")
def planted_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('planted') / 'planted.db'}"
    with sql_store.open_store(url) as opened:
        _record(opened)
    return url


@pytest.fixture(scope="module")
def planted_cassette(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cassette of the planted run whose run id is planted too (import refuses such ids)."""
    memory = MemoryStore()
    _record(memory)
    stream = io.StringIO()
    dump_cassette(memory.read_run(RUN_ID), [], stream)
    path = tmp_path_factory.mktemp("cassette") / "planted.jsonl"
    path.write_text(stream.getvalue(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def clean_id_cassette(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The planted run under a plain run id: import accepts it and echoes its agent and status."""
    memory = MemoryStore()
    model = ScriptedModel([call("fetch", url=PLANT), f"answer: {PLANT}"])
    Executor(memory, clock=VirtualClock(START), ids=SequentialIds("clean-")).run_sync(
        Agent("agent" + PLANT, model, tools=[fetch]), Invocation(caller_id=PLANT), PLANT
    )
    stream = io.StringIO()
    dump_cassette(memory.read_run("clean-0001"), [], stream)
    path = tmp_path_factory.mktemp("clean") / "clean.jsonl"
    path.write_text(stream.getvalue(), encoding="utf-8")
    return path


def assert_inert(*texts: str) -> None:
    for text in texts:
        raw = RAW.search(text)
        assert raw is None, (
            f"raw {raw.group()!r} printed in: {text[max(0, raw.start() - 40) : raw.end() + 40]!r}"
        )


def invoke(url: str, *args: str) -> Result:
    settings = Settings(now=lambda: START + timedelta(hours=1))
    return CliRunner().invoke(cli, ["--db", url, *args], obj=settings)


@pytest.mark.parametrize(
    "args",
    [
        ["runs"],
        ["runs", "--json"],
        ["show", RUN_ID],
        ["show", RUN_ID, "--json"],
        ["why", RUN_ID],
        ["why", RUN_ID, "--json"],
        ["replay", RUN_ID],
        ["replay", RUN_ID, "--json"],
        ["replay", RUN_ID, "--what-if-critic", "none"],
        ["replay", "--all"],
        ["replay", "--all", "--json"],
        ["show", RUN_ID + "x"],  # an error line echoing a typed run id
        ["show", "planted-"],  # an error line listing stored run ids
    ],
    ids=" ".join,
)
def test_no_command_prints_log_text_raw(planted_url: str, args: list[str]) -> None:
    result = invoke(planted_url, *args)
    assert result.exit_code in (0, 2), result.output
    assert_inert(result.stdout, result.stderr)


def test_the_planted_text_is_shown_escaped_not_dropped(planted_url: str) -> None:
    shown = invoke(planted_url, "show", RUN_ID).stdout
    assert "\\x1b]52;c;" in shown
    assert "\\u202egnp.exe" in shown
    assert "\\x9b1;31m" in shown
    why = invoke(planted_url, "why", RUN_ID).stdout
    assert "failed: \\x1b]52;c;" in why


def test_json_output_still_parses_to_the_recorded_text(planted_url: str) -> None:
    import json

    events = [json.loads(line) for line in invoke(planted_url, "show", RUN_ID, "--json").stdout.splitlines()]
    assert events[0]["run_id"] == RUN_ID
    assert events[-1]["output"] == f"answer: {PLANT}"


def test_import_and_export_messages_are_inert(
    tmp_path: Path, planted_url: str, planted_cassette: Path, clean_id_cassette: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'target.db'}"
    refused = invoke(url, "import", str(planted_cassette))
    assert refused.exit_code == 2
    assert_inert(refused.stdout, refused.stderr)
    imported = invoke(url, "import", str(clean_id_cassette))
    assert imported.exit_code == 0, imported.output
    assert_inert(imported.stdout, imported.stderr)
    exported = invoke(planted_url, "export", RUN_ID, "-o", str(tmp_path / "out.jsonl"))
    assert exported.exit_code == 0, exported.output
    assert_inert(exported.stdout, exported.stderr)
    replayed = invoke(url, "replay", str(planted_cassette))
    assert_inert(replayed.stdout, replayed.stderr)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "EXECUTUS_DB"}
    return subprocess.run(
        [str(EXECUTUS), *args], capture_output=True, text=True, timeout=60, env=environment, check=False
    )


@pytest.mark.skipif(not EXECUTUS.exists(), reason="the executus console script is not installed")
def test_real_processes_print_nothing_raw(
    tmp_path: Path, planted_url: str, planted_cassette: Path, clean_id_cassette: Path
) -> None:
    commands: Sequence[Sequence[str]] = [
        ["--db", planted_url, "runs"],
        ["--db", planted_url, "show", RUN_ID],
        ["--db", planted_url, "why", RUN_ID],
        ["--db", planted_url, "replay", RUN_ID],
        ["--db", planted_url, "replay", "--all"],
        ["--db", planted_url, "export", RUN_ID, "-o", str(tmp_path / "out.jsonl")],
        ["--db", f"sqlite:///{tmp_path / 'other.db'}", "import", str(planted_cassette)],
        ["--db", f"sqlite:///{tmp_path / 'other.db'}", "import", str(clean_id_cassette)],
    ]
    for command in commands:
        result = _run(*command)
        assert result.returncode in (0, 2), (command, result.stderr)
        assert "Traceback" not in result.stderr
        assert_inert(result.stdout, result.stderr)


@pytest.mark.parametrize("payload", CORPUS.values(), ids=CORPUS.keys())
def test_truncation_never_splits_an_escape(payload: str) -> None:
    text = "x" * 5 + payload + "y" * 5
    whole = terminal_text(text)
    for limit in range(1, len(whole) + 2):
        cut = terminal_text(text, limit)
        assert len(cut) <= limit
        assert RAW.search(cut) is None
        kept = cut.removesuffix("…")
        assert whole.startswith(kept)
        # the cut falls between escapes: what is kept ends a whole character's rendering
        assert any(terminal_text(text[:end]) == kept for end in range(len(text) + 1)), (limit, cut)


SGR = re.compile(r"\x1b\[[0-9;]*m")  # rich's own colours on a terminal


@pytest.mark.parametrize(
    "args", [["runs"], ["show", RUN_ID], ["why", RUN_ID], ["replay", "--all"]], ids=" ".join
)
def test_styled_terminal_output_is_inert_too(planted_url: str, args: list[str]) -> None:
    settings = Settings(now=lambda: START + timedelta(hours=1))
    result = CliRunner().invoke(cli, ["--db", planted_url, *args], obj=settings, env={"FORCE_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert SGR.search(result.stdout), "styled as on a terminal"
    assert_inert(SGR.sub("", result.stdout), SGR.sub("", result.stderr))


def test_runs_fits_80_columns_whatever_the_log_holds(planted_url: str) -> None:
    lines = invoke(planted_url, "runs").stdout.splitlines()
    assert len(lines) == 2
    assert max(len(line) for line in lines) <= 80
    assert "agent\\x1b]52;…" in lines[1]  # the planted agent name is cut after escaping, not wrapped
