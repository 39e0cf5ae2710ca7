"""Engines for the two supported backends, set up for an append-only log with many writers.

SQLite (the zero-set-up default):

- ``journal_mode=WAL``: readers never block the writer and the writer never blocks readers,
  so ``executus show --follow`` can tail a database that runs are being recorded into.
- ``synchronous=NORMAL``: in WAL mode this cannot corrupt the database, and a commit survives
  the *process* dying (SIGKILL, a crash) because the WAL is already in the OS's page cache;
  only a power loss or OS crash can lose the last few commits. ``FULL`` would fsync on every
  append, which costs milliseconds per event on ordinary disks. The durability rule executus
  needs ("an event that precedes a side effect is committed before it starts", so that resume
  knows what was in flight when the process died) is about process death, which NORMAL covers.
- ``busy_timeout``: a writer waits for another process's write transaction instead of failing
  at once with "database is locked".
- appends begin with ``BEGIN IMMEDIATE``: the write lock is taken before the run's last seq is
  read, so two processes serialise cleanly; a deferred ``BEGIN`` would let both read, then
  fail one of them with SQLITE_BUSY when it tries to upgrade its read lock to a write lock.

PostgreSQL (``postgresql+psycopg://``): a pooled engine with ``pool_pre_ping`` (a long-lived
worker survives a database restart) and a connect timeout, so an unreachable server is an
error within seconds rather than a hang. Appends hold one connection of their own, from an
engine of their own with no pool (:func:`create_writer_engine`), which ``store._session``
replaces when it is found dead. (SQLite's appends hold one from the store's pool.)
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool, PoolProxiedConnection, StaticPool

from executus import DatabaseUnavailableError, StoreError
from store._settings import WriterSettings

__all__ = [
    "SQLITE_BUSY_TIMEOUT_SECONDS",
    "WRITE_OPTION",
    "connect",
    "create_store_engine",
    "create_writer_engine",
    "display_url",
    "hide_passwords",
    "one_line",
    "raw_connect",
    "read_only_url",
    "require_supported_server",
    "statement_failed",
    "unsupported_server",
]

SQLITE_BUSY_TIMEOUT_SECONDS: Final = 30.0
POSTGRES_CONNECT_TIMEOUT_SECONDS: Final = 10
POSTGRES_MIN_VERSION: Final = (13,)
"""The oldest PostgreSQL executus runs on: the store's reading by position needs ``xid8`` and
``pg_snapshot_xmin`` (PostgreSQL 13)."""
WRITE_OPTION: Final = "executus_write"
"""Execution option: a transaction begun on this connection will write (SQLite: BEGIN IMMEDIATE)."""

_PASSWORD_IN_URL: Final = re.compile(r"(://[^:/@]*:)[^@]*@")
_PASSWORD_SETTING: Final = re.compile(r"""(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;]*)""", re.IGNORECASE)
"""libpq's ``password=secret`` (or ``password='a secret'``) in a key=value string or a query."""


def hide_passwords(text: str) -> str:
    """``text`` with every database password in it masked: a URL's ``user:secret@`` and a libpq
    ``password=secret`` setting; for messages that quote a URL or a connection string."""
    return _PASSWORD_SETTING.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***@", text))


def display_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and logs; works on unparsable URLs too.

    A URL without a password comes back exactly as given (SQLAlchemy's rendering would
    percent-encode a SQLite path such as ``:memory:`` or one with spaces).
    """
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except exc.ArgumentError:
        return hide_passwords(str(url))
    if "password" in parsed.query:  # libpq also takes ?password=...
        parsed = parsed.update_query_dict({"password": "***"})
    elif parsed.password is None and isinstance(url, str):
        return url
    return parsed.render_as_string(hide_password=True)


def read_only_url(url: str) -> str | None:
    """A read-only URL for ``url`` if it names a SQLite file this process may not write.

    An auditor's copy (a read-only file, in a read-only directory) cannot take the write lock,
    switch to WAL or create the ``-shm`` file a WAL reader needs; ``mode=ro`` opens it without,
    and ``immutable=1`` (when no ``-wal`` file holds unmerged commits) skips locking altogether.
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or parsed.query.get("mode") == "ro":
        return None  # already a URI the user chose
    path = Path(database)
    if not path.exists() or (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        return None
    wal = Path(f"{path}-wal")
    query = {"mode": "ro", "uri": "true"} | ({} if wal.exists() else {"immutable": "1"})
    return parsed.set(database=f"file:{path}", query=query).render_as_string(hide_password=False)


def one_line(error: BaseException) -> str:
    """A driver error's message squashed to one line (psycopg's span several)."""
    original = error.orig if isinstance(error, exc.DBAPIError) and error.orig is not None else error
    text = " ".join(str(original).split())
    return text or type(original).__name__


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise DatabaseUnavailableError(
            f"not a database URL: {display_url(url)} (expected sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB)"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")  # the only driver executus ships
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise DatabaseUnavailableError(
            f"unsupported database {display_url(parsed)}: executus stores runs in SQLite "
            "(sqlite:///PATH) or PostgreSQL (postgresql+psycopg://...)"
        )
    return parsed


def _require_psycopg(url: str) -> None:
    try:
        import psycopg  # noqa: F401 - only to know whether the postgres extra is installed
    except ImportError:
        raise DatabaseUnavailableError(
            f"{display_url(url)} is a PostgreSQL database, but PostgreSQL support is not installed: "
            "pip install 'executus[postgres]'"
        ) from None


def create_store_engine(url: str, connect_timeout: float = POSTGRES_CONNECT_TIMEOUT_SECONDS) -> Engine:
    """An engine for ``url`` with executus's per-backend settings (see the module docstring).

    Creating it does not connect; connection failures surface on first use.

    Args:
        url: the database.
        connect_timeout: seconds to wait for a PostgreSQL connection (libpq counts at least 2).

    Raises:
        DatabaseUnavailableError: the URL cannot be parsed or names an unsupported backend, or
            a PostgreSQL one without the ``executus[postgres]`` extra (psycopg) installed.
    """
    parsed = _parse(url)
    if parsed.get_backend_name() == "postgresql":
        _require_psycopg(url)
        return create_engine(
            parsed,
            pool_pre_ping=True,
            connect_args={"connect_timeout": _whole_seconds(connect_timeout), "application_name": "executus"},
        )
    read_only = parsed.query.get("mode") == "ro"
    options: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}}
    if parsed.database in (None, "", ":memory:"):
        # One shared connection, or every checkout would see its own empty in-memory database.
        options = {"connect_args": {"check_same_thread": False}, "poolclass": StaticPool}
    engine = create_engine(parsed, **options)
    event.listen(engine, "connect", _sqlite_connected_read_only if read_only else _sqlite_connected)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def create_writer_engine(url: str, settings: WriterSettings) -> Engine:
    """For PostgreSQL, the engine of the store's writer: no pool (the writer holds its one
    connection, and a pooled one could be handed over half-dead and hang its pre-ping on a
    stalled server) and the settings' lock and statement timeouts on the connection.

    Raises:
        DatabaseUnavailableError: the URL cannot be parsed or names an unsupported backend.
    """
    parsed = _parse(url)
    options = f"-c lock_timeout={_milliseconds(settings.lock_timeout)} "
    options += f"-c statement_timeout={_milliseconds(settings.statement_timeout)}"
    given = parsed.query.get("options")  # the URL's own options go first: ours must not drop them
    if given:
        options = f"{given if isinstance(given, str) else ' '.join(given)} {options}"
    return create_engine(
        parsed,
        poolclass=NullPool,
        connect_args={
            "connect_timeout": _whole_seconds(settings.connect_timeout),
            "application_name": "executus",
            "options": options,
        },
    )


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _sqlite_connected(dbapi_connection: Any, _record: object) -> None:
    # Take transaction control from the sqlite3 module (its legacy mode does not BEGIN before
    # SELECT or DDL): SQLAlchemy now emits BEGIN itself, in _sqlite_begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_connected_read_only(dbapi_connection: Any, _record: object) -> None:
    # A read-only file keeps its journal mode: switching to WAL would write.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (it stays so: later connections find it already done).

    The switch needs the file to itself, and SQLite reports a clash with another connection
    doing the same as "database is locked" at once, without its busy handler; that only
    happens while a brand-new file is first opened by several connections, so retry.
    """
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_begin(connection: Connection) -> None:
    writes = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


@contextmanager
def connect(engine: Engine, url: str | URL, doing: str) -> Iterator[Connection]:
    """A connection whose failures become executus errors.

    Failing to connect (server down, file unopenable, not a database, bad credentials) raises
    :class:`DatabaseUnavailableError`; a statement that fails raises :class:`StoreError`, or
    DatabaseUnavailableError again if the connection was lost. Both name the URL without its
    password and what was being done.

    Args:
        engine: the engine to connect with.
        url: the database, as the user gave it (its password is masked in messages).
        doing: what was being done, e.g. "reading run abc", for the message.
    """
    try:
        connection = engine.connect()
    except exc.DBAPIError as error:
        raise _cannot_open(url, error) from error
    with connection:
        try:
            yield connection
        except exc.DBAPIError as error:
            raise statement_failed(url, doing, error, lost=error.connection_invalidated) from error


def unsupported_server(
    version: tuple[int | str, ...] | None, url: str | URL
) -> DatabaseUnavailableError | None:
    """The error for a PostgreSQL server of ``version`` (the dialect's ``server_version_info``)
    that is too old for executus, or None when it will do (or its version is not known)."""
    if not version or not isinstance(version[0], int) or version[0] >= POSTGRES_MIN_VERSION[0]:
        return None
    found = ".".join(str(part) for part in version)
    return DatabaseUnavailableError(
        f"{display_url(url)} runs PostgreSQL {found}; executus needs PostgreSQL "
        f"{POSTGRES_MIN_VERSION[0]} or newer (it uses xid8 and pg_snapshot_xmin)"
    )


def require_supported_server(connection: Connection, url: str | URL) -> None:
    """Refuse a PostgreSQL server too old for executus (see :data:`POSTGRES_MIN_VERSION`).

    Raises:
        DatabaseUnavailableError: the server is older; one line, naming its version.
    """
    if connection.dialect.name != "postgresql":
        return
    error = unsupported_server(connection.dialect.server_version_info, url)
    if error is not None:
        raise error


def raw_connect(engine: Engine, url: str | URL) -> PoolProxiedConnection:
    """A DB-API connection from ``engine``'s pool (its ``connect`` listeners have run on it).

    Raises:
        DatabaseUnavailableError: the database cannot be opened, as in :func:`connect`.
    """
    try:
        return engine.raw_connection()
    except (exc.DBAPIError, engine.dialect.loaded_dbapi.Error) as error:  # the pool does not wrap them
        raise _cannot_open(url, error) from error


def statement_failed(url: str | URL, doing: str, error: BaseException, *, lost: bool = False) -> StoreError:
    """The executus error for a statement that failed with ``error`` (SQLAlchemy's or the driver's).

    Args:
        url: the database, as the user gave it (its password is masked).
        doing: what was being done, e.g. "reading run abc".
        error: what the statement raised.
        lost: the connection was lost, which makes it a :class:`DatabaseUnavailableError`.
    """
    if lost:
        return DatabaseUnavailableError(
            f"lost the connection to {display_url(url)} while {doing}: {one_line(error)}"
        )
    return StoreError(f"{doing} in {display_url(url)} failed: {one_line(error)}")


def _cannot_open(url: str | URL, error: BaseException) -> DatabaseUnavailableError:
    # PEP 249 files a failed connection under OperationalError; SQLite has no server to wait for.
    server_down = make_url(url).get_backend_name() != "sqlite" and any(
        kind.__name__ == "OperationalError" for kind in type(error).__mro__
    )
    return DatabaseUnavailableError(
        f"cannot open database {display_url(url)}: {one_line(error)}", server_down=server_down
    )
