"""Workers: run leases, the work queue, and the transaction id of every events row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

- ``leases``: who owns each run, until when and at which epoch (fenced appends check it), plus
  pending cancel requests. Beside the log, not in it: the runs row stays a projection.
- ``queue``: runs submitted for any worker, until their ``run_started`` is appended.
- ``events.tx``: on PostgreSQL the id (``xid8``) of the transaction that appended the row, so
  that appends of different runs need no global lock and a reader tailing by position still
  misses nothing (it reads only transactions older than every one still running). Rows already
  there get 0: older than any transaction to come, in their position order. SQLite has one
  writer at a time and keeps the column NULL.

Self-contained on purpose, as the earlier revisions are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TX_COMMENT: Final = (
    "PostgreSQL: the id of the transaction that appended the row (pg_current_xact_id()); readers "
    "tailing the log take rows in (tx, position) order, only from transactions older than every "
    "one still running. Rows older than the column hold 0. NULL on SQLite (one writer at a time)."
)
_LEASES_COMMENT: Final = (
    "Who owns each run (a worker id), until when (the database's clock) and at which epoch; appends "
    "fenced by the epoch check it in their transaction. Coordination state, not part of the log."
)
_QUEUE_COMMENT: Final = (
    "Runs submitted and not started yet; a run's row goes in the transaction that appends its run_started."
)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "leases",
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column(
            "owner",
            sa.String(200),
            comment="The worker holding the run; NULL for a queued run never claimed.",
        ),
        sa.Column("epoch", sa.Integer(), nullable=False, comment="Raised by one at every acquire and claim."),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "finished",
            sa.Boolean(),
            nullable=False,
            comment="The run had finished when it was released: it is never claimed again.",
        ),
        sa.Column("cancel_reason", sa.Text(), comment="A pending cancel request ('' without a reason)."),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_leases")),
        comment=_LEASES_COMMENT,
    )
    op.create_index(op.f("ix_leases_finished_expires_at"), "leases", ["finished", "expires_at"])
    op.create_table(
        "queue",
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("caller_id", sa.String(200)),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_queue")),
        comment=_QUEUE_COMMENT,
    )
    op.create_index(op.f("ix_queue_submitted_at"), "queue", ["submitted_at"])
    if not postgres:
        op.add_column("events", sa.Column("tx", sa.BigInteger(), comment=_TX_COMMENT))
        return
    # A constant default fills the rows already there without rewriting the table; then it goes,
    # so that a row whose writer did not set tx stays NULL rather than pass for an old one.
    op.execute("ALTER TABLE events ADD COLUMN tx xid8 DEFAULT '0'")
    op.execute("ALTER TABLE events ALTER COLUMN tx DROP DEFAULT")
    op.execute(sa.text(f"COMMENT ON COLUMN events.tx IS '{_TX_COMMENT.replace(chr(39), chr(39) * 2)}'"))
    op.create_index(op.f("ix_events_tx_position"), "events", ["tx", "position"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(op.f("ix_events_tx_position"), table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("tx")
    op.drop_index(op.f("ix_queue_submitted_at"), table_name="queue")
    op.drop_table("queue")
    op.drop_index(op.f("ix_leases_finished_expires_at"), table_name="leases")
    op.drop_table("leases")
