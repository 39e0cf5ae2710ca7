"""The append path on the bare DB-API driver: SQL compiled once, one held connection.

An append is a few tiny statements, and the database's own work for them is tens of
microseconds. Through a SQLAlchemy ``Connection`` each statement also paid for the execution
machinery (cache-key lookup, execution context, event dispatch, result set-up) and each append
for a pool checkout (a pre-ping round trip on PostgreSQL, a rollback on return): several times
the database's work, which capped appends at a fraction of what the driver alone does. So this
module keeps what SQLAlchemy is for, the SQL and the type conversions, and drops the per-call
machinery:

- Every statement is a Core construct over ``store._schema``, compiled once for the engine's
  dialect, and its parameters go through the same types' bind processors. The schema stays
  single-sourced, and rows written here read back through SQLAlchemy exactly as if SQLAlchemy
  had written them (SQLite keeps datetimes as naive UTC text in SQLAlchemy's format).
- One DB-API connection is held for appends. It comes from the engine's pool, so the engine's
  ``connect`` listener has set it up (SQLite's pragmas and its manual transaction control),
  and an in-memory SQLite database's single shared connection is shared here too. The store
  serialises appends on it with a lock; on PostgreSQL every append takes one advisory lock
  anyway, so a second connection could not append any sooner.
- SQLite: ``BEGIN IMMEDIATE`` ... ``COMMIT``. PostgreSQL: psycopg's pipeline mode sends the
  advisory lock, the inserts and the runs-row update in one round trip; the update's row count
  is checked before ``COMMIT`` is sent, in a second.
- The runs row is updated only in the columns whose values changed (usually last_seq,
  last_event_at and head_hash): SQLite rewrites an index's pages when a statement sets its
  column, even to the same value, and four of the row's indexed columns never change.

A held connection can go stale (a PostgreSQL restart, ``pg_terminate_backend``). A lost
connection is discarded so that the next append reconnects, and if it was lost before
``COMMIT`` was sent, nothing of the transaction can have been kept (the server rolls back what
a dead connection left uncommitted), so the append is retried once on a new connection.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from sqlalchemy import (
    BigInteger,
    Dialect,
    Engine,
    Integer,
    String,
    and_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPIModule
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

from executus import RunSummary
from store._engine import raw_connect, statement_failed
from store._schema import UtcDateTime, events, ledger, runs

if TYPE_CHECKING:
    import psycopg

__all__ = ["APPEND_LOCK_KEY", "SUMMARY_FIELDS", "AppendTransaction", "RaceLost", "Statement", "Writer"]

APPEND_LOCK_KEY: Final = 0x6578_6563_7574_7573 >> 1
"""The PostgreSQL advisory lock every append holds ("executus" in ASCII, halved to fit a bigint)."""

SUMMARY_FIELDS: Final = tuple(field.name for field in dataclasses.fields(RunSummary))
"""The runs row's columns: :class:`executus.RunSummary`'s fields."""

_EVENT_COLUMNS: Final = tuple(column.name for column in events.columns if column is not events.c.position)
_UPDATABLE: Final = tuple(name for name in SUMMARY_FIELDS if name != "run_id")
_summary_values: Final = attrgetter(*SUMMARY_FIELDS)
_updatable_values: Final = attrgetter(*_UPDATABLE)

_SELECT_RUN: Final = select(*(runs.c[name] for name in SUMMARY_FIELDS)).where(
    runs.c.run_id == bindparam("run_id")
)
# inline(): no RETURNING of the generated position, which nothing here reads.
_INSERT_EVENTS: Final = insert(events).values({name: bindparam(name) for name in _EVENT_COLUMNS}).inline()
_INSERT_RUN: Final = insert(runs).values({name: bindparam(name) for name in SUMMARY_FIELDS})
_APPEND_LOCK: Final = select(func.pg_advisory_xact_lock(APPEND_LOCK_KEY))
LEDGER_LOCK_KEY: Final = 0x6578_6C65_6467_6572 >> 1
"""The PostgreSQL advisory lock a sealing append takes before it reads the next leaf index
("exledger" in ASCII, halved). Redundant while every append holds APPEND_LOCK_KEY; it keeps
leaf indexes unique if appends of different runs stop waiting on each other."""
_LEDGER_LOCK: Final = select(func.pg_advisory_xact_lock(LEDGER_LOCK_KEY))
# The next leaf index is read by the INSERT itself: no round trip, and the append lock (SQLite's
# write lock, PostgreSQL's advisory lock) makes it the only writer of the ledger meanwhile.
_INSERT_SEAL: Final = insert(ledger).from_select(
    ["leaf_index", "run_id", "last_seq", "head_hash", "status"],
    select(
        sql_cast(func.coalesce(func.max(ledger.c.leaf_index), -1) + 1, BigInteger),
        sql_cast(bindparam("run_id"), String),
        sql_cast(bindparam("last_seq"), Integer),
        sql_cast(bindparam("head_hash"), String),
        sql_cast(bindparam("status"), String),
    ),
)

_Result = TypeVar("_Result")
_Processor = Callable[[Any], Any]
_NO_VALUES: Final[Mapping[str, Any]] = {}


class RaceLost(Exception):
    """Another writer got to the run first: its seq is taken, or its row moved past ``expected_seq``."""


class Statement:
    """A Core statement compiled once for one dialect, for the bare driver to execute.

    Parameters go through the bind processors of their SQLAlchemy types, as they would in
    ``Connection.execute``; a ``select``'s rows come back through its columns' result processors.
    """

    __slots__ = ("_columns", "_fixed", "_names", "_pick", "_positional", "_processors", "sql")

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql: str = compiled.string
        self._positional = dialect.positional
        binds = {name: bind for bind, name in compiled.bind_names.items()}  # by name as rendered
        self._names = tuple(compiled.positiontup if self._positional and compiled.positiontup else binds)
        self._pick = _picker(self._names)
        processors = (_bind_processor(binds[name].type, dialect) for name in self._names)
        self._processors = tuple(
            (index, process) for index, process in enumerate(processors) if process is not None
        )
        # Values the construct carries itself (the advisory lock's key).
        self._fixed = {name: bind.value for name, bind in binds.items() if not bind.required}
        self._columns: tuple[tuple[str, _Processor | None], ...] = ()
        if isinstance(statement, Select):
            self._columns = tuple(
                (column.name, column.type.dialect_impl(dialect).result_processor(dialect, None))
                for column in statement.selected_columns
            )

    def parameters(self, values: Mapping[str, Any] = _NO_VALUES) -> list[Any] | dict[str, Any]:
        """``values`` by parameter name, converted for the driver, in the dialect's paramstyle."""
        if self._fixed:
            values = {**self._fixed, **values}
        converted = list(self._pick(values))
        for index, process in self._processors:
            converted[index] = process(converted[index])
        return converted if self._positional else dict(zip(self._names, converted, strict=True))

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        """A result row of this ``select`` by column name, converted as SQLAlchemy would."""
        return {
            name: value if process is None else process(value)
            for (name, process), value in zip(self._columns, values, strict=True)
        }


def _picker(names: Sequence[str]) -> Callable[[Mapping[str, Any]], Sequence[Any]]:
    """A function taking ``names``' values out of a mapping, in order (itemgetter does it in C)."""
    if len(names) == 1:
        name = names[0]
        return lambda values: (values[name],)
    return itemgetter(*names) if names else lambda values: ()


def _bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> _Processor | None:
    """How SQLAlchemy converts a value of ``type_`` for the driver (the type's bind processor).

    One exception, for speed: SQLite's DATETIME processor formats the UTC time field by field
    through a dict, a third of an append's conversion work; ``isoformat`` writes the same text
    (``2026-01-01 00:00:00.000000``, a test pins it) after :class:`UtcDateTime`'s own conversion.
    """
    if isinstance(type_, UtcDateTime) and dialect.name == "sqlite":
        to_utc = type_.process_bind_param

        def sqlite_text(value: Any) -> str | None:
            utc = to_utc(value, dialect)
            return None if utc is None else utc.isoformat(" ", "microseconds")

        return sqlite_text
    return type_.dialect_impl(dialect).bind_processor(dialect)


class _Statements:
    """The append path's statements for one dialect; runs-row updates compiled per changed set."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self.select_run = Statement(_SELECT_RUN, dialect)
        self.insert_events = Statement(_INSERT_EVENTS, dialect)
        self._insert_run = Statement(_INSERT_RUN, dialect)
        self.append_lock = Statement(_APPEND_LOCK, dialect)
        self.insert_seal = Statement(_INSERT_SEAL, dialect)
        self.ledger_lock = Statement(_LEDGER_LOCK, dialect)
        self._updates: dict[tuple[str, ...], Statement] = {}

    def insert_run(self, summary: RunSummary) -> tuple[Statement, list[Any] | dict[str, Any]]:
        """The INSERT of a new run's row ``summary``, with its parameters."""
        values = dict(zip(SUMMARY_FIELDS, _summary_values(summary), strict=True))
        return self._insert_run, self._insert_run.parameters(values)

    def update_run(self, old: RunSummary, new: RunSummary) -> tuple[Statement, list[Any] | dict[str, Any]]:
        """The UPDATE that turns the stored row ``old`` into ``new``, with its parameters.

        It sets only the columns that change (SQLite rewrites an index's pages when a statement
        sets its column, even to the value it had), and is guarded by ``last_seq`` too, so even
        a writer that bypassed the lock cannot be overwritten. Only a few sets of columns ever
        change together (every append's, a step's, a model response's, the finish's), so their
        statements are compiled on first use and kept.
        """
        values = {
            name: value
            for name, value, before in zip(
                _UPDATABLE, _updatable_values(new), _updatable_values(old), strict=True
            )
            if value != before
        }
        changed = tuple(values)
        statement = self._updates.get(changed)
        if statement is None:
            guard = and_(
                runs.c.run_id == bindparam("key_run_id"), runs.c.last_seq == bindparam("expected_seq")
            )
            statement = Statement(
                update(runs).where(guard).values({name: bindparam(name) for name in changed}), self._dialect
            )
            self._updates[changed] = statement
        values["key_run_id"] = old.run_id
        values["expected_seq"] = old.last_seq
        return statement, statement.parameters(values)


class AppendTransaction(ABC):
    """One append's statements, inside the transaction :meth:`Writer.run` runs.

    A statement may be sent only when the transaction ends (PostgreSQL's pipeline), so its
    failure can surface there: as the driver's error, or as :class:`RaceLost`.
    """

    @abstractmethod
    def read_run(self, run_id: str) -> RunSummary | None:
        """The run's stored summary row, or None if the run does not exist."""

    @abstractmethod
    def insert_events(self, rows: list[dict[str, Any]]) -> None:
        """Insert events rows, each given by column name (all but ``position``)."""

    @abstractmethod
    def insert_run(self, summary: RunSummary) -> None:
        """Insert a new run's summary row."""

    @abstractmethod
    def update_run(self, old: RunSummary, new: RunSummary) -> None:
        """Turn the stored row ``old`` into ``new``; :class:`RaceLost` if it is no longer ``old``."""

    @abstractmethod
    def insert_seal(self, summary: RunSummary) -> None:
        """Append a seal of the run's row ``summary`` (its last seq, head hash, status) to the ledger."""


class _Session(AppendTransaction):
    """The held connection and how one append's transaction runs on it, per backend."""

    def __init__(self, held: PoolProxiedConnection, statements: _Statements) -> None:
        assert held.dbapi_connection is not None  # a fresh checkout
        self._held = held
        self._statements = statements
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

    def insert_events(self, rows: list[dict[str, Any]]) -> None:
        statement = self._statements.insert_events
        self._cursor.executemany(statement.sql, [statement.parameters(row) for row in rows])

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

    def discard(self) -> None:
        """Close the connection for good (a transaction still open on it is rolled back)."""
        if self.usable:
            self._held.invalidate()

    def close(self) -> None:
        """Give the connection back to the pool."""
        if self.usable:
            self._held.close()


class _SqliteSession(_Session):
    """``BEGIN IMMEDIATE`` (the write lock before the run's row is read: see store._engine),
    the statements, ``COMMIT``; one cursor serves them all."""

    def __init__(
        self, held: PoolProxiedConnection, connection: sqlite3.Connection, statements: _Statements
    ) -> None:
        super().__init__(held, statements)
        self._connection = connection
        self._cursor = connection.cursor()

    def transact(self, body: Callable[[AppendTransaction], _Result]) -> _Result:
        self.committing = False
        self._cursor.execute("BEGIN IMMEDIATE")
        try:
            result = body(self)
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

    def read_run(self, run_id: str) -> RunSummary | None:
        statement = self._statements.select_run
        row = self._cursor.execute(statement.sql, statement.parameters({"run_id": run_id})).fetchone()
        return None if row is None else RunSummary(**statement.row(row))

    def update_run(self, old: RunSummary, new: RunSummary) -> None:
        statement, parameters = self._statements.update_run(old, new)
        if self._cursor.execute(statement.sql, parameters).rowcount != 1:
            raise RaceLost


class _PostgresSession(_Session):
    """Pipeline mode: the advisory lock, the inserts and the update go in one round trip, the
    update's row count is checked, then ``COMMIT`` goes in a second. Reading the run's row (when
    this store has not cached it) costs one more."""

    def __init__(
        self,
        held: PoolProxiedConnection,
        connection: psycopg.Connection[Any],
        statements: _Statements,
        driver_error: type[Exception],
    ) -> None:
        super().__init__(held, statements)
        self._connection = connection
        self._driver_error = driver_error  # psycopg.Error; psycopg is imported only for PostgreSQL
        # A cursor's result is its last statement's, so the two read from have their own.
        self._cursor = connection.cursor()
        self._select = connection.cursor()
        self._update = connection.cursor()
        self._updating = False
        self._lock = statements.append_lock.parameters()
        self._pipeline: psycopg.Pipeline | None = None

    def transact(self, body: Callable[[AppendTransaction], _Result]) -> _Result:
        self.committing = self._updating = False
        try:
            with self._connection.pipeline() as pipeline:
                self._pipeline = pipeline
                self._cursor.execute(self._statements.append_lock.sql, self._lock)
                result = body(self)
                pipeline.sync()
                if self._updating and self._update.rowcount != 1:
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

    def read_run(self, run_id: str) -> RunSummary | None:
        assert self._pipeline is not None
        statement = self._statements.select_run
        self._select.execute(statement.sql, statement.parameters({"run_id": run_id}))
        self._pipeline.sync()
        row = self._select.fetchone()
        return None if row is None else RunSummary(**statement.row(row))

    def insert_seal(self, summary: RunSummary) -> None:
        self._cursor.execute(self._statements.ledger_lock.sql, self._statements.ledger_lock.parameters())
        super().insert_seal(summary)

    def update_run(self, old: RunSummary, new: RunSummary) -> None:
        statement, parameters = self._statements.update_run(old, new)
        self._update.execute(statement.sql, parameters)
        self._updating = True


class Writer:
    """The store's one connection for appends, with the statements compiled for it.

    Not thread-safe: the store holds its lock around :meth:`run` and :meth:`close`.

    Args:
        engine: the store's engine; the connection comes from its pool.
        url: the database as the user gave it, for messages (its password is masked).
    """

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self._url = url
        self._dialect = engine.dialect
        driver = self._dialect.loaded_dbapi
        self._driver_error: type[DBAPIModule.Error] = driver.Error
        self._integrity_error: type[DBAPIModule.Error] = driver.IntegrityError
        self._statements = _Statements(self._dialect)
        self._session: _Session | None = None

    def run(self, doing: str, body: Callable[[AppendTransaction], _Result]) -> _Result:
        """Run ``body`` in one transaction and commit; nothing of it is kept if anything fails.

        Args:
            doing: what is being done, e.g. "appending to run abc", for error messages.
            body: the statements; it may raise to roll everything back.

        Raises:
            RaceLost: a unique constraint was violated, or the runs row was not as expected.
            DatabaseUnavailableError: cannot connect, or the connection was lost (a second time,
                or while committing, when whether the commit happened is unknown).
            StoreError: a statement failed (one line, with the URL and ``doing``).
        """
        retried = False
        while True:
            session = self._connected()
            try:
                return session.transact(body)
            except self._integrity_error as error:
                # A writer that did not take our lock inserted the same seq or run first.
                raise RaceLost from error
            except self._driver_error as error:
                if not self._dialect.is_disconnect(error, session.dbapi_connection, None):
                    raise statement_failed(self._url, doing, error) from error
                session.discard()
                if session.committing or retried:
                    raise statement_failed(self._url, doing, error, lost=True) from error
                retried = True  # lost before COMMIT was sent: nothing was kept, so try again

    def _connected(self) -> _Session:
        """The session on the held connection, connecting first if there is none (or it was lost)."""
        session = self._session
        if session is None or not session.usable:
            held = raw_connect(self._engine, self._url)
            connection = held.dbapi_connection
            if isinstance(connection, sqlite3.Connection):
                session = _SqliteSession(held, connection, self._statements)
            else:
                session = _PostgresSession(
                    held, cast("psycopg.Connection[Any]", connection), self._statements, self._driver_error
                )
            self._session = session
        return session

    def close(self) -> None:
        """Give the held connection back to the pool (the engine's ``dispose`` then closes it)."""
        session, self._session = self._session, None
        if session is not None:
            session.close()
