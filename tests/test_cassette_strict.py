"""Importing a cassette is as strict as the store's own writes: anything the store would not have
written is refused with one line naming the cassette line, and nothing is written, blobs included."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_replay_scenarios import GOLDEN

from executus.cli import cli
from executus.storage import GENESIS_HASH, chain_hash
from replay import CassetteError, read_cassette

OK = (GOLDEN / "ok.jsonl").read_text(encoding="utf-8")  # 20 events, 2 blobs
KILLED = (GOLDEN / "killed.jsonl").read_text(encoding="utf-8")


def sealed(lines: list[str], **header: object) -> str:
    """The cassette with its header's head_hash (and any given header fields) made to match,
    so that only the planted fault can be what is refused."""
    fields = json.loads(lines[0]) | header
    head = GENESIS_HASH
    for line in lines[1 : 1 + int(fields["events"])]:
        head = chain_hash(head, line)
    fields["head_hash"] = head
    return "\n".join([json.dumps(fields, sort_keys=True, separators=(",", ":")), *lines[1:]]) + "\n"


def replace(text: str, line: int, old: str, new: str) -> str:
    lines = text.splitlines()
    assert old in lines[line - 1], lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    return sealed(lines)


def nested(depth: int) -> str:
    arguments = "[" * depth + "]" * depth
    return replace(OK, 4, '{"query":"otters"}', '{"query":' + arguments + "}")


def after_finish(text: str) -> str:
    lines = text.splitlines()
    header = json.loads(lines[0])
    last = json.loads(lines[header["events"]])
    extra = dict(last, seq=last["seq"] + 1)
    extra_line = json.dumps(extra, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    events = [*lines[1 : 1 + header["events"]], extra_line]
    return sealed([lines[0], *events, *lines[1 + header["events"] :]], events=header["events"] + 1)


def with_run_id(text: str, run_id: str) -> str:
    lines = [
        line.replace('"run_id":"run-0001"', json.dumps({"run_id": run_id})[1:-1])
        for line in text.splitlines()
    ]
    return sealed(lines)


FAULTS: dict[str, tuple[Callable[[], str], str]] = {
    "a string for an integer": (
        lambda: replace(OK, 4, '"seq":3', '"seq":"3"'),
        r"line 4: not an event as the store writes it: seq",
    ),
    "a float for an integer": (
        lambda: replace(OK, 4, '"step":1', '"step":1.0'),
        r"line 4: .*step is '1.0' where the store writes '1'",
    ),
    "NaN": (
        lambda: replace(OK, 4, '"latency":0.0', '"latency":NaN'),
        r"line 4: NaN is not a number JSON allows",
    ),
    "Infinity": (
        lambda: replace(OK, 4, '"latency":0.0', '"latency":1e999'),
        r"line 4: the number 1e999 is out of range",
    ),
    "10**30": (
        lambda: replace(OK, 4, '"input_tokens":38', f'"input_tokens":{10**30}'),
        r"line 4: the integer 1000+… is out of range",
    ),
    "negative usage": (
        lambda: replace(OK, 4, '"input_tokens":38', '"input_tokens":-38'),
        r"line 4: model_responded at seq 3 has negative token usage",
    ),
    "deep nesting": (lambda: nested(100), r"line 4: nested more than 64 levels deep"),
    "very deep nesting": (lambda: nested(100_000), r"line 4: nested more than 64 levels deep"),
    "a lone surrogate": (
        lambda: replace(OK, 4, '"otters"', '"ott\\ud800ers"'),
        r"line 4: text holds a lone surrogate \(U\+D800\)",
    ),
    "time going back": (
        lambda: replace(OK, 4, '"at":"2026-03-01T09:30:00Z"', '"at":"2026-03-01T09:29:00Z"'),
        r"line 4: model_responded at seq 3 is earlier",
    ),
    "an event after run_finished": (
        lambda: after_finish(KILLED),
        r"the events do not make a run: .* after run_finished",
    ),
    "a header status the events deny": (
        lambda: sealed(KILLED.splitlines(), status="ok"),
        r"line 1: the header says status 'ok', the events 'killed'",
    ),
    "a header agent the events deny": (
        lambda: sealed(OK.splitlines(), agent="someone"),
        r"line 1: the header says agent 'someone'",
    ),
    "a string for the header's count": (
        lambda: sealed(OK.splitlines(), blobs="2"),
        r"line 1: invalid header: blobs",
    ),
    "an empty run id": (lambda: with_run_id(OK, ""), r"line 1: run id '' may hold only"),
    "a 1 MB run id": (
        lambda: with_run_id(OK, "r" * 1_000_000),
        r"line 1: run id 'rrrr.*'… is longer than 128 characters",
    ),
    "an escape in the run id": (
        lambda: with_run_id(OK, "run\x1b]52;c;eA==\x07"),
        r"line 1: run id 'run\\x1b\]52;c;eA==\\x07' may hold only",
    ),
    "a path in the run id": (
        lambda: with_run_id(OK, "../../etc"),
        r"line 1: run id '../../etc' may hold only",
    ),
}


@pytest.mark.parametrize(("fault", "message"), FAULTS.values(), ids=FAULTS.keys())
def test_reading_refuses_what_the_store_would_not_write(fault: Callable[[], str], message: str) -> None:
    with pytest.raises(CassetteError, match=message):
        read_cassette(io.StringIO(fault()))


def test_the_golden_cassettes_still_read() -> None:
    for path in sorted(GOLDEN.glob("**/*.jsonl")):
        read_cassette(io.StringIO(path.read_text(encoding="utf-8")))


def _tables(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as connection:
        return {
            table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("runs", "events", "blobs")
        }


@pytest.mark.parametrize(
    "fault", ["NaN", "an event after run_finished", "a lone surrogate", "an empty run id"]
)
def test_a_refused_import_is_one_line_and_writes_nothing(tmp_path: Path, fault: str) -> None:
    database = tmp_path / "runs.db"
    url = f"sqlite:///{database}"
    assert CliRunner().invoke(cli, ["--db", url, "runs"]).exit_code == 0  # creates the schema
    cassette = tmp_path / "bad.jsonl"
    broken, _ = FAULTS[fault]
    text = broken()
    if fault != "an event after run_finished":  # the ok run's cassette carries two blobs
        assert '"blob":' in text
    cassette.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["--db", url, "import", str(cassette)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: cassette line") or result.stderr.startswith("error: cassette:")
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert _tables(database) == {"runs": 0, "events": 0, "blobs": 0}


def test_crlf_line_ends_import_and_replay_alike(tmp_path: Path) -> None:
    cassette = tmp_path / "ok.jsonl"
    cassette.write_bytes(OK.replace("\n", "\r\n").encode("utf-8"))
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    replayed = CliRunner().invoke(cli, ["--db", url, "replay", str(cassette)])
    assert replayed.exit_code == 0, replayed.output
    imported = CliRunner().invoke(cli, ["--db", url, "import", str(cassette)])
    assert imported.exit_code == 0, imported.output
    assert "imported run run-0001 (20 events, ok)" in imported.stdout
    from_stdin = CliRunner().invoke(cli, ["--db", url, "import", "-"], input=cassette.read_bytes())
    assert from_stdin.exit_code == 0, from_stdin.output
    assert "identical; nothing to do" in from_stdin.stdout
