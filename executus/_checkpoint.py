"""Checkpoints of the run ledger: C2SP ``tlog-checkpoint`` bodies in C2SP ``signed-note`` envelopes.

A checkpoint names the ledger (its *origin*), its size and its Merkle root::

    example.com/executus-ledger
    42
    qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=

    — example.com/executus-ledger Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5...

The body is the first three lines (plus optional extension lines); after a blank line, each
signature line is an em dash, the key's name, and base64 of the key's 4-byte id followed by
the signature over the body. Keys are written as the signed-note spec writes them
(``name+hash+keydata``; see :mod:`executus._notekey`). Pure: parsing and formatting only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "NoteSignature",
    "SignedNote",
    "key_id",
]

ED25519_ALGORITHM: Final = 1
"""The signed-note algorithm byte for Ed25519."""
_SIGNATURE_PREFIX: Final = "\u2014 "  # an em dash and a space
_DECIMAL: Final = re.compile(r"^(0|[1-9][0-9]*)$")


class CheckpointError(ValueError):
    """A checkpoint or signed note is malformed, or its signature does not verify."""


def key_id(name: str, algorithm: int, public_key: bytes) -> int:
    """The signed-note key id: the first 4 bytes of SHA-256(name || "\\n" || algorithm || key)."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([algorithm]) + public_key).digest()
    return int(struct.unpack(">I", digest[:4])[0])


def valid_key_name(name: str) -> bool:
    """Whether ``name`` can name a signed-note key: non-empty, no spaces or plus signs, printable."""
    return (
        bool(name)
        and all(not character.isspace() and character != "+" for character in name)
        and (name.isprintable())
    )


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a signed note."""

    name: str
    key_id: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class SignedNote:
    """A signed note: the text signed (ending in a newline) and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def format(self) -> str:
        """The note as a file holds it."""
        lines = [
            f"{_SIGNATURE_PREFIX}{signature.name} "
            + base64.b64encode(struct.pack(">I", signature.key_id) + signature.signature).decode()
            + "\n"
            for signature in self.signatures
        ]
        return self.text + "\n" + "".join(lines)

    @classmethod
    def parse(cls, note: str) -> SignedNote:
        """Read a signed note.

        Raises:
            CheckpointError: it is not one.
        """
        if not note.endswith("\n"):
            raise CheckpointError("a signed note must end with a newline")
        split = note.rfind("\n\n")
        if split < 0:
            raise CheckpointError("a signed note needs a blank line between its text and its signatures")
        text, block = note[: split + 1], note[split + 2 :]
        signatures: list[NoteSignature] = []
        for line in block.splitlines():
            if not line.startswith(_SIGNATURE_PREFIX):
                raise CheckpointError("a signature line must start with an em dash and a space")
            parts = line[len(_SIGNATURE_PREFIX) :].split(" ")
            if len(parts) != 2 or not valid_key_name(parts[0]):
                raise CheckpointError("a signature line is '— NAME BASE64'")
            try:
                raw = base64.b64decode(parts[1], validate=True)
            except (binascii.Error, ValueError):
                raise CheckpointError("a signature is not valid base64") from None
            if len(raw) < 5:
                raise CheckpointError("a signature is too short to hold a key id")
            signatures.append(NoteSignature(parts[0], int(struct.unpack(">I", raw[:4])[0]), raw[4:]))
        if not signatures:
            raise CheckpointError("the note has no signatures")
        return cls(text, tuple(signatures))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The body of a ledger checkpoint (C2SP tlog-checkpoint).

    Attributes:
        origin: which log: the ledger's name, which is also its signing key's name.
        size: how many seals the ledger held.
        root_hash: the Merkle root of those seals, 32 bytes.
        extensions: further lines, carried but not interpreted.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The body as it is signed."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode(), *self.extensions]
        return "".join(f"{line}\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Read a checkpoint body.

        Raises:
            CheckpointError: it is not one.
        """
        if not text.endswith("\n"):
            raise CheckpointError("a checkpoint must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("a checkpoint needs an origin, a tree size and a root hash")
        origin, size, root, *extensions = lines
        if not origin or not origin.isprintable():
            raise CheckpointError("a checkpoint's origin line must be non-empty printable text")
        if not _DECIMAL.match(size):
            raise CheckpointError(f"a checkpoint's tree size must be a decimal number, not {size!r}")
        try:
            root_hash = base64.b64decode(root, validate=True)
        except (binascii.Error, ValueError):
            raise CheckpointError("a checkpoint's root hash is not valid base64") from None
        if len(root_hash) != 32:
            raise CheckpointError("a checkpoint's root hash must be 32 bytes")
        if any(not line for line in extensions):
            raise CheckpointError("a checkpoint's extension lines must not be empty")
        return cls(origin, int(size), root_hash, tuple(extensions))
