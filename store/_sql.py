"""The SQL event store: the in-memory store's contract, kept in SQLite or PostgreSQL.

An append is all or nothing: the events, their hash chain and the run's summary row go in
together. The executor appends through :meth:`SqlStore.writer`, a thread that commits the
batches of every run waiting at that moment in one transaction (``store._writer``,
``store._batch``), so a slow, locked or unreachable database delays only the runs that wait
for it, never the event loop. :meth:`SqlStore.append` is the same commit made on the calling
thread (for tools, imports and virtual-clock runs). Every wait is bounded and transient
failures are retried for a while (:class:`WriterSettings`). Appends bypass SQLAlchemy's
execution machinery and run SQL compiled once from the schema on one held DB-API connection
(``store._hot``, ``store._session``); reads go through SQLAlchemy.

An events row keeps the envelope (run id, seq, kind, schema version, time) in columns, the
rest of the event as its body's JSON, and its hash as 32 raw bytes; the previous hash is not
stored, being the hash of the run's previous seq. That is about 40% less disk per step than
keeping the whole canonical text and both hashes in hex. The text the hash covers is rebuilt
from the row when it is asked for (:meth:`SqlStore.records`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Row,
    Select,
    String,
    and_,
    bindparam,
    func,
    literal,
    literal_column,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.engine.interfaces import DBAPIModule

from executus import RunNotFoundError
from executus._leases import LeasesThrough
from executus.events import Event, SchemaVersionError, UnknownEventError
from executus.storage import (
    GENESIS_HASH,
    Blob,
    BlobNotFoundError,
    EventWriter,
    InlineWriter,
    RunQuery,
    RunSummary,
    SealPolicy,
    decode_event_body,
    event_json_from_body,
)
from store._batch import AppendRequest, BlobRequest, GroupCommitter, Request
from store._engine import connect, create_store_engine, create_writer_engine, display_url, statement_failed
from store._hot import SUMMARY_FIELDS, Statement
from store._leases import SqlLeases
from store._schema import blobs, events, runs
from store._session import AppendConnection
from store._settings import WriterSettings
from store._writer import ThreadWriter

__all__ = ["SqlStore", "StoredEvent"]

_DEFAULT_QUERY: Final = RunQuery()
_DEFAULT_SEAL_POLICY: Final = SealPolicy()

_SQLITE_AT_JSON: Final = type_coerce(events.c.at, String).concat("Z").label("at")
"""``at`` as JSON text, from SQLite's naive UTC text (``2026-01-01 00:00:00.000000``)."""
_POSTGRES_AT_JSON: Final = func.to_char(
    func.timezone("UTC", events.c.at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
).label("at")
"""``at`` as JSON text, from PostgreSQL's timestamptz."""


def _select_run_events(at_json: ColumnElement[str]) -> Select[int, str, int, str, str]:
    """What read_run decodes. The database writes ``at`` as the JSON's text: parsing it into a
    datetime here and formatting it again would cost a fifth of the read."""
    return (
        select(events.c.seq, events.c.kind, events.c.schema_version, at_json, events.c.payload)
        .where(and_(events.c.run_id == bindparam("run_id"), events.c.seq > bindparam("after_seq")))
        .order_by(events.c.seq)
    )


_previous: Final = events.alias("previous")
_SELECT_RECORDS: Final = select(
    events.c.position,
    events.c.run_id,
    events.c.seq,
    events.c.kind,
    events.c.schema_version,
    events.c.at,
    events.c.payload,
    events.c.hash,
    # A lookup by the unique index per row: a join could be planned as a scan of the whole
    # table on PostgreSQL before it has statistics.
    select(_previous.c.hash)
    .where(and_(_previous.c.run_id == events.c.run_id, _previous.c.seq == events.c.seq - 1))
    .scalar_subquery()
    .label("prev_hash"),
)
"""Rows with what a :class:`StoredEvent` needs: the previous hash is the previous seq's row's."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored: its global position, hash-chain links and exact stored text."""

    position: int
    """The row's global place, unique across all runs and increasing within a run; tail the
    store with :meth:`SqlStore.read_after` (which says in what order it returns rows)."""
    event: Event
    prev_hash: str
    """The previous event's hash, in hex (``GENESIS_HASH`` for seq 1)."""
    hash: str
    """``chain_hash(prev_hash, payload_json)``, in hex."""
    payload_json: str
    """The event's canonical text, what :attr:`hash` covers: rebuilt from the stored body and
    envelope columns, and exactly the text that was hashed when the event was appended."""


class SqlStore(LeasesThrough):
    """An :class:`executus.storage.EventStore` in SQLite or PostgreSQL.

    Use :func:`store.open_store` to get one for a database that may still need its schema;
    this constructor assumes the schema is there and does not connect until first used.

    On PostgreSQL appends of different runs never wait for each other, in one process or many:
    a transaction locks only its own runs' rows (and the ledger, when it seals a run). So a
    transaction that took position 10 may commit after one that took 11, and a reader tailing
    by position must not move past 10 before it is visible: :meth:`read_after` reads only rows
    of transactions older than every one still running, in (transaction id, position) order
    (see there). SQLite has one writer at a time (``BEGIN IMMEDIATE``): positions are commit order.

    It also keeps run leases, the work queue and cancel requests
    (:class:`executus.storage.RunLeases`, ``store._leases``); an append with an ``epoch`` is
    fenced by the run's lease.

    Args:
        url: a SQLAlchemy URL, ``sqlite:///PATH`` or ``postgresql+psycopg://USER@HOST/DB``.
        settings: timeouts and the retry window of every write (the defaults if None).
        seal_policy: when an append seals its run into the ledger besides when the run
            finishes (every 1000 events or each hour by default).

    Raises:
        DatabaseUnavailableError: the URL is malformed or names an unsupported backend.
    """

    def __init__(
        self,
        url: str,
        *,
        settings: WriterSettings | None = None,
        seal_policy: SealPolicy = _DEFAULT_SEAL_POLICY,
    ) -> None:
        self._url = url
        self.settings = settings or WriterSettings()
        """The timeouts and retry window of this store's writes."""
        self.seal_policy = seal_policy
        """When appends seal a run into the ledger besides when it finishes."""
        self.engine = create_store_engine(url, self.settings.connect_timeout)
        self._postgres = self.engine.dialect.name == "postgresql"
        self._driver_error: type[DBAPIModule.Error] = self.engine.dialect.loaded_dbapi.Error
        self._select_run_events = Statement(
            _select_run_events(_POSTGRES_AT_JSON if self._postgres else _SQLITE_AT_JSON), self.engine.dialect
        )
        # PostgreSQL's writer connects on its own (see create_writer_engine); SQLite's shares the
        # pool, which for an in-memory database is its one connection.
        self._writer_engine = create_writer_engine(url, self.settings) if self._postgres else self.engine
        self._committer = GroupCommitter(
            AppendConnection(self._writer_engine, url, self.settings),
            url,
            self.settings,
            self._last_seq,
            seal_policy,
        )
        self._writer: ThreadWriter | None = None
        self._closed = False
        self._leases: SqlLeases = SqlLeases(self.engine, url)

    @property
    def write_transactions(self) -> int:
        """How many transactions this store's writes have committed (group commit shows here)."""
        return self._committer.transactions

    @property
    def display_url(self) -> str:
        """The database URL with its password masked."""
        return display_url(self._url)

    def __repr__(self) -> str:
        return f"SqlStore({self.display_url!r})"

    def close(self) -> None:
        """Commit the writes still waiting in :meth:`writer`, then close every connection.

        The store must not be used afterwards. Idempotent.
        """
        if self._writer is not None:
            self._writer.close()
        self._leases.close()
        if not self._closed:
            self._closed = True
            self._committer.close()
        self.engine.dispose()
        self._writer_engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _read(self, doing: str) -> Iterator[Connection]:
        with connect(self.engine, self._url, doing) as connection, connection.begin():
            yield connection

    # -- writing -------------------------------------------------------------------------------

    def writer(self) -> EventWriter:
        """The executor's write port: commits off the event loop, many runs per transaction.

        One per store, started on first use and stopped by :meth:`close` once what is waiting
        is committed. See ``store._writer`` for what cancelling an ``await append`` means. An
        in-memory SQLite database has no IO to wait for and one connection that readers share,
        so it gets an :class:`executus.InlineWriter` instead.
        """
        if self.engine.url.database in (None, "", ":memory:") and not self._postgres:
            return InlineWriter(self)
        if self._writer is None:
            self._writer = ThreadWriter(
                self._committer, self.settings.max_group, f"executus writer for {self.display_url}", self
            )
        return self._writer

    def append(
        self, run_id: str, events: Sequence[Event], expected_seq: int, *, epoch: int | None = None
    ) -> None:
        """Append ``events`` after ``expected_seq`` in one transaction, on the calling thread.

        Safe to call from several threads; appends to one store take turns. Transient failures
        are retried as :attr:`settings` say, blocking the caller meanwhile: code on an event
        loop should append through :meth:`writer`.

        With ``epoch``, the append is fenced: it commits only while the run's lease has that epoch.

        Raises:
            ConcurrencyError: the run's log does not end at ``expected_seq``, or a racing writer
                inserted the same seq first; nothing of this batch is written.
            LeaseLostError: the run's lease epoch is not ``epoch``; nothing written.
            EventOrderError: the batch is not the run's next events in order.
            StoreUnavailableError: transient failures lasted the whole retry window.
            DatabaseUnavailableError: the database cannot be opened.
            StoreError: the database refused a statement.
        """
        self._commit_now(AppendRequest(run_id, tuple(events), expected_seq, epoch))

    def _commit_now(self, request: Request) -> None:
        self._committer.commit([request])
        if request.error is not None:
            raise request.error

    def _last_seq(self, run_id: str) -> int:
        with self._read(f"reading run {run_id}") as connection:
            last = connection.execute(select(func.max(events.c.seq)).where(events.c.run_id == run_id))
            return int(last.scalar_one() or 0)

    def put_blob(self, data: bytes, media_type: str) -> str:
        """Store content once by its sha256 and return the hex digest (the first media type wins)."""
        digest = hashlib.sha256(data).hexdigest()
        self._commit_now(BlobRequest(digest, media_type, data))
        return digest

    # -- reading -------------------------------------------------------------------------------

    def read_run(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """A run's events in seq order, after ``after_seq``.

        Raises:
            RunNotFoundError: no such run (with ids that start with ``run_id`` as suggestions).
            UnknownEventError, SchemaVersionError: a stored event this code cannot read.
        """
        doing = f"reading run {run_id}"
        with self._read(doing) as connection:
            # Only what decoding needs: positions and hashes are not read back.
            rows = self._fetch(
                connection, doing, self._select_run_events, {"run_id": run_id, "after_seq": after_seq}
            )
            if not rows:
                self._check_exists(connection, run_id)
        try:
            return [
                decode_event_body(body, run_id, seq, kind, version, at)
                for seq, kind, version, at, body in rows
            ]
        except (UnknownEventError, SchemaVersionError):
            # A log this code cannot read: decode again, one by one, to name the row.
            for seq, kind, version, at, body in rows:
                _decode(run_id, seq, kind, version, at, body)
            raise

    def _fetch(
        self, connection: Connection, doing: str, statement: Statement, values: dict[str, Any]
    ) -> Sequence[Any]:
        """``statement``'s rows as the driver returns them, run on the connection's own cursor.

        For long reads of columns that need no conversion (``read_run``), whose SQLAlchemy
        result rows would cost 3% (SQLite) to 7% (PostgreSQL) of the read. Driver errors become
        executus errors, as :func:`store._engine.connect` makes SQLAlchemy's.
        """
        cursor = connection.connection.cursor()
        try:
            cursor.execute(statement.sql, statement.parameters(values))
            return cursor.fetchall()
        except self._driver_error as error:
            lost = self.engine.dialect.is_disconnect(error, connection.connection.dbapi_connection, cursor)
            raise statement_failed(self._url, doing, error, lost=lost) from error
        finally:
            cursor.close()

    def records(self, run_id: str) -> list[StoredEvent]:
        """A run's events with their positions, hashes and stored text, in seq order.

        Raises:
            RunNotFoundError: no such run.
        """
        return self._records(run_id, 0)

    def _records(self, run_id: str, after_seq: int) -> list[StoredEvent]:
        with self._read(f"reading run {run_id}") as connection:
            rows = connection.execute(
                _SELECT_RECORDS.where(and_(events.c.run_id == run_id, events.c.seq > after_seq)).order_by(
                    events.c.seq
                )
            ).all()
            if not rows:
                self._check_exists(connection, run_id)
        return [_stored(row) for row in rows]

    def _check_exists(self, connection: Connection, run_id: str) -> None:
        if connection.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first() is None:
            raise RunNotFoundError(run_id, self._with_prefix(connection, run_id, 5))

    def read_after(self, position: int, limit: int = 1000) -> list[StoredEvent]:
        """Events of every run committed after the one at global ``position``, in a fixed order
        that never changes behind a reader: tail the store by passing the last position returned
        (0 to start). No event is skipped, however late its transaction commits, nor repeated.

        SQLite: in position order, which is commit order (one writer at a time). PostgreSQL,
        where appends of different runs commit concurrently: in (transaction id, position)
        order, and only events of transactions older than every transaction still running
        (``pg_snapshot_xmin``), whose set can no longer grow. So positions increase within a
        run and within a transaction, but a later page may hold smaller positions than an
        earlier one; and a transaction left open (by any client of the database) holds every
        later event back until it ends. Positions may have gaps (a failed append still uses
        up its positions).
        """
        statement = _SELECT_RECORDS.limit(limit)
        if self._postgres:
            statement = statement.where(*_after_on_postgres(position)).order_by(
                events.c.tx, events.c.position
            )
        else:
            statement = statement.where(events.c.position > position).order_by(events.c.position)
        with self._read("reading events") as connection:
            rows = connection.execute(statement).all()
        return [_stored(row) for row in rows]

    def get_run(self, run_id: str) -> RunSummary:
        """A run's summary row. Raises :class:`RunNotFoundError`."""
        with self._read(f"reading run {run_id}") as connection:
            row = connection.execute(select(runs).where(runs.c.run_id == run_id)).one_or_none()
        if row is None:
            raise RunNotFoundError(run_id)
        return _summary(row)

    def list_runs(self, query: RunQuery = _DEFAULT_QUERY) -> list[RunSummary]:
        """Summaries of the runs that match ``query``, newest first (ties by run id, descending)."""
        # Ties by run id in code-point order, as the in-memory store sorts; PostgreSQL's default
        # collation may be a locale's, so ask for "C" there (SQLite's BINARY already is).
        run_id = runs.c.run_id.collate("C") if self._postgres else runs.c.run_id
        statement = select(runs).order_by(runs.c.started_at.desc(), run_id.desc())
        for column, value in (
            (runs.c.status, query.status),
            (runs.c.agent, query.agent),
            (runs.c.caller_id, query.caller_id),
        ):
            if value is not None:
                statement = statement.where(column == value)
        if query.since is not None:
            statement = statement.where(runs.c.started_at >= query.since)
        if query.until is not None:
            statement = statement.where(runs.c.started_at < query.until)
        if query.limit is not None:
            statement = statement.limit(query.limit)
        with self._read("listing runs") as connection:
            return [_summary(row) for row in connection.execute(statement)]

    def run_ids_with_prefix(self, prefix: str, limit: int = 5) -> list[str]:
        """Run ids starting with ``prefix``, oldest first: suggestions for a mistyped id."""
        with self._read("listing runs") as connection:
            return self._with_prefix(connection, prefix, limit)

    @staticmethod
    def _with_prefix(connection: Connection, prefix: str, limit: int) -> list[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = (
            select(runs.c.run_id)
            .where(runs.c.run_id.like(f"{escaped}%", escape="\\"))
            .order_by(runs.c.started_at, runs.c.run_id)
            .limit(limit)
        )
        return list(connection.execute(statement).scalars())

    def get_blob(self, sha256: str) -> Blob:
        """Stored content by hash. Raises :class:`BlobNotFoundError`."""
        with self._read(f"reading blob {sha256}") as connection:
            row = connection.execute(select(blobs).where(blobs.c.sha256 == sha256)).one_or_none()
        if row is None:
            raise BlobNotFoundError(sha256)
        return Blob(row.sha256, row.media_type, bytes(row.data))


_FIRST_TRANSACTION: Final[ColumnElement[Any]] = literal_column("'0'::xid8")
"""Before every transaction id: where a reader starts (rows older than 0004 hold it too)."""


def _after_on_postgres(position: int) -> tuple[ColumnElement[bool], ...]:
    """Rows after the one at ``position`` in (tx, position) order, of finished transactions only.

    The reader's place is the row it saw last, found again by its position; a position with no
    row (0, or one a failed append used up) stands for the row before it.
    """
    seen_tx = (
        select(events.c.tx)
        .where(events.c.position <= position)
        .order_by(events.c.position.desc())
        .limit(1)
        .scalar_subquery()
    )
    place = tuple_(func.coalesce(seen_tx, _FIRST_TRANSACTION), literal(position, BigInteger()))
    oldest_running = func.pg_snapshot_xmin(func.pg_current_snapshot())
    return tuple_(events.c.tx, events.c.position) > place, events.c.tx < oldest_running


def _summary(row: Row[Any]) -> RunSummary:
    mapping = row._mapping
    return RunSummary(**{name: mapping[name] for name in SUMMARY_FIELDS})


def _stored(row: Row[*tuple[Any, ...]]) -> StoredEvent:
    event = _decode(row.run_id, row.seq, row.kind, row.schema_version, row.at, row.payload)
    text = event_json_from_body(row.payload, row.run_id, row.seq, row.kind, row.schema_version, row.at)
    # No previous row: seq 1, or a gap (which the chain check then reports as a broken link).
    prev_hash = GENESIS_HASH if row.prev_hash is None else row.prev_hash.hex()
    return StoredEvent(row.position, event, prev_hash, row.hash.hex(), text)


def _decode(run_id: str, seq: int, kind: str, schema_version: int, at: datetime | str, body: str) -> Event:
    """Decode a stored event; a decoding error keeps its type and gains the run id and seq."""
    try:
        return decode_event_body(body, run_id, seq, kind, schema_version, at)
    except (UnknownEventError, SchemaVersionError) as error:
        raise type(error)(f"run {run_id} seq {seq}: {error}") from error
