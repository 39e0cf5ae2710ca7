"""`executus export`, `import` and `db upgrade|current`: round trips, conflicts and errors."""

from __future__ import annotations

import io
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import store as sql_store
from executus import Agent, Executor, Invocation, SequentialIds, VirtualClock
from executus.cli import cli
from executus.cli._common import Settings
from executus.storage import MemoryStore
from executus.testing import ScriptedModel
from replay.cassette import write_cassette

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def demo_url(demo_template: Path, tmp_path: Path) -> str:
    """A private copy of the demo database (some tests write to it)."""
    path = tmp_path / "demo.db"
    shutil.copyfile(demo_template, path)
    return f"sqlite:///{path}"


def invoke(*args: str, input: str | None = None) -> Result:
    settings = Settings(now=lambda: START + timedelta(hours=1))
    return CliRunner().invoke(cli, list(args), obj=settings, input=input)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.mark.parametrize("run_id", ["demo-0002", "demo-0006"], ids=["killed", "with-blobs"])
def test_export_import_export_is_byte_identical(demo_url: str, tmp_path: Path, run_id: str) -> None:
    first = tmp_path / "first.jsonl"
    exported = invoke("--db", demo_url, "export", run_id, "-o", str(first))
    assert exported.exit_code == 0, exported.output
    assert exported.stderr.startswith(f"exported run {run_id} (")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    imported = invoke("--db", other, "import", str(first))
    assert imported.exit_code == 0, imported.output
    assert imported.stdout.startswith(f"imported run {run_id} (")
    again = invoke("--db", other, "export", run_id)
    assert again.exit_code == 0
    assert again.stdout_bytes == first.read_bytes()
    with sql_store.open_store(demo_url) as source, sql_store.open_store(other) as target:
        assert [r.hash for r in source.records(run_id)] == [r.hash for r in target.records(run_id)]


def test_export_to_stdout_is_a_cassette_with_a_header(demo_url: str) -> None:
    result = invoke("--db", demo_url, "export", "demo-0004")
    lines = result.stdout.splitlines()
    header = json.loads(lines[0])
    assert (header["format"], header["version"], header["run_id"]) == ("executus-cassette", 1, "demo-0004")
    assert len(lines) == 1 + header["events"] + header["blobs"]


def test_importing_an_identical_run_again_is_a_no_op(demo_url: str, tmp_path: Path) -> None:
    cassette = invoke("--db", demo_url, "export", "demo-0001").stdout
    result = invoke("--db", demo_url, "import", "-", input=cassette)
    assert result.exit_code == 0
    assert "is already in" in result.stdout
    assert "identical" in result.stdout


def test_importing_a_different_run_with_the_same_id_is_refused(demo_url: str) -> None:
    other = MemoryStore()
    agent = Agent("impostor", ScriptedModel(["hello"]))
    Executor(other, clock=VirtualClock(START), ids=SequentialIds("demo-", start=2)).run_sync(
        agent, Invocation(), "hi"
    )
    stream = io.StringIO()
    write_cassette(other, "demo-0002", stream)
    result = invoke("--db", demo_url, "import", "-", input=stream.getvalue())
    assert_one_line_error(result, "run demo-0002 already exists", "refusing to import")


def test_a_malformed_cassette_names_the_line_and_why(demo_url: str, tmp_path: Path) -> None:
    lines = invoke("--db", demo_url, "export", "demo-0002").stdout.splitlines()
    lines[2] = '{"kind": "model_requested", "seq": '
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines) + "\n")
    assert_one_line_error(invoke("--db", demo_url, "import", str(broken)), "cassette line 3: not valid JSON")
    broken.write_text("just some text\n")
    assert_one_line_error(invoke("--db", demo_url, "import", str(broken)), "cassette line 1:")


def test_an_unreadable_cassette_is_one_line(demo_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    assert_one_line_error(invoke("--db", demo_url, "import", str(missing)), f"cannot read {missing}")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    assert_one_line_error(invoke("--db", demo_url, "import", str(binary)), "not UTF-8")


@pytest.mark.parametrize("target", ["missing-dir/out.jsonl", "."], ids=["no-directory", "a-directory"])
def test_an_unwritable_output_path_is_one_line(demo_url: str, tmp_path: Path, target: str) -> None:
    path = tmp_path / target
    result = invoke("--db", demo_url, "export", "demo-0002", "-o", str(path))
    assert_one_line_error(result, f"cannot write {path}")


def test_export_of_an_unknown_run_suggests_close_ids(demo_url: str) -> None:
    assert_one_line_error(invoke("--db", demo_url, "export", "demo-0010"), "did you mean demo-0001")


def test_db_current_and_upgrade_on_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    url = f"sqlite:///{path}"
    before = invoke("db", "current", "--db", url)
    assert before.exit_code == 0, before.output
    assert before.stdout.splitlines() == [
        f"database  {url}",
        f"file      {path} (not created yet: any command creates it)",
        "revision  none: a new database, created on first use",
    ]
    upgraded = invoke("--db", url, "db", "upgrade")
    head = sql_store.head_revision()
    assert upgraded.stdout == f"{url}: schema revision none → {head}\n"
    assert (
        invoke("db", "upgrade", "--db", url).stdout
        == f"{url} is already at the newest schema revision {head}\n"
    )
    assert invoke("db", "--db", url, "current").stdout.splitlines()[-1] == f"revision  {head} (newest)"


def test_db_current_uses_the_environment_and_flags_a_database_behind(
    demo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXECUTUS_DB", demo_url)
    monkeypatch.setattr(sql_store._migrate, "head_revision", lambda: "9999")
    monkeypatch.setattr(sql_store, "head_revision", lambda: "9999")
    result = invoke("db", "current")
    assert result.stdout.splitlines()[0] == f"database  {demo_url}"
    assert "behind 9999: run `executus db upgrade`" in result.stdout


def test_db_commands_report_an_unusable_database_in_one_line() -> None:
    assert_one_line_error(
        invoke("db", "current", "--db", "mysql://x@y/z"), "unsupported database mysql://x@y/z"
    )
    assert_one_line_error(
        invoke("db", "upgrade", "--db", "sqlite:////nonexistent-dir/x.db"), "cannot open database"
    )
