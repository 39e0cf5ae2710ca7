"""The run ledger: an append-only Merkle log of run seals.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

A seal is (run id, last seq, head hash, status): the tip of a run's hash chain. From this
revision on, the append that finishes a run (and, for long runs, every so many events or
seconds) adds its seal in the same transaction. The upgrade seals every run that has already
finished, oldest finish first, as the runs rows have it then: the ledger vouches for history
from the moment it exists, not before (``executus verify`` checks the chains themselves).

Self-contained on purpose, as 0001 and 0002 are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COMMENT: Final = (
    "The run ledger: one append-only Merkle log (RFC 9162) of seals per database. A seal is the tip "
    "of a run's hash chain (last seq, head hash, status), appended in the transaction that wrote it."
)

_runs: Final = sa.table(
    "runs",
    sa.column("run_id", sa.String(200)),
    sa.column("status", sa.String(16)),
    sa.column("finished_at", sa.DateTime(timezone=True)),
    sa.column("last_seq", sa.Integer()),
    sa.column("head_hash", sa.String(64)),
)
_ledger: Final = sa.table(
    "ledger",
    sa.column("leaf_index", sa.BigInteger()),
    sa.column("run_id", sa.String(200)),
    sa.column("last_seq", sa.Integer()),
    sa.column("head_hash", sa.String(64)),
    sa.column("status", sa.String(16)),
)


def upgrade() -> None:
    op.create_table(
        "ledger",
        sa.Column(
            "leaf_index",
            sa.BigInteger(),
            autoincrement=False,
            nullable=False,
            comment="The seal's 0-based place in the Merkle log: 0, 1, 2... with no gaps.",
        ),
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name=op.f("pk_ledger")),
        comment=_COMMENT,
    )
    op.create_index(op.f("ix_ledger_run_id"), "ledger", ["run_id"])
    order = sa.func.row_number().over(order_by=(_runs.c.finished_at, _runs.c.run_id)) - 1
    op.execute(
        _ledger.insert().from_select(
            ["leaf_index", "run_id", "last_seq", "head_hash", "status"],
            sa.select(order, _runs.c.run_id, _runs.c.last_seq, _runs.c.head_hash, _runs.c.status).where(
                _runs.c.status != "running"
            ),
        )
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_ledger_run_id"), table_name="ledger")
    op.drop_table("ledger")
