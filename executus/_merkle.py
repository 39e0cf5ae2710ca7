"""Merkle tree hashing and proofs exactly as RFC 9162 (Certificate Transparency 2.0) defines them.

The run ledger is an append-only list of seals; its Merkle tree is RFC 6962/9162's: a leaf is
``SHA-256(0x00 || data)``, an interior node ``SHA-256(0x01 || left || right)``, the tree of ``n``
leaves splits at the largest power of two below ``n``, and the empty tree's hash is
``SHA-256("")``. Proof generation follows §2.1.3.1 (inclusion, "PATH") and §2.1.4.1
(consistency, "PROOF"/"SUBPROOF"); verification follows §2.1.3.2 and §2.1.4.2 step by step, so
any RFC 9162 verifier accepts these proofs and these verifiers accept any RFC 9162 log's.

Pure: the standard library only. Hashes are 32 raw bytes throughout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

__all__ = [
    "EMPTY_ROOT",
    "ProofError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
"""The hash of a tree with no leaves."""


class ProofError(ValueError):
    """A proof is malformed or does not prove what it claims; the message says which step failed."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one entry."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two strictly smaller than ``size`` (``size`` > 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def root_hash(leaves: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash (MTH) of a list of leaf hashes.

    Computed bottom-up with a stack of perfect subtrees, which gives the same tree as the
    RFC's recursive split at the largest power of two: O(n) hashes, O(log n) memory.
    """
    if not leaves:
        return EMPTY_ROOT
    stack: list[tuple[int, bytes]] = []  # (subtree size, hash), sizes strictly decreasing
    for leaf in leaves:
        size, digest = 1, leaf
        while stack and stack[-1][0] == size:
            left_size, left = stack.pop()
            size, digest = left_size + size, node_hash(left, digest)
        stack.append((size, digest))
    digest = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        digest = node_hash(left, digest)
    return digest


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 §2.1.3.1: the audit path of leaf ``index`` in ``leaves``.

    Raises:
        ProofError: ``index`` is not a leaf of the tree.
    """
    if not 0 <= index < len(leaves):
        raise ProofError(f"leaf {index} is not in a tree of {len(leaves)} leaves")
    return _path(index, leaves)


def _path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) <= 1:
        return []
    split = _split(len(leaves))
    if index < split:
        return [*_path(index, leaves[:split]), root_hash(leaves[split:])]
    return [*_path(index - split, leaves[split:]), root_hash(leaves[:split])]


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1: that the first ``old_size`` leaves are a prefix.

    Empty when ``old_size`` is 0 or the whole tree (there is nothing to prove).

    Raises:
        ProofError: ``old_size`` is larger than the tree.
    """
    if not 0 <= old_size <= len(leaves):
        raise ProofError(f"a tree of {len(leaves)} leaves has no prefix of {old_size}")
    if old_size in (0, len(leaves)):
        return []
    return _subproof(old_size, leaves, complete=True)


def _subproof(size: int, leaves: Sequence[bytes], *, complete: bool) -> list[bytes]:
    if size == len(leaves):
        return [] if complete else [root_hash(leaves)]
    split = _split(len(leaves))
    if size <= split:
        return [*_subproof(size, leaves[:split], complete=complete), root_hash(leaves[split:])]
    return [*_subproof(size - split, leaves[split:], complete=False), root_hash(leaves[:split])]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf`` is entry ``index`` of the tree of ``size`` leaves whose hash is ``root``.

    RFC 9162 §2.1.3.2, step by step.

    Raises:
        ProofError: it is not (a wrong path, index, size, leaf or root).
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    _check_hashes(proof)
    fn, sn, digest = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            digest = node_hash(sibling, digest)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            digest = node_hash(digest, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if digest != root:
        raise ProofError("the inclusion proof does not lead to the tree's root hash")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``old_size`` leaves (``old_root``) is a prefix of the tree of
    ``new_size`` leaves (``new_root``): nothing in it changed, moved or went missing.

    RFC 9162 §2.1.4.2, step by step; the sizes the RFC leaves out (0 and equal) need an empty
    proof, and equal sizes need equal roots.

    Raises:
        ProofError: it is not.
    """
    if not 0 <= old_size <= new_size:
        raise ProofError(f"a tree of {new_size} leaves cannot extend one of {old_size}")
    _check_hashes(proof)
    if old_size == 0 or old_size == new_size:
        if proof:
            raise ProofError(f"a consistency proof from size {old_size} to {new_size} must be empty")
        if old_size == new_size and old_root != new_root:
            raise ProofError(f"two trees of {new_size} leaves have different root hashes")
        return
    path = list(proof)
    if not path:
        raise ProofError("the consistency proof is empty")
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    old_digest = new_digest = path[0]
    for node in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            old_digest = node_hash(node, old_digest)
            new_digest = node_hash(node, new_digest)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            new_digest = node_hash(new_digest, node)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the consistency proof is shorter than the tree is deep")
    if old_digest != old_root:
        raise ProofError(f"the consistency proof does not lead to the old root hash (size {old_size})")
    if new_digest != new_root:
        raise ProofError(f"the consistency proof does not lead to the new root hash (size {new_size})")


def _check_hashes(proof: Sequence[bytes]) -> None:
    if any(len(node) != 32 for node in proof):
        raise ProofError("a proof's hashes must each be 32 bytes")
