"""Ed25519 keys for signing ledger checkpoints, in the C2SP signed-note key formats.

- A *signer key* (private; keep it in a file or a secret manager, never in the database)::

      PRIVATE+KEY+<name>+<key id, 8 hex digits>+<base64 of 0x01 || 32-byte Ed25519 seed>

- A *verifier key* (public; give it to auditors)::

      <name>+<key id, 8 hex digits>+<base64 of 0x01 || 32-byte Ed25519 public key>

These are the formats of Go's ``golang.org/x/mod/sumdb/note``, so its tools read them too.
Make a pair with ``executus checkpoint --new-key NAME`` or :func:`generate_key`.

Needs the ``cryptography`` package (``pip install 'executus[audit]'``); it is imported only when
a key is used, so the rest of executus runs without it.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from executus._checkpoint import (
    ED25519_ALGORITHM,
    Checkpoint,
    CheckpointError,
    NoteSignature,
    SignedNote,
    key_id,
    valid_key_name,
)
from executus._errors import ConfigurationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["NoteSigner", "NoteVerifier", "generate_key", "open_checkpoint", "sign_checkpoint"]

_PRIVATE_PREFIX: Final = "PRIVATE+KEY+"


def _ed25519() -> type[Ed25519PrivateKey]:
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        raise ConfigurationError(
            "signing and checking checkpoints needs the cryptography package: pip install 'executus[audit]'"
        ) from None
    return Ed25519PrivateKey


def _key_parts(text: str, what: str) -> tuple[str, int, bytes]:
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or not valid_key_name(parts[0]) or len(parts[1]) != 8:
        raise CheckpointError(f"not a {what} (NAME+HASH+KEY)")
    try:
        identifier = int(parts[1], 16)
        data = base64.b64decode(parts[2], validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError(f"not a {what}: its hash or key is not hex and base64") from None
    if len(data) != 33 or data[0] != ED25519_ALGORITHM:
        raise CheckpointError(f"not a {what}: only Ed25519 keys (algorithm 1, 32 bytes) are supported")
    return parts[0], identifier, data[1:]


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A public key that checks signatures of one name."""

    name: str
    key_id: int
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> NoteVerifier:
        """Read a verifier key.

        Raises:
            CheckpointError: it is malformed, or its id does not match its name and key.
        """
        name, identifier, public_key = _key_parts(text, "verifier key")
        if key_id(name, ED25519_ALGORITHM, public_key) != identifier:
            raise CheckpointError("not a verifier key: its hash does not match its name and key")
        return cls(name, identifier, public_key)

    def format(self) -> str:
        """The verifier key's text."""
        key = base64.b64encode(bytes([ED25519_ALGORITHM]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{key}"

    def verifies(self, text: str, signature: bytes) -> bool:
        """Whether ``signature`` is this key's over ``text``."""
        _ed25519()  # ConfigurationError, one clear line, when cryptography is missing
        from cryptography.exceptions import InvalidSignature

        public: Ed25519PublicKey = _public_key_class().from_public_bytes(self.public_key)
        try:
            public.verify(signature, text.encode())
        except InvalidSignature:
            return False
        return True


def _public_key_class() -> type[Ed25519PublicKey]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class NoteSigner:
    """A private key that signs under one name."""

    name: str
    key_id: int
    seed: bytes

    @classmethod
    def parse(cls, text: str) -> NoteSigner:
        """Read a signer key (``PRIVATE+KEY+...``).

        Raises:
            CheckpointError: it is malformed, or its id does not match its name and key.
        """
        text = text.strip()
        if not text.startswith(_PRIVATE_PREFIX):
            raise CheckpointError("not a signer key (it starts PRIVATE+KEY+)")
        name, identifier, seed = _key_parts(text[len(_PRIVATE_PREFIX) :], "signer key")
        signer = cls(name, identifier, seed)
        if signer.verifier().key_id != identifier:
            raise CheckpointError("not a signer key: its hash does not match its name and key")
        return signer

    def format(self) -> str:
        """The signer key's text (secret)."""
        key = base64.b64encode(bytes([ED25519_ALGORITHM]) + self.seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id:08x}+{key}"

    def _private(self) -> Ed25519PrivateKey:
        return _ed25519().from_private_bytes(self.seed)

    def verifier(self) -> NoteVerifier:
        """The matching public key."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        public = self._private().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return NoteVerifier(self.name, key_id(self.name, ED25519_ALGORITHM, public), public)

    def sign(self, text: str) -> NoteSignature:
        """Sign ``text`` (a note's text, ending in a newline)."""
        return NoteSignature(self.name, self.key_id, self._private().sign(text.encode()))

    def __repr__(self) -> str:
        return f"NoteSigner(name={self.name!r}, key_id={self.key_id:08x})"  # never the seed


def generate_key(name: str) -> NoteSigner:
    """A new random Ed25519 signer key named ``name``: the ledger's origin (``example.com/ledger``).

    Raises:
        CheckpointError: the name has spaces or plus signs, or is empty.
    """
    if not valid_key_name(name):
        raise CheckpointError(f"a key name must be printable, without spaces or '+': {name!r}")
    seed = secrets.token_bytes(32)
    draft = NoteSigner(name, 0, seed)
    return NoteSigner(name, draft.verifier().key_id, seed)


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    """The checkpoint as a signed note, signed by ``signer`` (whose name must be its origin)."""
    text = checkpoint.text()
    return SignedNote(text, (signer.sign(text),)).format()


def open_checkpoint(note: str, verifier: NoteVerifier) -> Checkpoint:
    """The checkpoint in a signed note, once a signature by ``verifier`` is found valid.

    Raises:
        CheckpointError: the note is malformed, has no signature by this key (name and id),
            or that signature does not verify.
    """
    signed = SignedNote.parse(note)
    ours = [s for s in signed.signatures if s.name == verifier.name and s.key_id == verifier.key_id]
    if not ours:
        names = ", ".join(f"{s.name} ({s.key_id:08x})" for s in signed.signatures)
        raise CheckpointError(
            f"the checkpoint is not signed by {verifier.name} ({verifier.key_id:08x}); "
            f"it is signed by {names}"
        )
    if not any(verifier.verifies(signed.text, s.signature) for s in ours):
        raise CheckpointError(f"the checkpoint's signature by {verifier.name} does not verify")
    checkpoint = Checkpoint.parse(signed.text)
    if checkpoint.origin != verifier.name:
        raise CheckpointError(f"the checkpoint is of log {checkpoint.origin!r}, not {verifier.name!r}")
    return checkpoint
