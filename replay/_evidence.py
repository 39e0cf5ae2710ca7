"""Evidence: what a bundle's cassette header carries to prove its run was sealed into a signed ledger.

``executus export RUN --evidence`` writes the run's latest ledger seal, the seal's RFC 9162
inclusion proof and a signed checkpoint of the ledger into the cassette's header
(:class:`Evidence`). :func:`replay._bundle.verify_bundle` then checks the cassette with no database: the event
lines hash to the sealed head, the seal is a leaf of the tree the checkpoint names, and the
checkpoint is signed by the key the auditor trusts. The cassette's own ``head_hash`` is not
trusted: anyone who edits the events can recompute it; the seal is bound to the signature.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from executus.storage import Seal

__all__ = ["Evidence"]


class Evidence(BaseModel):
    """The proof, in a cassette's header, that its run was sealed into a signed ledger.

    Sequences are lists, not tuples: cassette headers are validated strictly from parsed JSON,
    whose arrays are lists.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    leaf_index: int
    """The seal's entry in the ledger (its Merkle leaf index)."""
    last_seq: int
    """The last seq the seal covers (the run's last event when it was sealed)."""
    head_hash: str
    """The run's chain hash at ``last_seq``, hex."""
    status: str
    """The run's status when it was sealed."""
    inclusion: list[str]
    """The seal's inclusion proof in the checkpoint's tree, base64 hashes, leaf to root."""
    checkpoint: str
    """The ledger's signed checkpoint (C2SP signed note) when the run was exported."""

    def seal(self, run_id: str) -> Seal:
        """The ledger entry this evidence is about."""
        return Seal(self.leaf_index, run_id, self.last_seq, self.head_hash, self.status)
