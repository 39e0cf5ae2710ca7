"""The SQL schema: events (the log), runs (a projection of it), blobs and the ledger, in SQLAlchemy Core.

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
from sqlalchemy.types import TypeDecorator

__all__ = ["NAMING_CONVENTION", "UtcDateTime", "blobs", "events", "ledger", "metadata", "runs"]

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
    UniqueConstraint("run_id", "seq"),
)

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
