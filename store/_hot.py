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
  had written them (SQLite keeps datetimes as naive UTC text in SQLAlchemy's format). The
  exceptions are the statements a group commit runs once per event or per run (the events
  inserts, the runs rows of ordinary steps, PostgreSQL's arrays): plain SQL over the schema's
  names, whose values the sessions convert themselves (:func:`sqlite_time`), so that a row
  costs no mapping and no bind processing.
- One DB-API connection is held for appends. It comes from the engine's pool, so the engine's
  ``connect`` listener has set it up (SQLite's pragmas and its manual transaction control),
  and an in-memory SQLite database's single shared connection is shared here too. The store
  serialises its appends on it with a lock (group commit makes one transaction of what waits
  meanwhile); other processes append on their own connections at the same time on PostgreSQL.
- SQLite: ``BEGIN IMMEDIATE`` ... ``COMMIT``. PostgreSQL: psycopg's pipeline mode sends the
  inserts and the runs-row update in one round trip; the update's row count is checked before
  ``COMMIT`` is sent, in a second. Each events row records its transaction's id (``tx``), which
  lets readers tail the log without appends taking any global lock (``store._sql.read_after``).
- The runs row is updated only in the columns whose values may change, never in an indexed
  column that did not: SQLite rewrites an index's pages when a statement sets its column, even
  to the same value, and four of the row's indexed columns never change. An ordinary step sets
  the unindexed step columns (:data:`SQLITE_STEP_COLUMNS`; on PostgreSQL, whose HOT update minds
  only values, :data:`POSTGRES_STEP_COLUMNS`), all of a group's in one statement; a run's first
  and last appends set what changed.

This module holds the statements and the interface a transaction offers the batch writer
(``store._batch``); ``store._session`` holds the connection and how a transaction runs on it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any, Final, TypeAlias, cast

from sqlalchemy import (
    BigInteger,
    Dialect,
    Integer,
    String,
    and_,
    any_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.types import TypeEngine

from executus.storage import RunSummary
from store._leases import lease_statements
from store._schema import UtcDateTime, blobs, events, ledger, runs

__all__ = [
    "EVENT_COLUMNS",
    "LEDGER_LOCK_KEY",
    "POSTGRES_INSERT_EVENTS",
    "POSTGRES_INSERT_EVENTS_ARRAYS",
    "POSTGRES_STEP_COLUMNS",
    "POSTGRES_UPDATE_STEPS_ARRAYS",
    "SQLITE_INSERT_EVENTS",
    "SQLITE_STEP_COLUMNS",
    "SQLITE_UPDATE_STEPS",
    "SUMMARY_FIELDS",
    "AppendTransaction",
    "EventRow",
    "FenceMoved",
    "LeaseAcquire",
    "Parameters",
    "RaceLost",
    "Statement",
    "Statements",
    "fence_moved",
    "sqlite_time",
]

SUMMARY_FIELDS: Final = tuple(field.name for field in dataclasses.fields(RunSummary))
"""The runs row's columns: :class:`executus.storage.RunSummary`'s fields."""

EVENT_COLUMNS: Final = tuple(
    column.name for column in events.columns if column not in (events.c.position, events.c.tx)
)
"""The events row's columns an insert takes values for (all but the generated ``position``, and
``tx``, which PostgreSQL's inserts set to their own transaction's id)."""
EventRow: TypeAlias = tuple[str, int, str, int, datetime, str, str]
"""An events row as the batch writer hands it over, in :data:`EVENT_COLUMNS` order: run_id,
seq, kind, schema_version, at (aware), payload (the body's text), hash (hex). A tuple, not a
dict: a group commit builds hundreds of them, and each session converts them for its driver."""
SQLITE_INSERT_EVENTS: Final = (
    f"INSERT INTO {events.name} ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
)
"""SQLite: one events row, its values in :data:`EVENT_COLUMNS` order (``at`` as
:func:`sqlite_time`'s text, ``hash`` as bytes)."""
_UPDATABLE: Final = tuple(name for name in SUMMARY_FIELDS if name != "run_id")
_summary_values: Final = attrgetter(*SUMMARY_FIELDS)
_updatable_values: Final = attrgetter(*_UPDATABLE)

_SELECT_RUN: Final = select(*(runs.c[name] for name in SUMMARY_FIELDS)).where(
    runs.c.run_id == bindparam("run_id")
)
_POSTGRES_SELECT_RUNS: Final = select(*(runs.c[name] for name in SUMMARY_FIELDS)).where(
    runs.c.run_id == any_(bindparam("run_ids", type_=postgresql.ARRAY(String)))
)
POSTGRES_INSERT_EVENTS: Final = (
    f"INSERT INTO {events.name} ({', '.join(EVENT_COLUMNS)}, tx) "
    f"VALUES ({', '.join(['%s'] * len(EVENT_COLUMNS))}, pg_current_xact_id())"
)
"""PostgreSQL: one events row, its values in :data:`EVENT_COLUMNS` order (``hash`` as bytes)."""
_POSTGRES_ARRAY_TYPES: Final = {
    "run_id": "varchar",
    "seq": "integer",
    "kind": "varchar",
    "schema_version": "integer",
    "at": "timestamptz",
    "payload": "text",
    "hash": "bytea",
}
POSTGRES_INSERT_EVENTS_ARRAYS: Final = (
    f"INSERT INTO {events.name} ({', '.join(EVENT_COLUMNS)}, tx) SELECT *, pg_current_xact_id() FROM unnest("
    + ", ".join(f"%({name})b::{_POSTGRES_ARRAY_TYPES[name]}[]" for name in EVENT_COLUMNS)
    + ")"
)
"""PostgreSQL: any number of events rows in one INSERT, one array per column. Each statement in
a pipeline costs a send and a receive of its own, so a group commit's hundreds of rows go in one
statement rather than one per row (and its text is short enough for psycopg to cache)."""
POSTGRES_STEP_COLUMNS: Final = (
    "status",
    "steps",
    "input_tokens",
    "output_tokens",
    "last_seq",
    "last_event_at",
    "head_hash",
)
"""The runs-row columns an append can change before its run finishes (none of them NULL)."""
SQLITE_STEP_COLUMNS: Final = tuple(name for name in POSTGRES_STEP_COLUMNS if name != "status")
"""SQLite: the runs-row columns an ordinary step's append sets; status is left out (it is
indexed, and SQLite rewrites an index's entry whenever a statement sets its column)."""
SQLITE_UPDATE_STEPS: Final = (
    f"UPDATE {runs.name} SET {', '.join(f'{name} = ?' for name in SQLITE_STEP_COLUMNS)}"
    " WHERE run_id = ? AND last_seq = ?"
)
"""SQLite: one run's row after an append that changes only :data:`SQLITE_STEP_COLUMNS`, its
parameters those columns' values then the run id and the expected last_seq (the guard
:meth:`Statements.update_run` has). All of a group's go in one ``executemany``."""
_POSTGRES_STEP_TYPES: Final = ("varchar", "integer", "bigint", "bigint", "integer", "timestamptz", "varchar")
POSTGRES_UPDATE_STEPS_ARRAYS: Final = (
    f"UPDATE {runs.name} SET "
    + ", ".join(f"{name} = v.{name}" for name in POSTGRES_STEP_COLUMNS)
    + " FROM unnest(%(run_id)b::varchar[], %(expected_seq)b::integer[], "
    + ", ".join(
        f"%({name})b::{kind}[]"
        for name, kind in zip(POSTGRES_STEP_COLUMNS, _POSTGRES_STEP_TYPES, strict=True)
    )
    + f") AS v(run_id, expected_seq, {', '.join(POSTGRES_STEP_COLUMNS)})"
    + f" WHERE {runs.name}.run_id = v.run_id AND {runs.name}.last_seq = v.expected_seq"
)
"""PostgreSQL: the runs rows of a whole group in one UPDATE, for the appends that change only
:data:`POSTGRES_STEP_COLUMNS` (all but a run's first and last), guarded by last_seq like
:meth:`Statements.update_run`'s. PostgreSQL's HOT update needs only the indexed columns' values
to stay the same, so setting unchanged ones costs nothing there (unlike on SQLite)."""
_INSERT_RUN: Final = insert(runs).values({name: bindparam(name) for name in SUMMARY_FIELDS})
_SELECT_HASH: Final = select(events.c.hash).where(
    and_(events.c.run_id == bindparam("run_id"), events.c.seq == bindparam("seq"))
)
_BLOB_VALUES: Final[dict[str, Any]] = {
    "sha256": bindparam("sha256"),
    "media_type": bindparam("media_type"),
    "data": bindparam("data"),
}
_INSERT_BLOB: Final = {
    "sqlite": sqlite.insert(blobs)
    .values(_BLOB_VALUES)
    .on_conflict_do_nothing(index_elements=[blobs.c.sha256]),
    "postgresql": postgresql.insert(blobs)
    .values(_BLOB_VALUES)
    .on_conflict_do_nothing(index_elements=[blobs.c.sha256]),
}
"""A blob is stored once by its sha256: the first media type wins."""
LEDGER_LOCK_KEY: Final = 0x6578_6C65_6467_6572 >> 1
"""The PostgreSQL advisory lock a sealing append takes before it reads the next leaf index
("exledger" in ASCII, halved): the one lock appends of different runs share, and only those
that seal a run (its end, and every so many events of a long run), so that leaf indexes stay
0, 1, 2... with no gap and no repeat. Held to the commit, so seals also commit in leaf order."""
_LEDGER_LOCK: Final = select(func.pg_advisory_xact_lock(LEDGER_LOCK_KEY))
# The next leaf index is read by the INSERT itself: no round trip, and the ledger lock
# (PostgreSQL's advisory lock; SQLite's write lock) makes it the only writer of the ledger meanwhile.
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

LeaseAcquire: TypeAlias = tuple[str, str, float, bool]
"""A lease to take: run id, owner, seconds to live, whether to take it even from a live owner."""
Parameters = list[Any] | dict[str, Any]
"""A statement's parameters, converted for the driver, in the dialect's paramstyle."""
_Processor = Callable[[Any], Any]
_NO_VALUES: Final[Mapping[str, Any]] = {}


class RaceLost(Exception):
    """Another writer got to the run first: its seq is taken, or its row moved past ``expected_seq``."""


class FenceMoved(Exception):
    """Fenced appends whose run's lease epoch moved on (another worker took the run over);
    nothing of the transaction is kept.

    Attributes:
        owners: each (run id, epoch) that is no longer the run's lease, with the run's owner
            now (None if the run has no lease).
    """

    def __init__(self, owners: dict[tuple[str, int], str | None]) -> None:
        self.owners = owners
        super().__init__(", ".join(f"run {run_id} is past epoch {epoch}" for run_id, epoch in owners))


def fence_moved(fenced: Sequence[tuple[str, int]], rows: Iterable[tuple[str, int, str | None]]) -> None:
    """Raise :class:`FenceMoved` for the (run id, epoch) pairs of ``fenced`` that are not the
    runs' leases, given as read: (run id, epoch, owner) rows."""
    held = {run_id: (epoch, owner) for run_id, epoch, owner in rows}
    owners = {
        (run_id, epoch): held[run_id][1] if run_id in held else None
        for run_id, epoch in fenced
        if run_id not in held or held[run_id][0] != epoch
    }
    if owners:
        raise FenceMoved(owners)


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
        # Values the construct carries itself (the ledger lock's key).
        self._fixed = {name: bind.value for name, bind in binds.items() if not bind.required}
        self._columns: tuple[tuple[str, _Processor | None], ...] = ()
        if isinstance(statement, Select | UpdateBase):  # a select's columns, or what DML returns
            self._columns = tuple(
                (column.name, column.type.dialect_impl(dialect).result_processor(dialect, None))
                for column in statement.exported_columns
            )

    def parameters(self, values: Mapping[str, Any] = _NO_VALUES) -> Parameters:
        """``values`` by parameter name, converted for the driver, in the dialect's paramstyle."""
        if self._fixed:
            values = {**self._fixed, **values}
        converted = list(self._pick(values))
        for index, process in self._processors:
            converted[index] = process(converted[index])
        return converted if self._positional else dict(zip(self._names, converted, strict=True))

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        """A result row of this ``select`` (or of what it returns) by column name, converted as
        SQLAlchemy would."""
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


def sqlite_time(value: datetime) -> str:
    """An aware time as SQLite keeps it: :class:`UtcDateTime`'s conversion to naive UTC, then
    SQLAlchemy's text for it (``2026-01-01 00:00:00.000000``, a test pins the two together).

    For speed: SQLAlchemy's DATETIME processor formats the time field by field through a dict,
    and the conversion makes a naive copy; ``isoformat`` of the aware UTC time writes the same
    fixed-width text followed by ``+00:00``, which is cut off.

    Raises:
        ValueError: ``value`` is naive (as :class:`UtcDateTime` does).
    """
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: executus stores only timezone-aware times")
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _sqlite_time_or_none(value: datetime | None) -> str | None:
    return None if value is None else sqlite_time(value)


def _bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> _Processor | None:
    """How SQLAlchemy converts a value of ``type_`` for the driver (the type's bind processor),
    except SQLite's times, which :func:`sqlite_time` converts (a third of an append's conversion
    work went into SQLAlchemy's)."""
    if isinstance(type_, UtcDateTime) and dialect.name == "sqlite":
        return _sqlite_time_or_none
    return type_.dialect_impl(dialect).bind_processor(dialect)


class Statements:
    """The append path's statements for one dialect; runs-row updates compiled per changed set."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self.dialect_name: str = dialect.name
        self.select_run = Statement(_SELECT_RUN, dialect)
        self.select_runs = Statement(_POSTGRES_SELECT_RUNS, dialect) if dialect.name == "postgresql" else None
        """PostgreSQL only: the rows of the runs ``run_ids`` (an array), in one statement."""
        self.select_hash = Statement(_SELECT_HASH, dialect)
        self._insert_run = Statement(_INSERT_RUN, dialect)
        self.insert_blob = Statement(_INSERT_BLOB[dialect.name], dialect)
        self.insert_seal = Statement(_INSERT_SEAL, dialect)
        self.ledger_lock = Statement(_LEDGER_LOCK, dialect)
        lease = lease_statements(dialect.name)
        self.acquire_lease = Statement(lease.acquire, dialect)
        self.release_lease = Statement(lease.release, dialect)
        self.lease_holder = Statement(lease.holder, dialect)
        self._updates: dict[tuple[str, ...], Statement] = {}

    def insert_run(self, summary: RunSummary) -> tuple[Statement, Parameters]:
        """The INSERT of a new run's row ``summary``, with its parameters."""
        values = dict(zip(SUMMARY_FIELDS, _summary_values(summary), strict=True))
        return self._insert_run, self._insert_run.parameters(values)

    def update_run(self, old: RunSummary, new: RunSummary) -> tuple[Statement, Parameters]:
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
    """The statements of one transaction that :meth:`store._session.AppendConnection.attempt` runs.

    A statement may be sent only when the transaction ends (PostgreSQL's pipeline), so its
    failure can surface there: as the driver's error, or as :class:`RaceLost`.
    """

    @abstractmethod
    def read_runs(self, run_ids: Sequence[str]) -> dict[str, RunSummary | None]:
        """Each run's stored summary row, None for a run that does not exist (one round trip)."""

    @abstractmethod
    def insert_events(self, rows: Sequence[EventRow]) -> None:
        """Insert events rows (all columns but ``position`` and ``tx``)."""

    @abstractmethod
    def insert_run(self, summary: RunSummary) -> None:
        """Insert a new run's summary row."""

    @abstractmethod
    def update_run(self, old: RunSummary, new: RunSummary) -> None:
        """Turn the stored row ``old`` into ``new``; :class:`RaceLost` if it is no longer ``old``."""

    @abstractmethod
    def read_hash(self, run_id: str, seq: int) -> str | None:
        """The hex hash of the run's event ``seq``, or None if there is none."""

    @abstractmethod
    def insert_blob(self, sha256: str, media_type: str, data: bytes) -> None:
        """Store a blob unless one with that sha256 is already stored."""

    @abstractmethod
    def fence(self, fenced: Sequence[tuple[str, int]]) -> None:
        """Lock the lease rows of these (run id, epoch) pairs' runs until the transaction ends
        (in run id order, so that two transactions lock in one order), and make sure each epoch
        is still its run's, or raise :class:`FenceMoved` before ``COMMIT``.

        PostgreSQL learns the epochs with the writes' round trip rather than in one of their
        own, so a moved epoch is found after the writes were sent, and rolls them back. If the
        new owner's seqs collide with them first, the commit fails as :class:`RaceLost`, and
        the retry reads the run's row afresh, writes nothing for a stale batch, and finds the
        moved epoch then."""

    @abstractmethod
    def acquire_leases(self, acquires: Sequence[LeaseAcquire]) -> list[tuple[int, datetime] | None]:
        """Take each run's lease for its owner, as :meth:`executus.storage.RunLeases.acquire`
        does: the new epoch and expiry of each, or None where another owner's lease is live."""

    @abstractmethod
    def lease_holder(self, run_id: str) -> tuple[str | None, datetime]:
        """The owner and expiry of the run's lease (which exists)."""

    @abstractmethod
    def release_leases(self, held: Sequence[tuple[str, int]]) -> None:
        """End each (run id, epoch) lease now, if that epoch is still the run's; a lease whose
        run has finished is marked finished (never claimed again)."""

    @abstractmethod
    def delete_queued(self, run_ids: Sequence[str]) -> None:
        """Remove these runs from the queue (they are starting)."""

    @abstractmethod
    def insert_seal(self, summary: RunSummary) -> None:
        """Append a seal of the run's row ``summary`` (its last seq, head hash, status) to the ledger."""
