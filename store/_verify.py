"""``verify``: every stored run checked from its rows, and the ledger against a checkpoint.

The rows are read as they are (no decoding on the way, no summary cache) and handed to the pure
:func:`executus.check_run`; the ledger is read whole and its Merkle tree recomputed from the seal
rows. Nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any, Final

from sqlalchemy import Connection, Row, select, union

from executus import StoreError
from executus._audit import sort_findings
from executus._checkpoint import Checkpoint
from executus._merkle import ProofError, verify_consistency
from executus._notekey import NoteSigner, sign_checkpoint
from executus.storage import Finding, Seal, StoredRow, VerifyReport, check_run
from store._engine import connect
from store._ledger import LedgerView, read_ledger, read_seals
from store._schema import events, ledger, runs
from store._sql import SqlStore, _summary

__all__ = [
    "RunEvidence",
    "run_evidence",
    "signed_checkpoint",
    "verify_all",
    "verify_checkpoint",
    "verify_run",
]

_RUNS_PER_READ: Final = 200
"""Runs whose rows are read in one statement: enough to amortise the round trip, few enough
that a batch of long runs still fits in memory."""

_SELECT_ROWS: Final = select(events).order_by(events.c.run_id, events.c.seq)
"""Every column of the rows, as stored: nothing derived, nothing decoded on the way."""


@contextmanager
def _snapshot(store: SqlStore, doing: str) -> Iterator[Connection]:
    """One read transaction that sees the database as of one moment, however long it lasts.

    A run that commits while verify reads must not look half-sealed: its last events and its
    seal are one transaction, so read both in one snapshot (PostgreSQL: REPEATABLE READ; SQLite:
    a read transaction in WAL mode already is one).
    """
    with connect(store.engine, store.display_url, doing) as connection:
        if connection.dialect.name == "postgresql":
            connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


def _row(row: Row[*tuple[Any, ...]]) -> StoredRow:
    return StoredRow(
        row.position, row.seq, row.kind, row.schema_version, row.at, row.payload, bytes(row.hash)
    )


def _check_batch(
    connection: Connection, run_ids: Sequence[str], seals: dict[str, list[Seal]]
) -> tuple[list[Finding], int]:
    rows = connection.execute(_SELECT_ROWS.where(events.c.run_id.in_(run_ids))).all()
    summaries = {
        row.run_id: _summary(row)
        for row in connection.execute(select(runs).where(runs.c.run_id.in_(run_ids)))
    }
    by_run = {
        run_id: [_row(row) for row in group] for run_id, group in groupby(rows, key=lambda row: row.run_id)
    }
    findings: list[Finding] = []
    for run_id in run_ids:
        findings.extend(
            check_run(run_id, by_run.get(run_id, []), summaries.get(run_id), seals.get(run_id, []))
        )
    return findings, len(rows)


def _seals_by_run(seals: Sequence[Seal]) -> dict[str, list[Seal]]:
    by_run: dict[str, list[Seal]] = {}
    for seal in seals:
        by_run.setdefault(seal.run_id, []).append(seal)
    return by_run


def verify_run(store: SqlStore, run_id: str) -> VerifyReport:
    """Check one run: its chain from the stored rows, its runs row against the fold, its seals.

    A run id the database has no trace of (no events, no runs row, no seal) is an error, not a
    finding.

    Raises:
        RunNotFoundError: no such run anywhere (suggesting ids that start with it).
    """
    with _snapshot(store, f"verifying run {run_id}") as connection:
        seals = _seals_by_run(read_seals(connection, [run_id]))
        findings, count = _check_batch(connection, [run_id], seals)
        if count == 0 and not findings:
            store.get_run(run_id)  # raises RunNotFoundError with suggestions
    return VerifyReport(runs=1, events=count, findings=sort_findings(findings))


def _all_run_ids(connection: Connection, since: datetime | None) -> list[str]:
    """Every run the database has a trace of: a runs row, events rows or a seal."""
    if since is not None:
        statement = select(runs.c.run_id).where(runs.c.started_at >= since)
        return sorted(connection.execute(statement).scalars())
    every = union(
        select(runs.c.run_id), select(events.c.run_id).distinct(), select(ledger.c.run_id).distinct()
    )
    return sorted(connection.execute(every).scalars())


def verify_all(
    store: SqlStore,
    *,
    since: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Check every run (or those started since ``since``) and the ledger's own shape.

    Runs are found in the runs table, the events table and the ledger alike, so a run whose
    rows were deleted but which the ledger sealed is reported as deleted, and events with no
    runs row are reported too.

    Args:
        store: the store to check.
        since: only runs whose runs row says they started at or after this time.
        progress: called with (runs checked, runs to check) after each batch.
    """
    with _snapshot(store, "verifying runs") as connection:
        view = read_ledger(connection)
        run_ids = _all_run_ids(connection, since)
        seals = _seals_by_run(view.seals)
        findings = _ledger_gaps(view)
        events_checked = 0
        for done, batch in _batches(run_ids, _RUNS_PER_READ):
            found, count = _check_batch(connection, batch, seals)
            findings.extend(found)
            events_checked += count
            if progress is not None:
                progress(done, len(run_ids))
    return VerifyReport(runs=len(run_ids), events=events_checked, findings=sort_findings(findings))


def _batches(items: Sequence[str], size: int) -> Iterator[tuple[int, Sequence[str]]]:
    for start in range(0, len(items), size):
        batch = items[start : start + size]
        yield start + len(batch), batch


def _ledger_gaps(view: LedgerView) -> list[Finding]:
    return [
        Finding(None, None, "ledger_changed", f"ledger entry {index} is missing: a seal was deleted")
        for index in view.gaps
    ]


def verify_checkpoint(store: SqlStore, checkpoint: Checkpoint) -> list[Finding]:
    """Prove with a consistency proof that the ledger still holds, unchanged, everything it held
    when ``checkpoint`` was taken (whose signature the caller has already checked).

    Returns:
        Nothing when the proof holds; otherwise what failed, as ``ledger_changed`` findings.
    """
    with connect(store.engine, store.display_url, "reading the ledger") as connection:
        view = read_ledger(connection)
    if view.size < checkpoint.size:
        return [
            Finding(
                None,
                None,
                "ledger_changed",
                f"the checkpoint vouches for {checkpoint.size} "
                f"seals but the ledger holds {view.size}: seals were deleted",
            )
        ]
    try:
        verify_consistency(
            checkpoint.size, view.size, checkpoint.root_hash, view.root(), view.consistency(checkpoint.size)
        )
    except ProofError as error:
        return [
            Finding(
                None,
                None,
                "ledger_changed",
                f"the first {checkpoint.size} seals are not the ones the "
                f"checkpoint signed (a seal was changed, removed or reordered): {error}",
            )
        ]
    return []


@dataclass(frozen=True, slots=True)
class RunEvidence:
    """What proves a run's seal is in the ledger a signed checkpoint vouches for.

    Attributes:
        seal: the run's latest seal.
        inclusion: the seal's RFC 9162 inclusion proof in the checkpoint's tree.
        checkpoint: the signed checkpoint (a C2SP signed note) of the ledger when this was made.
    """

    seal: Seal
    inclusion: tuple[bytes, ...]
    checkpoint: str


def signed_checkpoint(store: SqlStore, signer: NoteSigner) -> str:
    """A checkpoint of the ledger as it is now, signed by ``signer`` (whose name is its origin)."""
    with connect(store.engine, store.display_url, "reading the ledger") as connection:
        view = read_ledger(connection)
    return _sign(view, signer)


def _sign(view: LedgerView, signer: NoteSigner) -> str:
    return sign_checkpoint(Checkpoint(signer.name, view.size, view.root()), signer)


def run_evidence(store: SqlStore, run_id: str, signer: NoteSigner) -> RunEvidence:
    """The run's latest seal, its inclusion proof and a signed checkpoint, read together.

    Raises:
        StoreError: the run has no seal yet (it has not finished, nor passed a seal mark).
    """
    with connect(store.engine, store.display_url, f"reading the ledger for run {run_id}") as connection:
        view = read_ledger(connection)
    seal = view.latest_seal(run_id)
    if seal is None:
        raise StoreError(f"run {run_id} has no seal in the ledger yet: it has not finished")
    position = view.seals.index(seal)
    return RunEvidence(seal, tuple(view.inclusion(position)), _sign(view, signer))
