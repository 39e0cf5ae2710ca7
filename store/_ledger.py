"""The run ledger in SQL: sealing runs inside their appends, reading seals, proving the log.

The ledger is one append-only list of :class:`executus.Seal` per database (table ``ledger``),
hashed as an RFC 9162 Merkle tree (:mod:`executus._merkle`). A seal goes in by
:func:`seal_if_due`, called from the append's transaction, so the events a seal covers and the
seal commit together or not at all. Nothing here trusts what it reads: leaf hashes are
recomputed from the seal rows every time a root or a proof is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, select

from executus._merkle import consistency_proof, inclusion_proof, leaf_hash, root_hash
from executus.storage import RunSummary, Seal, SealPolicy, seal_due
from store._hot import AppendTransaction
from store._schema import ledger

__all__ = ["LedgerView", "read_ledger", "read_seals", "seal_if_due"]


def seal_if_due(
    transaction: AppendTransaction, before: RunSummary | None, after: RunSummary, policy: SealPolicy
) -> None:
    """Seal the run into the ledger in the append's own transaction, if the append finished it
    or passed one of the policy's marks."""
    if seal_due(before, after, policy):
        transaction.insert_seal(after)


def _seal(row: Row[Any]) -> Seal:
    return Seal(int(row.leaf_index), row.run_id, int(row.last_seq), row.head_hash, row.status)


def read_seals(connection: Connection, run_ids: Sequence[str] | None = None) -> list[Seal]:
    """Seals in ledger order, of ``run_ids`` only when given."""
    statement = select(ledger).order_by(ledger.c.leaf_index)
    if run_ids is not None:
        statement = statement.where(ledger.c.run_id.in_(run_ids))
    return [_seal(row) for row in connection.execute(statement)]


@dataclass(frozen=True, slots=True)
class LedgerView:
    """The ledger as read at one moment: its seals and their Merkle leaf hashes.

    Attributes:
        seals: every seal, by leaf index.
        leaves: each seal's leaf hash, recomputed from the row.
        gaps: leaf indexes missing from 0..n-1 (a deleted row): the tree is then the rows' as
            they stand, and cannot match a checkpoint taken before the deletion.
    """

    seals: tuple[Seal, ...]
    leaves: tuple[bytes, ...]
    gaps: tuple[int, ...]

    @property
    def size(self) -> int:
        """How many seals the tree has."""
        return len(self.leaves)

    def root(self, size: int | None = None) -> bytes:
        """The Merkle root of the first ``size`` seals (all by default)."""
        return root_hash(self.leaves if size is None else self.leaves[:size])

    def inclusion(self, index: int, size: int | None = None) -> list[bytes]:
        """The inclusion proof of leaf ``index`` in the tree of the first ``size`` seals."""
        return inclusion_proof(index, self.leaves if size is None else self.leaves[:size])

    def consistency(self, old_size: int) -> list[bytes]:
        """The consistency proof from the tree of the first ``old_size`` seals to the whole."""
        return consistency_proof(old_size, self.leaves)

    def latest_seal(self, run_id: str) -> Seal | None:
        """The run's most recent seal, or None if it has none."""
        return next((seal for seal in reversed(self.seals) if seal.run_id == run_id), None)


def read_ledger(connection: Connection) -> LedgerView:
    """The whole ledger, with leaf hashes recomputed from its rows."""
    seals = read_seals(connection)
    present = {seal.index for seal in seals}
    top = max(present, default=-1)
    gaps = tuple(index for index in range(top + 1) if index not in present)
    leaves = tuple(leaf_hash(seal.leaf_data()) for seal in seals)
    return LedgerView(tuple(seals), leaves, gaps)
