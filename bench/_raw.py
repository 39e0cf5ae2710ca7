"""The physical limit: the same rows executus stores, written with the bare DB-API drivers.

Rows are derived from real executor events with executus's own functions
(``event_json_and_body``, ``chain_hash``, ``summarize``) before the timing starts; inside it,
each event's body (its payload without the envelope keys, which are columns) is encoded with
``json.dumps`` (as the issue's anchor scripts did) and the rows go in with ``executemany``, one
transaction per executor batch, into tables created by executus's own schema: the same
columns executus writes, the hash as 32 raw bytes. Two variants:

* **events only**: the ``events`` rows, nothing else: the limit as the issue words it.
* **events + runs row**: also the run's summary row (``INSERT`` with the first batch, then an
  ``UPDATE`` of the columns that changed): every row executus writes, at the least cost.

Neither reads anything back or checks the expected seq; executus does both on every append.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg

from executus.events import Event
from executus.storage import GENESIS_HASH, RunSummary, chain_hash, event_json_and_body, summarize

__all__ = ["RawBatch", "psycopg_append", "raw_batches", "sqlite_append"]

Dialect = Literal["sqlite", "postgresql"]
_ALWAYS = ("last_seq", "last_event_at", "head_hash", "steps", "input_tokens", "output_tokens")
_EVENT_COLUMNS = "run_id, seq, kind, schema_version, at, hash, payload"


@dataclass(frozen=True, slots=True)
class RawBatch:
    """One executor transaction as plain rows."""

    rows: list[tuple[Any, ...]]
    """Each event's columns except the payload, in ``_EVENT_COLUMNS`` order."""
    payloads: list[dict[str, Any]]
    """Each event's body (no envelope keys) as plain data, encoded inside the timing."""
    run_sql: str
    """The statement that keeps the runs row current (INSERT first, UPDATE after)."""
    run_params: tuple[Any, ...]


def _at(value: datetime, dialect: Dialect) -> object:
    # SQLAlchemy stores SQLite datetimes as naive UTC text in this fixed-width format.
    if dialect == "sqlite":
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return value


def _run_statement(old: RunSummary | None, new: RunSummary, dialect: Dialect) -> tuple[str, tuple[Any, ...]]:
    mark = "?" if dialect == "sqlite" else "%s"
    values = {
        key: _at(value, dialect) if isinstance(value, datetime) else value
        for key, value in dataclasses.asdict(new).items()
    }
    if old is None:
        columns = ", ".join(values)
        sql = f"INSERT INTO runs ({columns}) VALUES ({', '.join(mark for _ in values)})"
        return sql, tuple(values.values())
    changed = [
        key
        for key in values
        if key in _ALWAYS or (key != "run_id" and getattr(new, key) != getattr(old, key))
    ]
    sets = ", ".join(f"{key} = {mark}" for key in changed)
    sql = f"UPDATE runs SET {sets} WHERE run_id = {mark}"
    return sql, (*(values[key] for key in changed), new.run_id)


def raw_batches(batches: Sequence[Sequence[Event]], dialect: Dialect) -> list[RawBatch]:
    """Rows for ``batches`` (several runs' batches, each run's in order), hashes precomputed."""
    summaries: dict[str, RunSummary] = {}
    out: list[RawBatch] = []
    for batch in batches:
        run_id = batch[0].run_id
        old = summaries.get(run_id)
        summary = old
        prev_hash = old.head_hash if old else GENESIS_HASH
        rows: list[tuple[Any, ...]] = []
        bodies: list[dict[str, Any]] = []
        for event in batch:
            full, body = event_json_and_body(event)
            digest = chain_hash(prev_hash, full)
            summary = summarize(summary, event, digest)
            rows.append(
                (
                    run_id,
                    event.seq,
                    event.kind,
                    event.schema_version,
                    _at(event.at, dialect),
                    bytes.fromhex(digest),
                )
            )
            bodies.append(json.loads(body))
            prev_hash = digest
        assert summary is not None
        summaries[run_id] = summary
        sql, params = _run_statement(old, summary, dialect)
        out.append(RawBatch(rows, bodies, sql, params))
    return out


def sqlite_append(path: str, batches: Sequence[RawBatch], *, with_runs: bool) -> float:
    """Write the batches with sqlite3 (WAL, synchronous=NORMAL, as executus sets); events/s."""
    database = sqlite3.connect(path, isolation_level=None)
    database.execute("PRAGMA journal_mode=WAL")
    database.execute("PRAGMA synchronous=NORMAL")
    insert = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
    count = sum(len(batch.rows) for batch in batches)
    started = time.perf_counter()
    for batch in batches:
        database.execute("BEGIN IMMEDIATE")
        database.executemany(
            insert, [(*row, json.dumps(data)) for row, data in zip(batch.rows, batch.payloads, strict=True)]
        )
        if with_runs:
            database.execute(batch.run_sql, batch.run_params)
        database.execute("COMMIT")
    seconds = time.perf_counter() - started
    database.close()
    return count / seconds


def psycopg_append(dsn: str, batches: Sequence[RawBatch], *, with_runs: bool) -> float:
    """Write the batches with psycopg 3 ``executemany`` (server defaults: durable commits); events/s."""
    insert = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    count = sum(len(batch.rows) for batch in batches)
    with psycopg.connect(dsn) as connection:
        cursor = connection.cursor()
        started = time.perf_counter()
        for batch in batches:
            with connection.transaction():
                cursor.executemany(
                    insert,
                    [(*row, json.dumps(data)) for row, data in zip(batch.rows, batch.payloads, strict=True)],
                )
                if with_runs:
                    cursor.execute(batch.run_sql.encode(), batch.run_params)
        seconds = time.perf_counter() - started
    return count / seconds
