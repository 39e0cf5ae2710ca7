"""The throwaway PostgreSQL helper starts a real server and leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import _pgserver
import pytest
from _pgserver import ThrowawayPostgres, postgres_url_for_tests
from sqlalchemy import create_engine, text


def _alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie counts as dead (the stopped postmaster is reparented to
    PID 1, which may reap it a little later)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:  # exited meanwhile, unless there is no /proc at all
        return not Path("/proc/self").exists()


def test_throwaway_server_serves_sql_and_stop_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_pgserver.ENV_URL, raising=False)
    with postgres_url_for_tests() as url:
        assert url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
        assert url.endswith("/executus_test")
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("select 1")).scalar_one() == 1
                assert conn.execute(text("select current_database()")).scalar_one() == "executus_test"
                data_dir = Path(conn.execute(text("show data_directory")).scalar_one())
        finally:
            engine.dispose()
        postmaster_pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        assert _alive(postmaster_pid)
    assert not _alive(postmaster_pid)
    assert not data_dir.parent.exists()


def test_stop_is_idempotent_and_url_needs_a_running_server() -> None:
    server = ThrowawayPostgres()
    server.stop()  # never started: nothing to do
    url = server.start()
    assert server.start() == url == server.url
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError):
        _ = server.url


def test_env_url_is_used_without_starting_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    external = "postgresql+psycopg://someone@db.example:5432/elsewhere"
    monkeypatch.setenv(_pgserver.ENV_URL, external)

    def must_not_start(self: ThrowawayPostgres) -> str:
        raise AssertionError("a server was started although EXECUTUS_TEST_PG_URL is set")

    monkeypatch.setattr(ThrowawayPostgres, "start", must_not_start)
    with postgres_url_for_tests() as url:
        assert url == external
