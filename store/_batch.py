"""Group commit: the writes of many runs in one transaction, each run's fate its own.

:meth:`GroupCommitter.commit` takes the writes waiting at one moment (appends of any runs, blobs)
and commits them in one transaction, so that 100 runs pay one commit rather than 100. SQLite's
``BEGIN IMMEDIATE`` makes it the only writer meanwhile; on PostgreSQL, transactions of other
processes append to other runs at the same time (each run's rows are its own: its runs row, its
lease row, its seqs), and only a transaction that seals a run into the ledger waits for another
that does (``store._ledger``).

One run's bad write never fails another's:

- *Checked before writing.* Inside the transaction, each append's expected seq is compared with
  the run's stored last seq and its batch is checked and hashed before any of its rows is
  written; one that fails there gets its own :class:`~executus.storage.ConcurrencyError` or
  :class:`~executus.events.EventOrderError` and writes nothing, while the others go ahead.
- *Fenced.* An append made with a lease epoch locks the run's lease row before writing
  (``FOR UPDATE`` on PostgreSQL; SQLite's write lock), and one whose epoch moved on gets its own
  :class:`~executus.LeaseLostError` and writes nothing. The lock is held to the commit, so a
  claim that takes the run over commits either before the check (which then fails) or after the
  append (which was still the owner's). PostgreSQL reads the epochs with the writes' round trip
  and checks them before ``COMMIT``: a moved one rolls the group back, and the others are
  committed again without it.
- *Leases in the same transaction.* Acquires and releases waiting meanwhile (runs starting and
  ending together) are taken first and given up last; one refused gets its own
  :class:`~executus.LeaseHeldError`.
- *Refused while writing.* If the database refuses the group anyway (a writer that bypassed the
  lock took a seq first, a value the database will not store), nothing of it was kept, and each
  write is committed again on its own, so only the culprit fails.

Transient failures (see ``store._session``) are retried, the whole group again, with back-off
until the settings' retry window has passed; then every write of the group fails with
:class:`~executus.StoreUnavailableError`. If the connection was lost after ``COMMIT`` was sent,
the retry first asks whether the commit happened: an append whose last event's hash is stored
at its last seq was committed, and is reported done, neither written twice nor reported as a
conflict.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final

from executus import LeaseHeldError, LeaseLostError, StoreError, StoreUnavailableError
from executus._store import summarize_batch
from executus.events import Event, EventOrderError
from executus.storage import (
    GENESIS_HASH,
    ConcurrencyError,
    Lease,
    RunSummary,
    SealPolicy,
    chain_hash,
    check_batch,
    event_json_and_body,
)
from store._engine import display_url
from store._hot import AppendTransaction, EventRow, FenceMoved, RaceLost
from store._ledger import seal_if_due
from store._session import AppendConnection, TransientFailure
from store._settings import WriterSettings

__all__ = ["AcquireRequest", "AppendRequest", "BlobRequest", "GroupCommitter", "ReleaseRequest", "Request"]

_MAX_CACHED_HEADS: Final = 4096
_RUNS_NAMED: Final = 3


@dataclass(slots=True, eq=False)
class AppendRequest:
    """One batch of one run's events, waiting to be committed."""

    run_id: str
    events: Sequence[Event]
    expected_seq: int
    epoch: int | None = None
    """The run's lease epoch the append is fenced by (None: not fenced)."""
    final_hash: str | None = None
    """The hash its last event gets, once hashed: after a lost COMMIT it tells whether it was kept."""
    uncertain: bool = False
    """The connection was lost after COMMIT was sent for a transaction holding this batch."""
    error: BaseException | None = None
    """Why it was not committed (None once committed)."""


@dataclass(slots=True, eq=False)
class BlobRequest:
    """One blob, waiting to be stored (storing it twice is harmless: the first one stays)."""

    sha256: str
    media_type: str
    data: bytes
    error: BaseException | None = None


@dataclass(slots=True, eq=False)
class AcquireRequest:
    """One run's lease to take (:meth:`executus.storage.RunLeases.acquire`)."""

    run_id: str
    owner: str
    ttl: float
    force: bool = False
    lease: Lease | None = None
    """The lease taken, once committed."""
    error: BaseException | None = None


@dataclass(slots=True, eq=False)
class ReleaseRequest:
    """One lease to give up (:meth:`executus.storage.RunLeases.release`)."""

    lease: Lease
    error: BaseException | None = None


Request = AppendRequest | BlobRequest | AcquireRequest | ReleaseRequest


class GroupCommitter:
    """Commits groups of writes through one :class:`AppendConnection`, with the retry policy.

    Thread-safe: transactions take turns on the connection under ``lock``.

    Args:
        connection: the held connection.
        url: the database as the user gave it, for messages (its password is masked).
        settings: the retry window and back-off.
        read_last_seq: the run's last stored seq, read outside any transaction (for the rare
            :class:`ConcurrencyError` a writer that bypassed the lock causes).
        seal_policy: when a run's appends also seal it into the ledger, besides when it finishes.
    """

    def __init__(
        self,
        connection: AppendConnection,
        url: str,
        settings: WriterSettings,
        read_last_seq: Callable[[str], int],
        seal_policy: SealPolicy,
    ) -> None:
        self._connection = connection
        self._seal_policy = seal_policy
        self._url = url
        self._settings = settings
        self._read_last_seq = read_last_seq
        self.lock = threading.Lock()
        # The summary row this store last committed for each unfinished run: the next append
        # to it skips the SELECT. A stale entry (another writer appended meanwhile) cannot
        # write anything: its seq already exists, or the UPDATE guarded by last_seq matches
        # no row, and either is a RaceLost that drops the group's entries and tries again.
        self._heads: dict[str, RunSummary] = {}
        self.transactions = 0
        """Transactions committed so far (what group commit saves is visible here)."""

    def commit(self, requests: Sequence[Request]) -> None:
        """Commit ``requests`` in one transaction if possible; each one's ``error`` says how it went.

        Never raises for a write's failure; only for a bug (or a BaseException such as
        KeyboardInterrupt).
        """
        started = time.monotonic()
        backoff = self._settings.first_backoff
        attempts = 0
        raced = False
        while True:
            attempts += 1
            write = partial(self._write, requests=requests)
            try:
                with self.lock:
                    heads = self._connection.attempt(partial(_doing, requests), write)
                    self.transactions += 1
                    self._remember(heads)
                return
            except FenceMoved as moved:
                self._forget(requests)
                requests = self._fenced_out(requests, moved.owners)
                if not requests:
                    return
            except TransientFailure as failure:
                self._forget(requests)
                for request in requests:
                    if isinstance(request, AppendRequest) and failure.uncertain and request.final_hash:
                        request.uncertain = True
                elapsed = time.monotonic() - started
                if elapsed + backoff > self._settings.retry_window:
                    self._give_up(requests, failure, attempts, elapsed)
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, self._settings.max_backoff)
            except RaceLost:
                self._forget(requests)
                if len(requests) > 1:
                    self._one_by_one(requests)
                    return
                if raced:  # even reading afresh, a writer that bypassed the lock got there first
                    self._concurrency_error(requests[0])
                    return
                raced = True  # perhaps only our cached row was stale: read it afresh, once
            except Exception as error:
                self._forget(requests)
                if len(requests) > 1:
                    self._one_by_one(requests)
                    return
                requests[0].error = error
                return

    @staticmethod
    def _fenced_out(requests: Sequence[Request], owners: dict[tuple[str, int], str | None]) -> list[Request]:
        """Fail the appends whose lease epoch moved on; the requests left to commit."""
        left: list[Request] = []
        for request in requests:
            if isinstance(request, AppendRequest) and (request.run_id, request.epoch) in owners:
                assert request.epoch is not None  # only fenced appends are in owners
                request.error = LeaseLostError(
                    request.run_id, request.epoch, owners[request.run_id, request.epoch]
                )
            else:
                left.append(request)
        return left

    def close(self) -> None:
        """Close the held connection (waiting for a transaction in progress)."""
        with self.lock:
            self._connection.close()

    def _one_by_one(self, requests: Sequence[Request]) -> None:
        for request in requests:
            self.commit([request])

    def _concurrency_error(self, request: Request) -> None:
        if isinstance(request, AppendRequest):
            actual = self._read_last_seq(request.run_id)
            request.error = ConcurrencyError(request.run_id, request.expected_seq, actual)
        else:  # an upsert or a conditional update: nothing for another writer to race
            request.error = StoreError(f"{_doing([request])} in {display_url(self._url)} failed")

    def _give_up(
        self, requests: Sequence[Request], failure: TransientFailure, attempts: int, elapsed: float
    ) -> None:
        tried = (
            f"{attempts} attempt{'s' if attempts > 1 else ''} over {elapsed:.1f}s "
            f"(retry window {self._settings.retry_window:g}s)"
        )
        for request in requests:
            if not isinstance(request, AppendRequest):
                request.error = StoreUnavailableError(
                    f"gave up {_doing([request])} in {display_url(self._url)} after {tried}: {failure.cause}",
                    _run_of(request),
                )
                continue
            unknown = request.uncertain
            kept = (
                "the connection was lost while committing, so the batch may have been committed"
                if unknown
                else f"nothing after seq {request.expected_seq} was written"
            )
            request.error = StoreUnavailableError(
                f"gave up appending to run {request.run_id} in {display_url(self._url)} after {tried}; "
                f"{kept}: {failure.cause}",
                request.run_id,
                request.expected_seq,
                outcome_unknown=unknown,
            )

    def _forget(self, requests: Sequence[Request]) -> None:
        with self.lock:
            for request in requests:
                if isinstance(request, AppendRequest):
                    self._heads.pop(request.run_id, None)

    def _remember(self, heads: dict[str, RunSummary]) -> None:
        for run_id, head in heads.items():
            if head.status != "running":
                continue
            if len(self._heads) >= _MAX_CACHED_HEADS:
                del self._heads[next(iter(self._heads))]  # the least recently appended run
            self._heads[run_id] = head

    def _write(self, transaction: AppendTransaction, requests: Sequence[Request]) -> dict[str, RunSummary]:
        """Write every request that passes its checks; returns the new rows of the runs written.

        Leases taken come first and leases released last: whatever the order they arrived in,
        an acquire and a fenced append of one run in one group then commit as if the acquire
        came first (the append is checked against the new epoch), and a release sees a run whose
        final append is in the same group as finished. A batch a lost COMMIT may have kept is
        settled before anything else: if it was kept, it is done. The fenced runs' lease rows
        are locked next (their epochs are checked by the commit: :meth:`AppendTransaction.fence`),
        and the runs' rows this store has not cached are read, in one go.
        """
        before: dict[str, RunSummary | None] = {}  # each run's row as the transaction found it
        after: dict[str, RunSummary | None] = {}  # ... and as it leaves it
        rows: list[EventRow] = []
        self._acquire(transaction, [request for request in requests if isinstance(request, AcquireRequest)])
        appends: list[AppendRequest] = []
        for request in requests:
            if isinstance(request, BlobRequest):
                request.error = None
                transaction.insert_blob(request.sha256, request.media_type, request.data)
            elif isinstance(request, AppendRequest):
                request.error = None
                if not (request.uncertain and self._was_committed(transaction, request)):
                    appends.append(request)
        fenced = [(request.run_id, request.epoch) for request in appends if request.epoch is not None]
        if fenced:
            transaction.fence(fenced)
        heads = self._heads_of(transaction, appends)
        for request in appends:
            run_id = request.run_id
            if run_id in after:
                head = after[run_id]
            else:
                head = before[run_id] = after[run_id] = heads[run_id]
            try:
                after[run_id] = _hashed(request, head, rows)
            except (StoreError, EventOrderError) as error:
                request.error = error
        if rows:
            transaction.insert_events(rows)
        written: dict[str, RunSummary] = {}
        started: list[str] = []
        for run_id, head in after.items():
            stored = before[run_id]
            if head is None or head is stored:
                continue
            if stored is None:
                transaction.insert_run(head)
                started.append(run_id)
            else:
                transaction.update_run(stored, head)
            # In the same transaction: the seal and the events it covers commit together.
            seal_if_due(transaction, stored, head, self._seal_policy)
            written[run_id] = head
        if started:  # a queued run leaves the queue with its run_started
            transaction.delete_queued(started)
        released = [request.lease for request in requests if isinstance(request, ReleaseRequest)]
        if released:
            transaction.release_leases([(lease.run_id, lease.epoch) for lease in released])
        return written

    def _heads_of(
        self, transaction: AppendTransaction, appends: Sequence[AppendRequest]
    ) -> dict[str, RunSummary | None]:
        """Each run's row as stored: cached if the run's first append in the group expects
        what this store last committed, else read (all of those in one go)."""
        heads: dict[str, RunSummary | None] = {}
        unread: dict[str, None] = {}
        for request in appends:
            run_id = request.run_id
            if run_id in heads or run_id in unread:
                continue
            cached = self._heads.pop(run_id, None)
            if cached is not None and cached.last_seq == request.expected_seq:
                heads[run_id] = cached
            else:
                unread[run_id] = None
        if unread:
            heads.update(transaction.read_runs(list(unread)))
        return heads

    @staticmethod
    def _acquire(transaction: AppendTransaction, acquires: Sequence[AcquireRequest]) -> None:
        """Take the leases ``acquires`` ask for; one another owner holds gets its LeaseHeldError."""
        if not acquires:
            return
        taken = transaction.acquire_leases(
            [(request.run_id, request.owner, request.ttl, request.force) for request in acquires]
        )
        for request, lease in zip(acquires, taken, strict=True):
            request.error = request.lease = None
            if lease is None:  # refused, so held: a lease with no owner (a queued run's) is free
                owner, expires_at = transaction.lease_holder(request.run_id)
                request.error = LeaseHeldError(request.run_id, owner or "", expires_at)
            else:
                request.lease = Lease(request.run_id, request.owner, *lease)

    @staticmethod
    def _was_committed(transaction: AppendTransaction, request: AppendRequest) -> bool:
        final_seq = request.expected_seq + len(request.events)
        committed = transaction.read_hash(request.run_id, final_seq) == request.final_hash
        request.uncertain = not committed  # if it was not, this transaction writes it
        return committed


def _hashed(request: AppendRequest, head: RunSummary | None, rows: list[EventRow]) -> RunSummary | None:
    """Check ``request`` against the run's row ``head``, add its rows, return the row after it.

    Raises:
        ConcurrencyError, EventOrderError: the batch cannot follow ``head``; no row was added.
    """
    run_id, batch, expected_seq = request.run_id, request.events, request.expected_seq
    actual = head.last_seq if head is not None else 0
    if actual != expected_seq:
        raise ConcurrencyError(run_id, expected_seq, actual)
    if not batch:
        return head
    check_batch(run_id, batch, expected_seq)
    prev_hash = head.head_hash if head is not None else GENESIS_HASH
    added: list[EventRow] = []
    for event in batch:
        # The hash covers the full text; the row keeps the body, the envelope is in columns.
        full, body = event_json_and_body(event)
        prev_hash = chain_hash(prev_hash, full)
        added.append((run_id, event.seq, event.kind, event.schema_version, event.at, body, prev_hash))
    summary = summarize_batch(head, batch, prev_hash)  # before any row is added: it may raise
    rows.extend(added)
    request.final_hash = prev_hash
    return summary


def _run_of(request: Request) -> str | None:
    if isinstance(request, AppendRequest | AcquireRequest):
        return request.run_id
    return request.lease.run_id if isinstance(request, ReleaseRequest) else None


def _doing(requests: Sequence[Request]) -> str:
    """What a group does, for messages: 'appending to run a', 'appending to runs a, b, c and 7 more'."""
    blobs = sum(isinstance(request, BlobRequest) for request in requests)
    parts = []
    for verb, kind in (
        ("appending to", AppendRequest),
        ("acquiring", AcquireRequest),
        ("releasing", ReleaseRequest),
    ):
        run_ids = list(dict.fromkeys(_run_of(request) for request in requests if isinstance(request, kind)))
        if run_ids:
            named = ", ".join(map(str, run_ids[:_RUNS_NAMED]))
            more = f" and {len(run_ids) - _RUNS_NAMED} more" if len(run_ids) > _RUNS_NAMED else ""
            parts.append(f"{verb} run{'s' if len(run_ids) > 1 else ''} {named}{more}")
    if blobs:
        parts.append(f"storing {blobs} blob{'s' if blobs > 1 else ''}")
    return " and ".join(parts)
