"""Verifying a stored run from its rows: the chain, the fold, the seals. Pure; stores read the rows.

A verifier must not trust the code that writes: it recomputes each event's hash from the row
as stored (the body and the envelope columns, decoded strictly) and links it to the previous
row's *stored* hash, so every edited row is named on its own; it folds the decoded events into
the run's summary and compares that with the stored ``runs`` row; and it checks the run against
the seals the ledger holds for it, which is what catches a tail cut off together with its runs
row, or a whole chain recomputed. What is wrong comes back as data (:class:`Finding`), never as
an exception: an auditor wants every problem, named by run and seq.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Final, Literal, TypeAlias

from executus._errors import EventLogError
from executus._events import (
    Event,
    RunFinished,
    body_object,
    canonical_json,
    decode_event,
    refuse_envelope_keys,
    utc_json,
)
from executus._store import GENESIS_HASH, RunSummary, chain_hash, event_json, summarize

__all__ = [
    "Finding",
    "Problem",
    "Seal",
    "SealPolicy",
    "StoredRow",
    "VerifyReport",
    "check_run",
    "seal_due",
]

Problem: TypeAlias = Literal[
    "payload_changed",
    "event_missing",
    "reordered",
    "tail_truncated",
    "projection_differs",
    "malformed_body",
    "seal_differs",
    "run_deleted",
    "unsealed",
    "ledger_changed",
    "proof_invalid",
    "checkpoint_invalid",
]
"""What is wrong, in words a report can print: ``payload_changed`` -> "payload changed"."""

# When one seq has several findings, the likeliest cause first.
_PRIORITY: Final[dict[str, int]] = {
    "run_deleted": 0,
    "reordered": 1,
    "event_missing": 2,
    "tail_truncated": 3,
    "malformed_body": 4,
    "payload_changed": 5,
    "seal_differs": 6,
    "projection_differs": 7,
    "unsealed": 8,
    "ledger_changed": 9,
    "proof_invalid": 10,
    "checkpoint_invalid": 11,
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing verification found wrong.

    Attributes:
        run_id: the run it concerns (None for the ledger as a whole).
        seq: the first seq it concerns (None when no seq applies).
        problem: what is wrong.
        detail: one line saying how it was seen (never an event's content).
    """

    run_id: str | None
    seq: int | None
    problem: Problem
    detail: str

    def __str__(self) -> str:
        where = f"run {self.run_id}" if self.run_id is not None else "ledger"
        if self.seq is not None:
            where += f" seq {self.seq}"
        return f"{where}: {self.problem.replace('_', ' ')}: {self.detail}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a verification checked and found.

    Attributes:
        runs: how many runs were checked.
        events: how many event rows were checked.
        findings: everything wrong, by run and then seq; empty when all is intact.
    """

    runs: int
    events: int
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """Whether nothing was found wrong."""
        return not self.findings


@dataclass(frozen=True, slots=True)
class StoredRow:
    """An events row exactly as read from the database: untrusted input to :func:`check_run`."""

    position: int
    """The row's global position (commit order)."""
    seq: int
    kind: str
    schema_version: int
    at: datetime
    body: str
    """The stored body text (the event's JSON without the envelope)."""
    hash: bytes
    """The stored hash, 32 raw bytes."""


@dataclass(frozen=True, slots=True)
class Seal:
    """A ledger entry: the tip of one run's chain at one seq, as it was when it was sealed.

    Attributes:
        index: the entry's 0-based position in the ledger (its leaf index).
        run_id: the run sealed.
        last_seq: the seq of the run's last event then.
        head_hash: that event's hash, hex.
        status: the run's status then (``running`` for an intermediate seal).
    """

    index: int
    run_id: str
    last_seq: int
    head_hash: str
    status: str

    def leaf_data(self) -> bytes:
        """The bytes the ledger's Merkle leaf covers: canonical JSON of the seal (not the index,
        which is the leaf's place in the tree)."""
        return canonical_json(
            {
                "head_hash": self.head_hash,
                "last_seq": self.last_seq,
                "run_id": self.run_id,
                "status": self.status,
            }
        ).encode()


@dataclass(frozen=True, slots=True)
class SealPolicy:
    """When an append seals its run into the ledger, besides when the run finishes.

    Attributes:
        every_events: seal when the run's seq passes a multiple of this (None: never).
        every_seconds: seal when the run's last event time passes a multiple of this many
            seconds since the epoch (None: never). Both keep a long run's tip sealed without
            the store remembering when it last sealed.
    """

    every_events: int | None = 1000
    every_seconds: float | None = 3600.0


def seal_due(before: RunSummary | None, after: RunSummary, policy: SealPolicy) -> bool:
    """Whether an append that took a run's summary from ``before`` to ``after`` must seal it."""
    if after.status != "running":
        return before is None or before.status == "running"
    previous_seq = before.last_seq if before is not None else 0
    if policy.every_events is not None and previous_seq // policy.every_events != (
        after.last_seq // policy.every_events
    ):
        return True
    if policy.every_seconds is not None and before is not None:
        period = policy.every_seconds
        return before.last_event_at.timestamp() // period != after.last_event_at.timestamp() // period
    return False


def _strict_text(row: StoredRow, run_id: str) -> tuple[str, Event]:
    """The canonical text a row's hash must cover, and its event, refusing anything a reader
    and the hash could see differently.

    Raises:
        EventLogError: why the body is malformed.
    """
    data = body_object(row.body)
    refuse_envelope_keys(data)
    if canonical_json(data) != row.body:
        raise EventLogError("stored body is not canonical JSON (a repeated key, spacing or order)")
    data.update(run_id=run_id, seq=row.seq, kind=row.kind, schema_version=row.schema_version)
    data["at"] = utc_json(row.at)
    text = canonical_json(data)
    event = decode_event(data)
    if event.schema_version == row.schema_version and event_json(event) != text:
        raise EventLogError("stored body does not read back as the text its hash covers")
    return text, event


def _out_of_order(rows: Sequence[StoredRow]) -> list[int]:
    """Indexes of rows whose position disagrees with their seq order (commit order is seq order):
    a row committed after a later seq's row, or before an earlier seq's."""
    later_lowest = [0] * len(rows)
    lowest = 1 << 63  # above any position
    for index in range(len(rows) - 1, -1, -1):
        later_lowest[index] = lowest
        lowest = min(lowest, rows[index].position)
    moved: list[int] = []
    earlier_highest = -1
    for index, row in enumerate(rows):
        if row.position > later_lowest[index] or row.position < earlier_highest:
            moved.append(index)
        earlier_highest = max(earlier_highest, row.position)
    return moved


def check_run(
    run_id: str,
    rows: Sequence[StoredRow],
    summary: RunSummary | None,
    seals: Sequence[Seal],
    *,
    ledger: bool = True,
) -> list[Finding]:
    """Everything wrong with one stored run, first seq first.

    Args:
        run_id: the run.
        rows: its events rows, ordered by seq.
        summary: its stored runs row (None if there is none).
        seals: the ledger's seals of this run, by ledger index.
        ledger: whether the database has a ledger (a finished run must then be sealed).
    """
    findings: list[Finding] = []

    def found(seq: int | None, problem: Problem, detail: str) -> None:
        findings.append(Finding(run_id, seq, problem, detail))

    if not rows:
        if summary is not None:
            found(
                1,
                "event_missing",
                f"the runs row says the log ends at seq {summary.last_seq}, but the run has no events rows",
            )
        elif seals:
            last = max(seals, key=lambda seal: seal.last_seq)
            found(
                last.last_seq,
                "run_deleted",
                f"ledger entry {last.index} sealed it at seq "
                f"{last.last_seq} ({last.status}), but the database has neither its events nor its runs row",
            )
        return findings

    moved = set(_out_of_order(rows))
    if moved:
        seqs = ", ".join(str(rows[index].seq) for index in sorted(moved))
        found(rows[min(moved)].seq, "reordered", f"seqs {seqs} are not in the order they were committed in")
    stored_hashes: dict[int, str] = {}
    statuses: dict[int, str] = {}
    events: list[Event] = []
    projection: RunSummary | None = None
    previous_hash: str | None = GENESIS_HASH
    expected_seq = 1
    foldable = True
    for index, row in enumerate(rows):
        stored = row.hash.hex()
        if row.seq != expected_seq:
            missing = (
                f"seq {expected_seq}" if row.seq == expected_seq + 1 else f"seqs {expected_seq}-{row.seq - 1}"
            )
            found(expected_seq, "event_missing", f"{missing} missing: the log goes on at seq {row.seq}")
            previous_hash, foldable = None, False  # the link to a missing row cannot be checked
        try:
            text, event = _strict_text(row, run_id)
        except (EventLogError, ValueError, RecursionError) as error:
            # ValueError: NaN or a lone surrogate, which canonical JSON refuses; RecursionError:
            # nesting deeper than Python's parser goes. Text from the database is untrusted.
            found(row.seq, "malformed_body", str(error) or type(error).__name__)
            previous_hash, foldable = stored, False
        else:
            if previous_hash is not None and chain_hash(previous_hash, text) != stored and index not in moved:
                found(
                    row.seq,
                    "payload_changed",
                    "the row's hash does not cover its content and the previous event's hash",
                )
            events.append(event)
            if foldable:
                try:
                    projection = summarize(projection, event, stored)
                except EventLogError as error:
                    found(row.seq, "malformed_body", str(error))
                    foldable = False
                else:
                    statuses[row.seq] = projection.status
            previous_hash = stored
        stored_hashes[row.seq] = stored
        expected_seq = row.seq + 1
    last_seq = rows[-1].seq
    finished_at = next((e.seq for e in events if isinstance(e, RunFinished)), None)
    if finished_at is not None and finished_at != last_seq:
        found(finished_at + 1, "malformed_body", f"events follow run_finished (seq {finished_at})")

    if summary is None:
        found(last_seq, "projection_differs", "the run has events but no runs row")
    elif summary.last_seq > last_seq:
        found(
            last_seq + 1,
            "tail_truncated",
            f"the runs row says the log ends at seq {summary.last_seq}, but its last event is seq {last_seq}",
        )
    elif foldable and projection is not None:
        differing = _differences(summary, projection)
        if differing:
            found(
                summary.last_seq,
                "projection_differs",
                "the runs row does not match its events: " + "; ".join(differing),
            )

    for seal in seals:
        sealed = stored_hashes.get(seal.last_seq)
        if seal.last_seq > last_seq:
            found(
                last_seq + 1,
                "tail_truncated",
                f"ledger entry {seal.index} sealed the run at seq "
                f"{seal.last_seq}, but its last event is seq {last_seq}",
            )
        elif sealed is None:
            continue  # reported as missing above
        elif sealed != seal.head_hash:
            found(
                seal.last_seq,
                "seal_differs",
                f"ledger entry {seal.index} sealed a different chain up to "
                f"this seq: the run's events were changed and their hashes recomputed",
            )
        elif seal.status != statuses.get(seal.last_seq, seal.status):
            found(
                seal.last_seq,
                "seal_differs",
                f"ledger entry {seal.index} sealed status {seal.status}, "
                f"the events say {statuses[seal.last_seq]}",
            )
    finished = projection is not None and projection.status != "running"
    if ledger and finished and foldable and not any(seal.last_seq == last_seq for seal in seals):
        found(last_seq, "unsealed", "the run finished but the ledger holds no seal of its last event")
    findings.sort(key=lambda f: (f.seq if f.seq is not None else 0, _PRIORITY[f.problem]))
    return findings


def _differences(stored: RunSummary, folded: RunSummary) -> list[str]:
    """The runs row's fields that differ from the fold's, named (values only for non-content)."""
    return [
        f"runs.{field.name} is {getattr(stored, field.name)!r}, "
        f"the events say {getattr(folded, field.name)!r}"
        for field in fields(RunSummary)
        if getattr(stored, field.name) != getattr(folded, field.name)
    ]


def sort_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Findings by run id, then seq, then likeliest cause."""
    return tuple(
        sorted(
            findings,
            key=lambda f: (f.run_id or "", f.seq if f.seq is not None else 0, _PRIORITY[f.problem]),
        )
    )
