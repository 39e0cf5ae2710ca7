"""Shared fixtures: one store contract, three backends (memory, SQLite file, real PostgreSQL).

PostgreSQL is started once per test session (``postgres_url_for_tests``: a throwaway server,
or ``$EXECUTUS_TEST_PG_URL``) and migrated once; each test then starts from empty tables
(``TRUNCATE``, milliseconds) instead of a new database. SQLite tests each get their own file,
copied from one migrated template so that Alembic runs once per session, not once per test.
Tests that need a database with no schema at all (migration tests) ask for ``fresh_url``; on
PostgreSQL that creates and drops a database, so an ``$EXECUTUS_TEST_PG_URL`` server must let
its user CREATE DATABASE (and the tests empty the executus tables of the database it names).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from _pgserver import PostgresUnavailable, ThrowawayPostgres, postgres_url_for_tests
from _providers import ANTHROPIC, OPENAI, Provider
from sqlalchemy import text
from sqlalchemy.engine import make_url

from executus import SequentialIds, VirtualClock
from executus.cli._demo import record_demo
from executus.storage import EventStore, MemoryStore
from store import SqlStore, open_store, upgrade
from store._engine import create_store_engine

DEMO_START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

SQL_BACKENDS = ["sqlite", "postgresql"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("executus")
    group.addoption(
        "--soak",
        type=int,
        default=int(os.environ.get("EXECUTUS_SOAK") or 50),
        metavar="KILLS",
        help="SIGKILLs per SQL backend in tests/test_sigkill_harness.py (default $EXECUTUS_SOAK or 50)",
    )
    group.addoption(
        "--sigkill-seed",
        type=int,
        default=int(os.environ.get("EXECUTUS_SIGKILL_SEED") or secrets.randbelow(2**31)),
        metavar="SEED",
        help="the SIGKILL harness's seed (default $EXECUTUS_SIGKILL_SEED, else random; failures print it)",
    )
    group.addoption(
        "--sigkill-cycle",
        type=int,
        default=None,
        metavar="N",
        help="run only cycle N of the SIGKILL harness's seed (to re-run a failure the harness reported)",
    )


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The session's PostgreSQL database URL (the server starts on first use)."""
    with postgres_url_for_tests() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url(postgres_server_url: str) -> str:
    """The session's PostgreSQL database, migrated to head once."""
    upgrade(postgres_server_url)
    return postgres_server_url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head; tests get copies."""
    path = tmp_path_factory.mktemp("template") / "executus.db"
    upgrade(f"sqlite:///{path}")
    return path


def _truncate(url: str) -> None:
    engine = create_store_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE events, runs, blobs, ledger, leases, queue RESTART IDENTITY"))
    finally:
        engine.dispose()


def _empty_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database: a fresh SQLite file or emptied PostgreSQL tables."""
    if backend == "sqlite":
        path = tmp_path / "executus.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate(url)
    return url


@pytest.fixture(scope="session")
def empty_database() -> Callable[[str, pytest.FixtureRequest, Path], str]:
    """``_empty_database(backend, request, directory)``, for fixtures wider than one test."""
    return _empty_database


@pytest.fixture(params=SQL_BACKENDS)
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated SQLite or PostgreSQL database (the SQL-only tests run on both)."""
    return _empty_database(request.param, request, tmp_path)


@pytest.fixture
def sql_store(sql_url: str) -> Iterator[SqlStore]:
    """A SqlStore on an empty, migrated SQLite or PostgreSQL database."""
    with SqlStore(sql_url) as opened:
        yield opened


@pytest.fixture(params=["memory", *SQL_BACKENDS])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    """An empty event store on each backend in turn: the contract suite runs against all three."""
    if request.param == "memory":
        yield MemoryStore()
        return
    with SqlStore(_empty_database(request.param, request, tmp_path)) as opened:
        yield opened


@pytest.fixture
def fresh_url(sql_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, on the same backend as ``sql_url``: a new SQLite file,
    or a new PostgreSQL database dropped afterwards."""
    if make_url(sql_url).get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"executus_fresh_{secrets.token_hex(4)}"
    admin = make_url(sql_url).set(drivername="postgresql", database="postgres")
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(sql_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[ThrowawayPostgres]:
    """A throwaway PostgreSQL of this module's own, migrated, for tests that stop, freeze or
    restart the server (never ``$EXECUTUS_TEST_PG_URL``'s: that one is not ours to stop)."""
    server = ThrowawayPostgres()
    try:
        url = server.start()
    except PostgresUnavailable as error:
        pytest.skip(f"no PostgreSQL of our own to stop: {error}")
    try:
        upgrade(url)
        yield server
    finally:
        with contextlib.suppress(OSError):  # a test that failed while the server was frozen
            server.resume()
        server.stop()


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file holding the seven demo runs, ids demo-0001 … demo-0007: copy it to write."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    with open_store(f"sqlite:///{path}") as opened:
        record_demo(opened, VirtualClock(DEMO_START), SequentialIds("demo-"))
    return path


@pytest.fixture(params=[OPENAI, ANTHROPIC], ids=lambda provider: provider.name)
def provider(request: pytest.FixtureRequest) -> Provider:
    """Each model API a loopback test speaks, in turn."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def db(sqlite_template: Path, tmp_path: Path) -> Iterator[SqlStore]:
    """A fresh SQLite store for one loopback test (a module may define its own ``db``)."""
    shutil.copyfile(sqlite_template, tmp_path / "runs.db")
    store = SqlStore(f"sqlite:///{tmp_path / 'runs.db'}")
    yield store
    store.close()
