"""Bad input is one line on stderr and exit 2, with nothing written; odd environments (an unusable
data directory, a read-only database, a newer schema, a closed pipe, a full disk) are handled."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import store as sql_store
from executus import DatabaseUnavailableError
from executus.cli import cli
from executus.cli._common import Settings

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
EXECUTUS = Path(sys.executable).parent / "executus"
needs_script = pytest.mark.skipif(
    not EXECUTUS.exists(), reason="the executus console script is not installed"
)


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    settings = Settings(now=lambda: START + timedelta(hours=1))
    return CliRunner().invoke(cli, list(args), obj=settings, env=env)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["runs", "--since", "999999d"], "--since: '999999d' reaches back before the year 1"),
        (["runs", "--until", "99999999999w"], "--until: '99999999999w' reaches back"),
        (["runs", "--since", "yesterday"], "is neither an ISO date or time"),
        (["runs", "--limit", "9223372036854775808"], "'--limit': 9223372036854775808 is not in the range"),
        (["runs", "--limit", "0"], "'--limit': 0 is not in the range"),
        (["runs", "--limit", "-3"], "'--limit': -3 is not in the range"),
        (["runs", "--status", "ok,finished"], "'finished' is not one of ok, error"),
        (["runs", "--frobnicate"], "--frobnicate"),
        (["show", "demo-0001", "--gap", "nan"], "'--gap': 'nan' is not a finite number"),
        (["show", "demo-0001", "--gap", "inf"], "'--gap': 'inf' is not a finite number"),
        (["show", "demo-0001", "--gap", "0"], "'--gap': 0.0 is not in the range"),
        (["replay", "--all", "--limit", "0"], "'--limit': 0 is not in the range"),
        (["replay", "--all", "--since", "9" * 400 + "d"], "reaches back before the year 1"),
        (["replay", "demo-0001", "--time-tolerance", "nan"], "'--time-tolerance': 'nan' is not a finite"),
        (["replay", "demo-0001", "--status", "ok"], "--status, --since, --until and --limit go with --all"),
        (["replay", "demo-0001", "--what-if-critic", "none", "--agent", "a:b"], "leave out --agent"),
    ],
)
def test_a_bad_option_is_one_line_and_writes_nothing(tmp_path: Path, args: list[str], fragment: str) -> None:
    database = tmp_path / "never.db"
    assert_one_line_error(invoke("--db", f"sqlite:///{database}", *args), fragment)
    assert not database.exists()


@pytest.mark.parametrize("command", [["runs"], ["demo"], ["db", "upgrade"]])
def test_an_unusable_default_data_directory_names_the_way_out(tmp_path: Path, command: list[str]) -> None:
    home = tmp_path / "home"
    home.write_text("HOME is a file here")
    result = invoke(*command, env={"HOME": str(home), "XDG_DATA_HOME": None, "EXECUTUS_DB": None})
    assert_one_line_error(result, "cannot use the default data directory", "--db URL or EXECUTUS_DB=URL")


@contextlib.contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Make files and directories unwritable, even for root (which ignores permission bits)."""
    root = os.geteuid() == 0
    for path in paths:
        if root:
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode:
                pytest.skip("chattr +i is not supported here")
        else:
            path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        for path in reversed(paths):
            if root:
                subprocess.run(["chattr", "-i", str(path)], check=True)
            else:
                path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.parametrize(
    ("command", "shows"),
    [
        (["runs"], "demo-000"),
        (["show", "demo-0002"], "run_finished"),
        (["why", "demo-0002"], "was killed"),
        (["replay", "demo-0002"], "identical"),
        (["replay", "--all"], "7 runs replayed: 7 identical"),
        (["db", "current"], f"{sql_store.head_revision()} (newest)"),
    ],
)
def test_read_commands_work_on_a_read_only_database(
    tmp_path: Path, demo_template: Path, command: list[str], shows: str
) -> None:
    folder = tmp_path / "audit"
    folder.mkdir()
    database = folder / "copy.db"
    shutil.copyfile(demo_template, database)
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    with read_only(folder, database):
        result = invoke("--db", f"sqlite:///{database}", *command)
    assert result.exit_code == 0, result.output
    assert shows in result.stdout
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before
    assert sorted(path.name for path in folder.iterdir()) == ["copy.db"]


def test_export_works_on_a_read_only_database(tmp_path: Path, demo_template: Path) -> None:
    folder = tmp_path / "audit"
    folder.mkdir()
    database = folder / "copy.db"
    shutil.copyfile(demo_template, database)
    with read_only(folder, database):
        result = invoke(
            "--db", f"sqlite:///{database}", "export", "demo-0002", "-o", str(tmp_path / "k.jsonl")
        )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "k.jsonl").read_text().count("\n") == 10


def test_a_newer_schema_is_called_newer_with_the_fix(tmp_path: Path, demo_template: Path) -> None:
    database = tmp_path / "newer.db"
    shutil.copyfile(demo_template, database)
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'f00d'")
    current = invoke("--db", f"sqlite:///{database}", "db", "current")
    assert current.exit_code == 0
    assert (
        f"f00d, newer than this executus (which knows up to {sql_store.head_revision()}): upgrade executus"
        in current.stdout
    )
    assert "behind" not in current.stdout
    assert_one_line_error(invoke("--db", f"sqlite:///{database}", "runs"), "newer executus; upgrade executus")


def _environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in ("EXECUTUS_DB", "FORCE_COLOR")}


@needs_script
def test_a_closed_pipe_ends_quietly(demo_template: Path) -> None:
    reader = subprocess.Popen(
        [str(EXECUTUS), "--db", f"sqlite:///{demo_template}", "show", "demo-0002"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_environment(),
    )
    assert reader.stdout is not None
    reader.stdout.close()  # like `| head -0`: the reader is gone before anything is written
    _, errors = reader.communicate(timeout=60)
    assert reader.returncode == 141
    assert errors == b""


@needs_script
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_full_disk_is_one_line(demo_template: Path) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [str(EXECUTUS), "--db", f"sqlite:///{demo_template}", "runs"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=_environment(),
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr == "error: cannot write the output: No space left on device\n"


def test_postgresql_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if executus[postgres] were not installed
    result = invoke("--db", "postgresql://reader:hunter2@db.example/runs", "runs")
    assert_one_line_error(result, "PostgreSQL support is not installed: pip install 'executus[postgres]'")
    assert "hunter2" not in result.stderr
    with pytest.raises(DatabaseUnavailableError, match=r"executus\[postgres\]"):
        sql_store.open_store("postgresql+psycopg://db.example/runs")
