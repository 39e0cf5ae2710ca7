"""Checking an evidence bundle offline: a cassette whose header carries :class:`Evidence`.

The cassette's own ``head_hash`` is not trusted (whoever edits the events can recompute it);
the seal is, once its inclusion proof leads to the root of a checkpoint signed by the key the
auditor trusts. So the event lines are hashed here, from the raw lines, up to the sealed seq.
"""

from __future__ import annotations

import base64
import binascii
import io

from executus._checkpoint import CheckpointError
from executus._merkle import ProofError, leaf_hash, verify_inclusion
from executus._notekey import NoteVerifier, open_checkpoint
from executus.storage import GENESIS_HASH, Finding, VerifyReport, chain_hash
from replay._errors import CassetteError
from replay._evidence import Evidence
from replay.cassette import _read_header, read_cassette

__all__ = ["verify_bundle"]


def _proof(evidence: Evidence) -> list[bytes]:
    try:
        return [base64.b64decode(node, validate=True) for node in evidence.inclusion]
    except (binascii.Error, ValueError):
        raise CassetteError("the evidence's inclusion proof is not base64", 1) from None


def verify_bundle(text: str, verifier: NoteVerifier) -> VerifyReport:
    """Check an evidence bundle offline.

    Args:
        text: the cassette's text.
        verifier: the ledger's public key the auditor trusts.

    Returns:
        The findings: the events do not hash to the sealed head (``seal_differs``), the seal is
        not in the checkpoint's tree (``proof_invalid``), the checkpoint is not signed by
        ``verifier`` (``checkpoint_invalid``), events after the seal (``unsealed``).

    Raises:
        CassetteError: not a cassette, not one with evidence, or malformed where no tampering
            was found first.
    """
    lines = [line.removesuffix("\r") for line in text.split("\n")]  # as read_cassette reads them
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise CassetteError("the file is empty")
    header = _read_header(lines[0])
    evidence = header.evidence
    if evidence is None:
        raise CassetteError("the cassette carries no evidence: export it with --evidence", 1)
    run_id = header.run_id
    seal = evidence.seal(run_id)
    findings: list[Finding] = []
    event_lines = lines[1 : 1 + header.events]
    head, sealed = GENESIS_HASH, None
    for seq, line in enumerate(event_lines, start=1):
        head = chain_hash(head, line)
        if seq == seal.last_seq:
            sealed = head
    if sealed != seal.head_hash:
        findings.append(
            Finding(
                run_id,
                seal.last_seq,
                "seal_differs",
                "the event lines up to this seq do not hash to "
                "the head the ledger sealed: an event was edited, removed or reordered",
            )
        )
    elif len(event_lines) > seal.last_seq:
        findings.append(
            Finding(run_id, seal.last_seq + 1, "unsealed", "the events after the seal are not covered by it")
        )
    try:
        checkpoint = open_checkpoint(evidence.checkpoint, verifier)
    except CheckpointError as error:
        findings.append(Finding(None, None, "checkpoint_invalid", str(error)))
    else:
        try:
            verify_inclusion(
                leaf_hash(seal.leaf_data()),
                seal.index,
                checkpoint.size,
                _proof(evidence),
                checkpoint.root_hash,
            )
        except ProofError as error:
            findings.append(
                Finding(
                    run_id,
                    seal.last_seq,
                    "proof_invalid",
                    f"ledger entry {seal.index} is not in the "
                    f"checkpoint's tree of {checkpoint.size} seals: {error}",
                )
            )
    if not findings:
        # Nothing was tampered with: now everything else about the cassette must hold too.
        read_cassette(io.StringIO("\n".join(lines) + "\n"))
    return VerifyReport(runs=1, events=len(event_lines), findings=tuple(findings))
