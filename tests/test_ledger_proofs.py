"""Merkle proofs (RFC 9162), signed checkpoints (C2SP) and evidence bundles refuse forged inputs."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Callable

import pytest

from executus._checkpoint import Checkpoint, CheckpointError, SignedNote
from executus._merkle import (
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from executus._notekey import NoteSigner, NoteVerifier, generate_key, open_checkpoint, sign_checkpoint

# RFC 6962's reference test data (certificate-transparency's merkle tree tests): 8 leaves and
# the root of every prefix.
LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def refused(check: Callable[[], None]) -> bool:
    try:
        check()
    except ProofError:
        return True
    return False


def tree(size: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + index.to_bytes(4, "big")) for index in range(size)]


def test_roots_match_rfc_6962_reference_data() -> None:
    hashes = [leaf_hash(data) for data in LEAVES]
    assert [root_hash(hashes[: size + 1]).hex() for size in range(8)] == ROOTS
    assert root_hash([]) == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("size", range(1, 34))
def test_every_inclusion_and_consistency_proof_verifies(size: int) -> None:
    leaves = tree(size)
    root = root_hash(leaves)
    for index in range(size):
        verify_inclusion(leaves[index], index, size, inclusion_proof(index, leaves), root)
    for old in range(size + 1):
        verify_consistency(old, size, root_hash(leaves[:old]), root, consistency_proof(old, leaves))


def test_a_wrong_inclusion_proof_is_rejected() -> None:
    leaves = tree(13)
    root, proof = root_hash(leaves), inclusion_proof(5, leaves)
    forgeries = {
        "another leaf": (leaves[6], 5, 13, proof),
        "another index": (leaves[5], 4, 13, proof),
        "a size of another depth": (leaves[5], 5, 4, proof),
        "an edited node": (leaves[5], 5, 13, [proof[0], bytes(32), *proof[2:]]),
        "a node short": (leaves[5], 5, 13, proof[:-1]),
        "a node too many": (leaves[5], 5, 13, [*proof, bytes(32)]),
        "an index past the tree": (leaves[5], 13, 13, proof),
    }
    accepted = [
        name
        for name, (leaf, index, size, path) in forgeries.items()
        if not refused(lambda: verify_inclusion(leaf, index, size, path, root))  # noqa: B023
    ]
    assert accepted == []
    with pytest.raises(ProofError):  # the right proof against another tree's root
        verify_inclusion(leaves[5], 5, 13, proof, root_hash(tree(13, salt=b"x")))


def test_a_consistency_proof_for_another_tree_is_rejected() -> None:
    ours, theirs = tree(20), tree(20, salt=b"x")
    old_root = root_hash(ours[:7])
    with pytest.raises(ProofError):  # their proof, our roots
        verify_consistency(7, 20, old_root, root_hash(ours), consistency_proof(7, theirs))
    rewritten = [*theirs[:7], *ours[7:]]
    with pytest.raises(ProofError):  # our proof, but a tree whose old part was rewritten
        verify_consistency(7, 20, old_root, root_hash(rewritten), consistency_proof(7, rewritten))
    with pytest.raises(ProofError):  # equal sizes, different roots
        verify_consistency(20, 20, root_hash(ours), root_hash(theirs), [])
    with pytest.raises(ProofError):  # a shrinking tree
        verify_consistency(8, 7, root_hash(ours[:8]), root_hash(ours[:7]), [])


def test_keys_round_trip_in_the_signed_note_formats() -> None:
    signer = generate_key("example.com/ledger")
    assert NoteSigner.parse(signer.format()) == signer
    assert NoteVerifier.parse(signer.verifier().format()) == signer.verifier()
    assert signer.format().startswith("PRIVATE+KEY+example.com/ledger+")
    assert "seed" not in repr(signer)
    assert base64.b64encode(signer.seed).decode() not in repr(signer)
    verifier = signer.verifier().format()
    with pytest.raises(CheckpointError, match="hash does not match"):
        NoteVerifier.parse(verifier.replace("example.com", "example.org"))


def test_a_checkpoint_is_a_c2sp_signed_note() -> None:
    signer = generate_key("example.com/ledger")
    note = sign_checkpoint(Checkpoint("example.com/ledger", 7, bytes(range(32))), signer)
    lines = note.split("\n")
    assert lines[:4] == ["example.com/ledger", "7", base64.b64encode(bytes(range(32))).decode(), ""]
    assert lines[4].startswith("\u2014 example.com/ledger ")
    signature = base64.b64decode(lines[4].split(" ")[2])
    assert int.from_bytes(signature[:4], "big") == signer.key_id
    assert len(signature) == 4 + 64
    assert open_checkpoint(note, signer.verifier()) == Checkpoint("example.com/ledger", 7, bytes(range(32)))


def test_a_checkpoint_signed_by_another_key_or_edited_is_rejected() -> None:
    ours, impostor = generate_key("example.com/ledger"), generate_key("example.com/ledger")
    checkpoint = Checkpoint("example.com/ledger", 7, bytes(32))
    with pytest.raises(CheckpointError, match=r"not signed by example\.com/ledger"):
        open_checkpoint(sign_checkpoint(checkpoint, impostor), ours.verifier())
    note = sign_checkpoint(checkpoint, ours)
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint(note.replace("\n7\n", "\n8\n", 1), ours.verifier())
    # A forger who copies our key id into their own signature line.
    forged = SignedNote.parse(sign_checkpoint(checkpoint, impostor))
    relabelled = SignedNote(
        forged.text,
        (forged.signatures[0].__class__("example.com/ledger", ours.key_id, forged.signatures[0].signature),),
    )
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint(relabelled.format(), ours.verifier())


@pytest.mark.parametrize(
    "note",
    ["", "no newline", "a\n1\nAAAA\n\n", "origin\n01\n" + base64.b64encode(bytes(32)).decode() + "\n"],
)
def test_malformed_notes_are_one_clear_error(note: str) -> None:
    with pytest.raises(CheckpointError):
        open_checkpoint(note, generate_key("origin").verifier())


def test_checkpoint_bodies_refuse_what_c2sp_does_not_allow() -> None:
    root = base64.b64encode(bytes(32)).decode()
    for body in (f"o\n007\n{root}\n", f"o\n7\n{root[:-4]}\n", f"o\n7\n{root}\n\n", f"\n7\n{root}\n"):
        with pytest.raises(CheckpointError):
            Checkpoint.parse(body)
    assert Checkpoint.parse(f"o\n7\n{root}\next\n").extensions == ("ext",)
    assert json.dumps(Checkpoint.parse(f"o\n0\n{root}\n").size) == "0"


def test_without_the_audit_extra_signing_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from executus import ConfigurationError

    signer = generate_key("example.com/ledger")
    note = sign_checkpoint(Checkpoint("example.com/ledger", 1, bytes(32)), signer)
    for module in (
        "cryptography",
        "cryptography.exceptions",
        "cryptography.hazmat.primitives.asymmetric.ed25519",
    ):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigurationError, match=r"pip install 'executus\[audit\]'"):
        generate_key("example.com/ledger")
    with pytest.raises(ConfigurationError, match=r"pip install 'executus\[audit\]'"):
        open_checkpoint(note, signer.verifier())
