"""Events store their body: the envelope only in columns, no prev_hash, raw 32-byte hashes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

The payload loses the keys its columns already hold (``run_id``, ``seq``, ``kind``,
``schema_version``, ``at``), ``prev_hash`` goes (it is always the previous seq's ``hash``) and
``hash`` becomes the 32 bytes of the sha256 instead of 64 hex characters. What a hash covers
does not change: the event's full canonical JSON, which executus rebuilds from the body and the
columns. So the upgrade checks, for every row, that this rebuild gives back the stored payload
exactly and that the row's hash chain holds, and refuses (changing nothing) if either fails:
converting such a row would silently change what its hash covers. The downgrade checks the
chain over the rebuilt texts too.

Rows are converted in chunks, in (run_id, seq) order, so a large database is never held in
memory. SQLite runs the table changes in batch mode (a copy of the table); the same script runs
on PostgreSQL as ALTER TABLE.

Self-contained on purpose, as 0001 is: the canonical JSON, the time's text and the chain hash are
written out here rather than imported, so this conversion stays what it was whatever executus
changes later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from alembic import op

from executus import StoreError

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ENVELOPE: Final = ("run_id", "seq", "kind", "schema_version", "at")
_GENESIS: Final = "0" * 64
_CHUNK: Final = 1000
_CANONICAL: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_OLD_COMMENT: Final = "The event's canonical JSON, verbatim."
_NEW_COMMENT: Final = (
    "The event's canonical JSON without the envelope columns (run_id, seq, kind, schema_version, at)."
)


def _events(*columns: sa.ColumnClause[Any]) -> sa.TableClause:
    """The events table with the envelope columns, the payload and ``columns``."""
    return sa.table(
        "events",
        sa.column("position", sa.BigInteger()),
        sa.column("run_id", sa.String(200)),
        sa.column("seq", sa.Integer()),
        sa.column("kind", sa.String(64)),
        sa.column("schema_version", sa.Integer()),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("payload", sa.Text()),
        *columns,
    )


# 0001's columns, and 0002's hash under a temporary name while both exist.
_V1: Final = _events(
    sa.column("prev_hash", sa.String(64)),
    sa.column("hash", sa.String(64)),
    sa.column("raw_hash", sa.LargeBinary()),
)
# 0002's columns, and 0001's under temporary names while both exist.
_V2: Final = _events(
    sa.column("hash", sa.LargeBinary()),
    sa.column("prev_hash", sa.String(64)),
    sa.column("hex_hash", sa.String(64)),
)


class _Refused(StoreError):
    """A row this migration cannot convert without changing what its hash covers."""

    def __init__(self, direction: str, row: Any, problem: str) -> None:
        revision = "to schema revision 0002" if direction == "upgrade" else "from schema revision 0002"
        super().__init__(
            f"cannot {direction} the database {revision}: run {row.run_id} seq {row.seq}: {problem}; "
            "nothing was changed"
        )


def _at_text(at: datetime) -> str:
    """An event's ``at`` as its JSON has it: UTC, ISO 8601 with a Z (pydantic's text).

    SQLite gives back the naive UTC time executus stored; PostgreSQL an aware one.
    """
    utc = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat() + "Z"


def _full_text(body: dict[str, Any], row: Any) -> str:
    """The event's canonical JSON: its body with the envelope's column values."""
    envelope = {
        "run_id": row.run_id,
        "seq": row.seq,
        "kind": row.kind,
        "schema_version": row.schema_version,
        "at": _at_text(row.at),
    }
    return _CANONICAL.encode({**body, **envelope})


def _object(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _chain_hash(prev_hash: str, text: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{text}".encode()).hexdigest()


def _rows(connection: sa.Connection, table: sa.TableClause) -> Iterator[Any]:
    """Every events row in (run_id, seq) order, read ``_CHUNK`` rows at a time by key.

    Each chunk is read whole before any of its rows is updated; the key (the unique index's
    columns) never changes, so the next chunk starts where this one ended.
    """
    key = sa.tuple_(table.c.run_id, table.c.seq)
    statement = sa.select(table).order_by(table.c.run_id, table.c.seq).limit(_CHUNK)
    chunk = connection.execute(statement).all()
    while chunk:
        yield from chunk
        last = chunk[-1]
        chunk = connection.execute(statement.where(key > sa.tuple_(last.run_id, last.seq))).all()


def _convert(
    direction: str,
    table: sa.TableClause,
    writes: Sequence[str],
    convert: Callable[[Any, str], tuple[dict[str, Any], str]],
) -> None:
    """Set ``writes`` in every row to ``convert(row, previous event's hash)``'s values.

    ``convert`` returns the values and the row's hash in hex; it raises :class:`_Refused` for a
    row it cannot convert, and so does a run whose seqs do not go 1, 2, 3...
    """
    connection = op.get_bind()
    update = (
        sa.update(table)
        .where(table.c.position == sa.bindparam("key_position"))
        .values({name: sa.bindparam(name) for name in writes})
    )
    pending: list[dict[str, Any]] = []
    run_id, seq, previous = None, 0, _GENESIS
    for row in _rows(connection, table):
        if row.run_id != run_id:
            run_id, seq, previous = row.run_id, 0, _GENESIS
        if row.seq != seq + 1:
            raise _Refused(direction, row, f"seq {seq + 1} of the run is missing, so its chain is broken")
        values, previous = convert(row, previous)
        seq = row.seq
        pending.append({"key_position": row.position, **values})
        if len(pending) >= _CHUNK:
            connection.execute(update, pending)
            pending = []
    if pending:
        connection.execute(update, pending)


def _to_body(row: Any, prev_hash: str) -> tuple[dict[str, Any], str]:
    """A 0001 row's 0002 values, once nothing its hash covers can change."""
    if row.prev_hash != prev_hash:
        raise _Refused("upgrade", row, "its prev_hash is not the previous event's hash (the chain is broken)")
    if _chain_hash(row.prev_hash, row.payload) != row.hash:
        raise _Refused("upgrade", row, "its hash does not match its payload (the row was changed)")
    data = _object(row.payload)
    if data is None:
        raise _Refused("upgrade", row, "its payload is not a JSON object")
    body = {key: value for key, value in data.items() if key not in _ENVELOPE}
    if _full_text(body, row) != row.payload:
        raise _Refused(
            "upgrade",
            row,
            "its payload cannot be rebuilt exactly from its columns and body (its run_id, seq, kind, "
            "schema_version or at differ from the columns', or it is not canonical JSON)",
        )
    return {"payload": _CANONICAL.encode(body), "raw_hash": bytes.fromhex(row.hash)}, row.hash


def _to_full(row: Any, prev_hash: str) -> tuple[dict[str, Any], str]:
    """A 0002 row's 0001 values, once the rebuilt text is known to be what its hash covers."""
    body = _object(row.payload)
    if body is None:
        raise _Refused("downgrade", row, "its payload is not a JSON object")
    text = _full_text(body, row)
    digest = bytes(row.hash).hex()
    if _chain_hash(prev_hash, text) != digest:
        raise _Refused("downgrade", row, "its hash does not match its rebuilt text (the row was changed)")
    return {"payload": text, "prev_hash": prev_hash, "hex_hash": digest}, digest


def _refuse_offline(direction: str) -> None:
    if op.get_context().as_sql:
        raise StoreError(
            f"schema revision 0002 converts every event row in Python and cannot be rendered as SQL: "
            f"{direction} the database itself (executus db upgrade, or alembic without --sql)"
        )


def upgrade() -> None:
    _refuse_offline("upgrade")
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("raw_hash", sa.LargeBinary(), nullable=True))
    _convert("upgrade", _V1, ("payload", "raw_hash"), _to_body)
    with op.batch_alter_table("events") as batch:
        batch.drop_column("prev_hash")
        batch.drop_column("hash")
        batch.alter_column("raw_hash", new_column_name="hash", existing_type=sa.LargeBinary(), nullable=False)
        batch.alter_column(
            "payload",
            existing_type=sa.Text(),
            existing_nullable=False,
            comment=_NEW_COMMENT,
            existing_comment=_OLD_COMMENT,
        )


def downgrade() -> None:
    _refuse_offline("downgrade")
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hex_hash", sa.String(64), nullable=True))
    _convert("downgrade", _V2, ("payload", "prev_hash", "hex_hash"), _to_full)
    with op.batch_alter_table("events") as batch:
        batch.drop_column("hash")
        batch.alter_column("prev_hash", existing_type=sa.String(64), nullable=False)
        batch.alter_column("hex_hash", new_column_name="hash", existing_type=sa.String(64), nullable=False)
        batch.alter_column(
            "payload",
            existing_type=sa.Text(),
            existing_nullable=False,
            comment=_OLD_COMMENT,
            existing_comment=_NEW_COMMENT,
        )
