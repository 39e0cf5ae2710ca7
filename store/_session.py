"""The append path's one held connection, and how a transaction runs on it, per backend.

- SQLite: ``BEGIN IMMEDIATE`` (the write lock before any row is read: see store._engine), the
  statements, ``COMMIT``; the connection's busy timeout is the settings' ``lock_timeout``.
- PostgreSQL: psycopg's pipeline mode sends the fence's lease-row locks, the inserts and the
  runs-row updates in one round trip; the epochs and the updates' row counts are checked before
  ``COMMIT`` is sent, in a second. No lock is shared by every append: a transaction locks only
  the rows of its runs (their lease rows when fenced, their runs rows, their new seqs) and, when
  it seals a run, the ledger. The connection is the writer's own (not a pooled one a reader may
  hand back half-dead) and carries the settings' ``lock_timeout`` and ``statement_timeout``.

:meth:`AppendConnection.attempt` runs one transaction and sorts its failures into three kinds:
:class:`RaceLost` (another writer got there first), :class:`TransientFailure` (may pass if
tried again: a lock waited for too long, a connection refused, lost or stalled, a server
shutting down) and :class:`executus.StoreError` (the database refused a statement). Retrying
is the caller's business (``store._batch``). A connection found dead is discarded, and the next
attempt connects again. A server that stops answering (SIGSTOP, a network cut) cannot enforce
its own timeouts, so a watchdog thread shuts the socket of a PostgreSQL transaction that
overran :attr:`WriterSettings.transaction_deadline`: the blocked driver call then fails as a
lost connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from sqlalchemy import Engine
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPIModule
from sqlalchemy.pool import PoolProxiedConnection

from executus import DatabaseUnavailableError
from executus.storage import RunSummary
from store._engine import one_line, raw_connect, statement_failed
from store._hot import (
    EVENT_COLUMNS,
    POSTGRES_INSERT_EVENTS,
    POSTGRES_INSERT_EVENTS_ARRAYS,
    POSTGRES_STEP_COLUMNS,
    POSTGRES_UPDATE_STEPS_ARRAYS,
    SQLITE_INSERT_EVENTS,
    SQLITE_STEP_COLUMNS,
    SQLITE_UPDATE_STEPS,
    SUMMARY_FIELDS,
    AppendTransaction,
    EventRow,
    LeaseAcquire,
    Parameters,
    RaceLost,
    Statement,
    Statements,
    fence_moved,
    sqlite_time,
)
from store._leases import lease_clock
from store._settings import WriterSettings

if TYPE_CHECKING:
    import psycopg

__all__ = ["AppendConnection", "TransientFailure"]

_Result = TypeVar("_Result")
_TRANSIENT_SQLSTATE_CLASSES: Final = ("08", "40", "53", "57")
"""PostgreSQL errors worth retrying: connection exceptions, transaction rollbacks (serialization,
deadlock), insufficient resources (too many connections) and operator intervention (a statement
timeout, a server shutting down or starting up); plus 55P03, a lock timeout."""
_WATCHDOG_POLL_SECONDS: Final = 0.05
_FEW_ROWS: Final = 4
"""Up to this many events rows go in one INSERT each (an executemany); more, in one of arrays."""
_SQLITE_READ_EPOCHS: Final = "SELECT run_id, epoch, owner FROM leases WHERE run_id IN ({})"
_SQLITE_DELETE_QUEUED: Final = "DELETE FROM queue WHERE run_id IN ({})"
_POSTGRES_READ_EPOCHS: Final = (
    "SELECT run_id, epoch, owner FROM leases WHERE run_id = ANY(%s) ORDER BY run_id FOR UPDATE"
)
"""The fence: locked until the commit, so no claim can take a run over between check and commit."""
_POSTGRES_DELETE_QUEUED: Final = "DELETE FROM queue WHERE run_id = ANY(%s)"
_step_values: Final = attrgetter(*POSTGRES_STEP_COLUMNS)
_other_values: Final = attrgetter(
    *(name for name in SUMMARY_FIELDS if name not in POSTGRES_STEP_COLUMNS and name != "last_seq")
)
_STEP_ARRAYS: Final = ("run_id", "expected_seq", *POSTGRES_STEP_COLUMNS)
"""The arrays :data:`POSTGRES_UPDATE_STEPS_ARRAYS` takes, in its order."""
_sqlite_other_values: Final = attrgetter(
    *(name for name in SUMMARY_FIELDS if name not in SQLITE_STEP_COLUMNS and name != "last_seq")
)


class TransientFailure(Exception):
    """A failure that may pass if the transaction is tried again.

    Attributes:
        cause: what failed, in one line.
        uncertain: the connection was lost after ``COMMIT`` was sent, so whether the transaction
            was committed is unknown.
    """

    def __init__(self, cause: str, *, uncertain: bool) -> None:
        self.cause = cause
        self.uncertain = uncertain
        super().__init__(cause)


class _Session(AppendTransaction):
    """The held connection and how one transaction runs on it, per backend."""

    def __init__(self, held: PoolProxiedConnection, statements: Statements) -> None:
        assert held.dbapi_connection is not None  # a fresh checkout
        self._held = held
        self._statements = statements
        self._dialect = statements.dialect_name
        self.dbapi_connection: DBAPIConnection = held.dbapi_connection
        """The driver's connection (kept after :meth:`discard`, to tell why it failed)."""
        self.committing = False
        """Whether the last transaction got as far as sending COMMIT (then its outcome is unknown
        if the connection is lost)."""
        self._cursor: Any = None
        """The cursor the inserts go through; each backend's session opens it."""

    @property
    def usable(self) -> bool:
        """False once discarded or closed."""
        return self._held.dbapi_connection is not None

    @abstractmethod
    def transact(self, body: Callable[[AppendTransaction], _Result]) -> _Result:
        """Run ``body`` in one transaction and commit it, or roll it back and re-raise."""

    def abort(self) -> None:
        """Make a driver call blocked on this connection fail (called from another thread)."""

    def insert_run(self, summary: RunSummary) -> None:
        statement, parameters = self._statements.insert_run(summary)
        self._cursor.execute(statement.sql, parameters)

    def insert_seal(self, summary: RunSummary) -> None:
        statement = self._statements.insert_seal
        values = {
            "run_id": summary.run_id,
            "last_seq": summary.last_seq,
            "head_hash": summary.head_hash,
            "status": summary.status,
        }
        self._cursor.execute(statement.sql, statement.parameters(values))

    def insert_blob(self, sha256: str, media_type: str, data: bytes) -> None:
        statement = self._statements.insert_blob
        self._cursor.execute(
            statement.sql, statement.parameters({"sha256": sha256, "media_type": media_type, "data": data})
        )

    def acquire_leases(self, acquires: Sequence[LeaseAcquire]) -> list[tuple[int, datetime] | None]:
        statement = self._statements.acquire_lease
        parameters = [
            statement.parameters(
                {"key_run_id": run_id, "owner": owner, "force": force, **lease_clock(self._dialect, ttl)}
            )
            for run_id, owner, ttl, force in acquires
        ]
        return [
            None if row is None else (row["epoch"], row["expires_at"])
            for row in self._query_each(statement, parameters)
        ]

    def lease_holder(self, run_id: str) -> tuple[str | None, datetime]:
        statement = self._statements.lease_holder
        row = self._query_each(statement, [statement.parameters({"key_run_id": run_id})])[0]
        assert row is not None  # an acquire found the row a moment ago, and leases are never deleted
        return row["owner"], row["expires_at"]

    def release_leases(self, held: Sequence[tuple[str, int]]) -> None:
        statement = self._statements.release_lease
        clock = lease_clock(self._dialect, 0)
        self._cursor.executemany(
            statement.sql,
            [
                statement.parameters({"key_run_id": run_id, "key_epoch": epoch, **clock})
                for run_id, epoch in held
            ],
        )

    @abstractmethod
    def _query_each(
        self, statement: Statement, parameters: Sequence[Parameters]
    ) -> list[dict[str, Any] | None]:
        """Run ``statement`` once with each of ``parameters`` (one round trip in all on
        PostgreSQL): the row each returned, by column name, or None where it returned none."""

    def discard(self) -> None:
        """Close the connection for good (a transaction still open on it is rolled back)."""
        if self.usable:
            self._held.invalidate()

    def close(self) -> None:
        """Give the connection back to its pool."""
        if self.usable:
            self._held.close()


class _SqliteSession(_Session):
    """``BEGIN IMMEDIATE``, the statements, ``COMMIT``; one cursor serves them all. The runs
    rows of the group's ordinary steps wait for one ``executemany`` just before ``COMMIT``."""

    def __init__(
        self,
        held: PoolProxiedConnection,
        connection: sqlite3.Connection,
        statements: Statements,
        lock_timeout: float,
    ) -> None:
        super().__init__(held, statements)
        self._connection = connection
        self._cursor = connection.cursor()
        self._cursor.execute(f"PRAGMA busy_timeout = {max(1, round(lock_timeout * 1000))}")
        self._steps: list[tuple[Any, ...]] = []
        """The parameters of :data:`SQLITE_UPDATE_STEPS` for the transaction's ordinary appends."""

    def transact(self, body: Callable[[AppendTransaction], _Result]) -> _Result:
        self.committing = False
        self._steps.clear()
        self._cursor.execute("BEGIN IMMEDIATE")
        try:
            result = body(self)
            if self._steps:
                self._cursor.executemany(SQLITE_UPDATE_STEPS, self._steps)
                if self._cursor.rowcount != len(self._steps):  # summed over the rows
                    raise RaceLost
            self.committing = True
            self._cursor.execute("COMMIT")
        except BaseException:
            try:
                if self._connection.in_transaction:
                    self._cursor.execute("ROLLBACK")
            except sqlite3.Error:
                self.discard()
            raise
        return result

    def insert_events(self, rows: Sequence[EventRow]) -> None:
        self._cursor.executemany(
            SQLITE_INSERT_EVENTS,
            [
                (run_id, seq, kind, schema_version, sqlite_time(at), payload, bytes.fromhex(digest))
                for run_id, seq, kind, schema_version, at, payload, digest in rows
            ],
        )

    def read_runs(self, run_ids: Sequence[str]) -> dict[str, RunSummary | None]:
        statement = self._statements.select_run
        rows = self._query_each(statement, [statement.parameters({"run_id": run_id}) for run_id in run_ids])
        return {
            run_id: None if row is None else RunSummary(**row)
            for run_id, row in zip(run_ids, rows, strict=True)
        }

    def read_hash(self, run_id: str, seq: int) -> str | None:
        statement = self._statements.select_hash
        row = self._cursor.execute(
            statement.sql, statement.parameters({"run_id": run_id, "seq": seq})
        ).fetchone()
        return None if row is None else bytes(row[0]).hex()

    def update_run(self, old: RunSummary, new: RunSummary) -> None:
        if _sqlite_other_values(old) == _sqlite_other_values(new):
            self._steps.append(
                (
                    new.steps,
                    new.input_tokens,
                    new.output_tokens,
                    new.last_seq,
                    sqlite_time(new.last_event_at),
                    new.head_hash,
                    old.run_id,
                    old.last_seq,
                )
            )
            return
        statement, parameters = self._statements.update_run(old, new)
        if self._cursor.execute(statement.sql, parameters).rowcount != 1:
            raise RaceLost

    def _query_each(
        self, statement: Statement, parameters: Sequence[Parameters]
    ) -> list[dict[str, Any] | None]:
        # Each statement is stepped to its end (fetchall), so none is left in progress.
        rows = (self._cursor.execute(statement.sql, values).fetchall() for values in parameters)
        return [statement.row(found[0]) if found else None for found in rows]

    def fence(self, fenced: Sequence[tuple[str, int]]) -> None:
        # The write lock (BEGIN IMMEDIATE) already keeps every claim out, and reading costs no
        # round trip: checked at once.
        run_ids = sorted({run_id for run_id, _epoch in fenced})
        sql = _SQLITE_READ_EPOCHS.format(", ".join("?" * len(run_ids)))
        fence_moved(fenced, self._cursor.execute(sql, run_ids))

    def delete_queued(self, run_ids: Sequence[str]) -> None:
        self._cursor.execute(_SQLITE_DELETE_QUEUED.format(", ".join("?" * len(run_ids))), run_ids)


class _PostgresSession(_Session):
    """Pipeline mode: the fence, the inserts and the updates go in one round trip, the epochs
    and the updates' row counts are checked, then ``COMMIT`` goes in a second. Reading the rows
    of the runs the store has not cached costs one more (one for all of them), and taking
    leases one more. Each statement in a pipeline costs a send and a receive, so a group's
    events go in one INSERT of arrays (``POSTGRES_INSERT_EVENTS_ARRAYS``), the runs rows of its
    ordinary steps in one UPDATE of arrays (``POSTGRES_UPDATE_STEPS_ARRAYS``), and the others (a
    run's first or last append) in one ``executemany`` per set of changed columns."""

    def __init__(
        self,
        held: PoolProxiedConnection,
        connection: psycopg.Connection[Any],
        statements: Statements,
        driver_error: type[Exception],
    ) -> None:
        super().__init__(held, statements)
        self._connection = connection
        self._driver_error = driver_error  # psycopg.Error; psycopg is imported only for PostgreSQL
        # A cursor's result is its last statement's: reads, and each kind of update, get their own.
        self._cursor = connection.cursor()
        self._select = connection.cursor()
        self._update_cursors: list[psycopg.Cursor[Any]] = []
        self._updates: dict[Statement, list[Parameters]] = {}
        self._steps: list[tuple[RunSummary, RunSummary]] = []
        """Updates that change only the step columns: one statement for all of them."""
        self._fence = connection.cursor()
        self._fenced: Sequence[tuple[str, int]] = ()
        """The (run id, epoch) pairs whose epochs :attr:`_fence` reads, until checked."""
        self._pipeline: psycopg.Pipeline | None = None

    def transact(self, body: Callable[[AppendTransaction], _Result]) -> _Result:
        self.committing = False
        self._updates.clear()
        self._steps.clear()
        self._fenced = ()
        try:
            with self._connection.pipeline() as pipeline:
                self._pipeline = pipeline
                result = body(self)
                sent = self._send_updates()
                pipeline.sync()
                self._check_fence()  # first: a writer fenced out may also have lost a race
                if any(cursor.rowcount != expected for cursor, expected in sent):
                    raise RaceLost
            self.committing = True
            self._connection.commit()
        except BaseException:
            try:
                self._connection.rollback()
            except self._driver_error:  # the connection is gone, and its transaction with it
                self.discard()
            raise
        finally:
            self._pipeline = None
        return result

    def _send_updates(self) -> list[tuple[psycopg.Cursor[Any], int]]:
        """Send the buffered updates; returns each cursor with the row count it must report."""
        if len(self._steps) == 1:  # one run's append: its own UPDATE of what changed is cheaper
            self._update_one(*self._steps.pop())
        while len(self._update_cursors) < len(self._updates) + 1:
            self._update_cursors.append(self._connection.cursor())
        sent = []
        for cursor, (statement, parameters) in zip(self._update_cursors, self._updates.items(), strict=False):
            cursor.executemany(statement.sql, parameters)
            sent.append((cursor, len(parameters)))
        if self._steps:
            cursor = self._update_cursors[len(self._updates)]
            rows = [(old.run_id, old.last_seq, *_step_values(new)) for old, new in self._steps]
            columns = dict(zip(_STEP_ARRAYS, map(list, zip(*rows, strict=True)), strict=True))
            cursor.execute(POSTGRES_UPDATE_STEPS_ARRAYS, columns)
            sent.append((cursor, len(self._steps)))
        return sent

    def insert_events(self, rows: Sequence[EventRow]) -> None:
        # Times are aware datetimes (the events' own), which psycopg sends as timestamptz: the
        # conversion UtcDateTime would make is not needed.
        *columns, digests = zip(*rows, strict=True)  # the rows' columns, in EVENT_COLUMNS order
        columns.append(tuple(map(bytes.fromhex, digests)))
        if len(rows) <= _FEW_ROWS:  # one run's append: arrays cost more than they save
            self._cursor.executemany(POSTGRES_INSERT_EVENTS, list(zip(*columns, strict=True)))
            return
        self._cursor.execute(
            POSTGRES_INSERT_EVENTS_ARRAYS, dict(zip(EVENT_COLUMNS, map(list, columns), strict=True))
        )

    def abort(self) -> None:
        # shutdown() on a duplicate of the socket ends the connection for the original too: the
        # driver's blocked read returns at once, and fails as a lost connection.
        try:
            duplicate = socket.socket(fileno=os.dup(self._connection.pgconn.socket))
        except (OSError, self._driver_error):
            return
        with duplicate, contextlib.suppress(OSError):
            duplicate.shutdown(socket.SHUT_RDWR)

    def _fetch_one(self, sql: str, parameters: Any) -> Any:
        assert self._pipeline is not None
        self._select.execute(sql, parameters)
        self._pipeline.sync()
        return self._select.fetchone()

    def read_runs(self, run_ids: Sequence[str]) -> dict[str, RunSummary | None]:
        assert self._pipeline is not None
        statement = self._statements.select_runs
        assert statement is not None  # compiled for PostgreSQL
        self._select.execute(statement.sql, statement.parameters({"run_ids": list(run_ids)}))
        self._pipeline.sync()
        found: dict[str, RunSummary | None] = dict.fromkeys(run_ids)
        for row in self._select.fetchall():
            summary = RunSummary(**statement.row(row))
            found[summary.run_id] = summary
        return found

    def read_hash(self, run_id: str, seq: int) -> str | None:
        statement = self._statements.select_hash
        row = self._fetch_one(statement.sql, statement.parameters({"run_id": run_id, "seq": seq}))
        return None if row is None else bytes(row[0]).hex()

    def _query_each(
        self, statement: Statement, parameters: Sequence[Parameters]
    ) -> list[dict[str, Any] | None]:
        assert self._pipeline is not None
        self._select.executemany(statement.sql, parameters, returning=True)
        self._pipeline.sync()
        rows = [self._select.fetchone()]
        while self._select.nextset():
            rows.append(self._select.fetchone())
        return [None if row is None else statement.row(row) for row in rows]

    def fence(self, fenced: Sequence[tuple[str, int]]) -> None:
        self._fence.execute(_POSTGRES_READ_EPOCHS, (sorted({run_id for run_id, _epoch in fenced}),))
        self._fenced = fenced

    def _check_fence(self) -> None:
        """Compare the fenced epochs with those the lease rows had (read by a round trip since)."""
        if self._fenced:
            fenced, self._fenced = self._fenced, ()
            fence_moved(fenced, self._fence.fetchall())

    def delete_queued(self, run_ids: Sequence[str]) -> None:
        self._cursor.execute(_POSTGRES_DELETE_QUEUED, (list(run_ids),))

    def insert_seal(self, summary: RunSummary) -> None:
        self._cursor.execute(self._statements.ledger_lock.sql, self._statements.ledger_lock.parameters())
        super().insert_seal(summary)

    def update_run(self, old: RunSummary, new: RunSummary) -> None:
        if _other_values(old) == _other_values(new):
            self._steps.append((old, new))
            return
        self._update_one(old, new)

    def _update_one(self, old: RunSummary, new: RunSummary) -> None:
        statement, parameters = self._statements.update_run(old, new)
        self._updates.setdefault(statement, []).append(parameters)


class _Watchdog:
    """Aborts the connection of a transaction that overran its deadline, from its own thread.

    Arming and disarming are attribute writes (no lock, no wake-up): the watchdog polls, which
    costs nothing measurable next to a transaction, and keeps the hot path free of syscalls.
    """

    def __init__(self, abort: Callable[[int], None]) -> None:
        self._abort = abort
        self._armed: tuple[int, float] | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, token: int, seconds: float) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="executus-store-watchdog", daemon=True)
            self._thread.start()
        self._armed = (token, time.monotonic() + seconds)

    def disarm(self) -> None:
        self._armed = None

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _watch(self) -> None:
        while not self._stopped.wait(_WATCHDOG_POLL_SECONDS):
            armed = self._armed
            if armed is not None and time.monotonic() > armed[1]:
                self._armed = None
                self._abort(armed[0])


class AppendConnection:
    """The store's one connection for appends, with the statements compiled for it.

    Not thread-safe: the store holds its lock around :meth:`attempt` and :meth:`close` (the
    watchdog's abort is the one call made from another thread).

    Args:
        engine: where the connection comes from (for PostgreSQL, an engine of the writer's own).
        url: the database as the user gave it, for messages (its password is masked).
        settings: the lock timeout and the transaction deadline.
    """

    def __init__(self, engine: Engine, url: str, settings: WriterSettings) -> None:
        self._engine = engine
        self._url = url
        self._settings = settings
        self._dialect = engine.dialect
        self._postgres = self._dialect.name == "postgresql"
        driver = self._dialect.loaded_dbapi
        self._driver_error: type[DBAPIModule.Error] = driver.Error
        self._integrity_error: type[DBAPIModule.Error] = driver.IntegrityError
        self._statements = Statements(self._dialect)
        self._session: _Session | None = None
        self._attempts = 0
        self._watchdog = _Watchdog(self._abort) if self._postgres else None

    def attempt(self, doing: Callable[[], str], body: Callable[[AppendTransaction], _Result]) -> _Result:
        """Run ``body`` in one transaction and commit; nothing of it is kept if anything fails.

        Args:
            doing: says what is being done, e.g. "appending to run abc", for error messages
                (called only for one).
            body: the statements; it may raise to roll everything back.

        Raises:
            RaceLost: a unique constraint was violated, or a runs row was not as expected.
            TransientFailure: worth trying again (see the module docstring).
            StoreError: a statement failed (one line, with the URL and ``doing``).
        """
        self._attempts += 1
        if self._watchdog is not None:
            self._watchdog.arm(self._attempts, self._settings.transaction_deadline)
        try:
            return self._attempt(doing, body)
        finally:
            if self._watchdog is not None:
                self._watchdog.disarm()

    def _attempt(self, doing: Callable[[], str], body: Callable[[AppendTransaction], _Result]) -> _Result:
        try:
            session = self._connected()
        except DatabaseUnavailableError as error:
            if not self._postgres:  # a SQLite file that cannot be opened stays so
                raise
            raise TransientFailure(str(error), uncertain=False) from error
        try:
            return session.transact(body)
        except self._integrity_error as error:
            # A writer that did not take our lock inserted the same seq or run first.
            raise RaceLost from error
        except self._driver_error as error:
            lost = self._dialect.is_disconnect(error, session.dbapi_connection, None)
            if not (lost or self._transient(error)):
                raise statement_failed(self._url, doing(), error) from error
            if self._postgres:
                session.discard()  # a fresh connection costs little next to what just failed
            what = "lost the connection" if lost else "failed"
            raise TransientFailure(
                f"{what} while {doing()}: {one_line(error)}", uncertain=lost and session.committing
            ) from error

    def _transient(self, error: Exception) -> bool:
        if not self._postgres:
            message = str(error)
            return isinstance(error, sqlite3.OperationalError) and ("locked" in message or "busy" in message)
        sqlstate: str | None = getattr(error, "sqlstate", None)
        if sqlstate is None:  # raised by the client library: the connection itself failed
            return isinstance(error, self._dialect.loaded_dbapi.OperationalError)
        return sqlstate == "55P03" or sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES)

    def _abort(self, token: int) -> None:
        session = self._session
        if session is not None and token == self._attempts:
            session.abort()

    def _connected(self) -> _Session:
        """The session on the held connection, connecting first if there is none (or it was lost)."""
        session = self._session
        if session is None or not session.usable:
            self._session = None
            held = raw_connect(self._engine, self._url)
            connection = held.dbapi_connection
            if isinstance(connection, sqlite3.Connection):
                session = _SqliteSession(held, connection, self._statements, self._settings.lock_timeout)
            else:
                session = _PostgresSession(
                    held, cast("psycopg.Connection[Any]", connection), self._statements, self._driver_error
                )
            self._session = session
        return session

    def close(self) -> None:
        """Give the held connection back (the engine's ``dispose`` then closes it)."""
        if self._watchdog is not None:
            self._watchdog.stop()
        session, self._session = self._session, None
        if session is not None:
            session.close()
