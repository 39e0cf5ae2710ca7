"""The SQL schema: events (the log), runs (a projection of it), blobs, the ledger, and the
coordination tables of workers (leases and the queue), in SQLAlchemy Core.

This module is the model that Alembic's ``check`` compares with the migrations under
``store/migrations``: change a table here and add a migration there, in the same commit.

Constraint and index names come from one naming convention, so a migration can drop or alter
them by a predictable name on every backend (SQLite's batch mode needs named constraints).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.types import TypeDecorator, UserDefinedType

__all__ = [
    "NAMING_CONVENTION",
    "POSTGRES_ONLY",
    "TransactionId",
    "UtcDateTime",
    "blobs",
    "events",
    "leases",
    "ledger",
    "metadata",
    "queue",
    "runs",
]

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_ID_LENGTH: Final = 200
HASH_LENGTH: Final = 64
"""A sha256 in hex, as runs.head_hash and blobs.sha256 keep it."""
PAYLOAD_COMMENT: Final = (
    "The event's canonical JSON without the envelope columns (run_id, seq, kind, schema_version, at)."
)


TX_COMMENT: Final = (
    "PostgreSQL: the id of the transaction that appended the row (pg_current_xact_id()); readers "
    "tailing the log take rows in (tx, position) order, only from transactions older than every "
    "one still running. Rows older than the column hold 0. NULL on SQLite (one writer at a time)."
)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL keeps the zone (``timestamptz``); SQLite has no datetime type and stores text, so
    values are converted to UTC and stored naive, in SQLAlchemy's fixed-width format: text
    order is then time order and ``since``/``until`` filters compare correctly. Reads always
    come back aware, in UTC, so a summary read from SQL equals one projected in memory.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: executus stores only timezone-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class TransactionId(UserDefinedType[str]):
    """PostgreSQL's ``xid8``: a 64-bit transaction id that never wraps around."""

    cache_ok = True

    def get_col_spec(self, **_: object) -> str:
        return "XID8"


# So that reflecting the schema (alembic check) knows the type rather than warning about it.
ischema_names.setdefault("xid8", TransactionId)

POSTGRES_ONLY: Final = "postgresql_only"
"""``info`` key of an index that exists on PostgreSQL only (the migrations make it there, and
``store/migrations/env.py`` leaves it out of the comparison elsewhere)."""

metadata: Final = MetaData(naming_convention=NAMING_CONVENTION)

events: Final = Table(
    "events",
    metadata,
    # SQLite: INTEGER PRIMARY KEY aliases the rowid (BIGINT would not); PostgreSQL: bigserial.
    Column(
        "position",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
        comment="Global commit order: a reader tailing by position sees every event once.",
    ),
    Column("run_id", String(RUN_ID_LENGTH), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    # Only the body: the envelope is in the columns above, and executus.storage.event_json_from_body
    # rebuilds the event's canonical JSON (what the hash covers) from the two. Text, not
    # JSON/JSONB: JSONB would not keep the text, and canonical text re-encodes to itself.
    Column("payload", Text, nullable=False, comment=PAYLOAD_COMMENT),
    # Raw sha256 (32 bytes, not 64 hex characters). The previous event's hash is not stored:
    # it is the hash of the row with the same run_id and seq - 1 (GENESIS_HASH for seq 1).
    Column("hash", LargeBinary, nullable=False),
    Column(
        "tx",
        BigInteger().with_variant(TransactionId(), "postgresql"),
        comment=TX_COMMENT,
    ),
    UniqueConstraint("run_id", "seq"),
)
# read_after's order on PostgreSQL: (tx, position), up to the oldest transaction still running.
Index(None, events.c.tx, events.c.position, info={POSTGRES_ONLY: True}).ddl_if(dialect="postgresql")

runs: Final = Table(
    "runs",
    metadata,
    Column("run_id", String(RUN_ID_LENGTH), primary_key=True),
    Column("agent", String(200), nullable=False),
    Column("model", String(200), nullable=False),
    Column("caller_id", String(200)),
    Column("parent_run_id", String(RUN_ID_LENGTH)),
    Column("status", String(16), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime()),
    Column("steps", Integer, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("end_cause", Text),
    Column("last_seq", Integer, nullable=False),
    Column("last_event_at", UtcDateTime(), nullable=False),
    Column("head_hash", String(HASH_LENGTH), nullable=False),
    comment="One row per run, updated in the same transaction as every append to its events.",
)
# `executus runs` lists newest first, optionally filtered by status, agent or caller.
Index(None, runs.c.started_at)
Index(None, runs.c.status, runs.c.started_at)
Index(None, runs.c.agent, runs.c.started_at)
Index(None, runs.c.caller_id, runs.c.started_at)

blobs: Final = Table(
    "blobs",
    metadata,
    Column("sha256", String(HASH_LENGTH), primary_key=True),
    Column("media_type", String(200), nullable=False),
    Column("data", LargeBinary, nullable=False),
)

LEDGER_COMMENT: Final = (
    "The run ledger: one append-only Merkle log (RFC 9162) of seals per database. A seal is the tip "
    "of a run's hash chain (last seq, head hash, status), appended in the transaction that wrote it."
)

ledger: Final = Table(
    "ledger",
    metadata,
    Column(
        "leaf_index",
        BigInteger,
        primary_key=True,
        autoincrement=False,
        comment="The seal's 0-based place in the Merkle log: 0, 1, 2... with no gaps.",
    ),
    Column("run_id", String(RUN_ID_LENGTH), nullable=False),
    Column("last_seq", Integer, nullable=False),
    Column("head_hash", String(HASH_LENGTH), nullable=False),
    Column("status", String(16), nullable=False),
    comment=LEDGER_COMMENT,
)
# verify and export --evidence look a run's seals up.
Index(None, ledger.c.run_id)

LEASES_COMMENT: Final = (
    "Who owns each run (a worker id), until when (the database's clock) and at which epoch; appends "
    "fenced by the epoch check it in their transaction. Coordination state, not part of the log."
)

leases: Final = Table(
    "leases",
    metadata,
    Column("run_id", String(RUN_ID_LENGTH), primary_key=True),
    Column("owner", String(200), comment="The worker holding the run; NULL for a queued run never claimed."),
    Column("epoch", Integer, nullable=False, comment="Raised by one at every acquire and claim."),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column(
        "finished",
        Boolean,
        nullable=False,
        comment="The run had finished when it was released: it is never claimed again.",
    ),
    Column("cancel_reason", Text, comment="A pending cancel request ('' without a reason)."),
    Column("cancel_requested_at", UtcDateTime()),
    comment=LEASES_COMMENT,
)
# claim: the unfinished runs whose lease ran out, oldest expiry first.
Index(None, leases.c.finished, leases.c.expires_at)

QUEUE_COMMENT: Final = (
    "Runs submitted and not started yet; a run's row goes in the transaction that appends its run_started."
)

queue: Final = Table(
    "queue",
    metadata,
    Column("run_id", String(RUN_ID_LENGTH), primary_key=True),
    Column("agent", String(200), nullable=False),
    Column("input", Text, nullable=False),
    Column("caller_id", String(200)),
    Column("submitted_at", UtcDateTime(), nullable=False),
    comment=QUEUE_COMMENT,
)
Index(None, queue.c.submitted_at)
