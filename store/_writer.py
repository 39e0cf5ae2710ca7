"""The SQL store's :class:`executus.storage.EventWriter`: one thread that commits for every run.

Why a thread rather than an async driver on the loop: the drivers are synchronous (sqlite3 has
no async API at all, and psycopg's async one would still leave SQLite's busy wait on the loop),
and the point is that nothing the database does, or fails to do, can hold up the loop. The
thread holds the store's one append connection; the loop's side of an append is a queue push
and a future, and the future is resolved with ``call_soon_threadsafe``.

Group commit falls out of the queue: while the thread commits one group, the writes that arrive
wait, and the next transaction takes all of them (up to ``max_group``). Under load, 100 runs
each waiting for its append share one commit instead of paying 100; with a single run the
writer commits each batch as soon as it arrives, adding only a thread hand-off.

Taking and giving up a run's lease (``acquire``, ``release``) go through the same queue, so the
runs that start or end together share a transaction with each other and with the appends
waiting meanwhile, rather than paying one each. Renewals (a run's heartbeat) run on a few
threads of their own beside it, so a heartbeat waits neither on the loop nor behind a group
commit.

Cancelling a caller's ``await append(...)`` does not take its batch back: a batch handed to the
writer is committed (or fails) exactly as if the caller were still waiting, in the order it was
handed over. A caller that was cancelled must treat the batch as possibly committed (the next
append expecting the seq after it succeeds if it was; reading the run tells for sure).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from executus import StoreError
from executus.events import Event
from executus.storage import Lease, Renewal, RunLeases
from store._batch import AcquireRequest, AppendRequest, BlobRequest, GroupCommitter, ReleaseRequest, Request

_RENEWAL_THREADS = 4
"""Renewals at once: each commits (and waits for its flush to disk) on a pooled connection, so
the heartbeats of many runs overlap rather than queue."""

__all__ = ["ThreadWriter"]

_Waiter = tuple[Request, "asyncio.Future[None]"]


class ThreadWriter:
    """Commits appends and blobs from a dedicated thread, many runs per transaction.

    Started on first use; :meth:`close` commits what is still waiting, then stops the thread.

    Args:
        committer: commits one group of writes (the store's, shared with its synchronous appends).
        max_group: at most this many writes per transaction.
        name: the thread's name.
        leases: where renewals go (the store's synchronous ones).
    """

    def __init__(self, committer: GroupCommitter, max_group: int, name: str, leases: RunLeases) -> None:
        self._committer = committer
        self._max_group = max_group
        self._name = name
        self._leases = leases
        self._lease_thread: ThreadPoolExecutor | None = None
        self._waiting: list[_Waiter] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._idle = False
        """Whether the thread waits for work (only then does a new write need to wake it)."""
        self._closed = False

    async def append(
        self, run_id: str, events: Sequence[Event], expected_seq: int, *, epoch: int | None = None
    ) -> None:
        """Commit ``events`` (seq ``expected_seq + 1`` onwards) atomically: all or nothing; with
        ``epoch``, only while the run's lease has that epoch.

        Raises:
            LeaseLostError: the run's lease epoch is not ``epoch``; nothing written.
            ConcurrencyError: the run's log does not end at ``expected_seq``; nothing written.
            EventOrderError: the batch is not the run's next events in order; nothing written.
            StoreUnavailableError: transient failures lasted the whole retry window.
            StoreError: the database refused the batch, or the store is closed.
        """
        await self._submit(AppendRequest(run_id, tuple(events), expected_seq, epoch))

    async def put_blob(self, data: bytes, media_type: str) -> str:
        """Store content once by its sha256 and return the hex digest (the first media type wins)."""
        digest = hashlib.sha256(data).hexdigest()
        await self._submit(BlobRequest(digest, media_type, data))
        return digest

    async def acquire(self, run_id: str, owner: str, ttl: float, *, force: bool = False) -> Lease:
        """:meth:`executus.storage.RunLeases.acquire`, in the next group commit.

        Raises:
            LeaseHeldError: another owner's lease on the run is live (and not ``force``).
            StoreUnavailableError: transient failures lasted the whole retry window.
            StoreError: the database refused it, or the store is closed.
        """
        request = AcquireRequest(run_id, owner, ttl, force)
        await self._submit(request)
        assert request.lease is not None  # committed without an error
        return request.lease

    async def renew(self, lease: Lease, ttl: float) -> Renewal:
        """:meth:`executus.storage.RunLeases.renew`, off the event loop on a thread of its own
        (not behind a group commit)."""
        with self._wake:
            if self._closed:
                raise StoreError(f"{self._name}: the store is closed")
            if self._lease_thread is None:
                self._lease_thread = ThreadPoolExecutor(
                    _RENEWAL_THREADS, thread_name_prefix=f"{self._name} (leases)"
                )
            future = self._lease_thread.submit(self._leases.renew, lease, ttl)
        return await asyncio.wrap_future(future)

    async def release(self, lease: Lease) -> None:
        """:meth:`executus.storage.RunLeases.release`, in the next group commit."""
        await self._submit(ReleaseRequest(lease))

    async def _submit(self, request: Request) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._wake:
            if self._closed:
                raise StoreError(f"{self._name}: the store is closed")
            self._waiting.append((request, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread.start()
            elif self._idle:
                self._wake.notify()
        # Not shielded: cancelling the wait leaves the batch queued (see the module docstring).
        await future

    def close(self) -> None:
        """Commit every write still waiting, then stop the thread. Idempotent."""
        with self._wake:
            self._closed = True
            thread, self._thread = self._thread, None
            lease_thread, self._lease_thread = self._lease_thread, None
            self._wake.notify()
        if thread is not None:
            thread.join()
        if lease_thread is not None:
            lease_thread.shutdown()

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._closed:
                    self._idle = True
                    self._wake.wait()
                    self._idle = False
                if not self._waiting:
                    return
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
            try:
                self._committer.commit([request for request, _future in group])
            except Exception as error:  # a bug: fail the group rather than leave its callers waiting
                for request, _future in group:
                    request.error = StoreError(f"{self._name} failed: {type(error).__name__}: {error}")
            _resolve(group)


def _resolve(group: list[_Waiter]) -> None:
    """Hand each caller its outcome on its own loop: one wake-up per loop, not per write."""
    by_loop: defaultdict[asyncio.AbstractEventLoop, list[_Waiter]] = defaultdict(list)
    for waiter in group:
        by_loop[waiter[1].get_loop()].append(waiter)
    for loop, waiters in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, waiters)


def _settle(waiters: list[_Waiter]) -> None:
    for request, future in waiters:
        if future.done():  # the caller stopped waiting (cancelled)
            continue
        if request.error is None:
            future.set_result(None)
        else:
            future.set_exception(request.error)
