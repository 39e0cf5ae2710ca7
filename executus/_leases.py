"""Run ownership: leases, the work queue and cancel requests, as every store keeps them.

A run being worked on has an owner (a worker id) holding a *lease* on it until ``expires_at``,
renewed by a heartbeat. Every acquire or claim raises the lease's *epoch* by one, and an append
made with an epoch (``append(..., epoch=)``) is *fenced*: it commits only while the run's lease
still has that epoch, so an owner that paused past its lease (and lost the run to another
worker) cannot write another event. Times are the store's: the database's clock in SQL.

Coordination state lives beside the log, not in it: a lease changes without an event, and the
runs row stays a pure projection of the events (what ``verify`` compares with the fold). A queued
run needs a lease before its first event exists.

This module holds the types, the :class:`RunLeases` protocol, and :class:`LeaseBook`, the
in-memory implementation :class:`~executus.storage.MemoryStore` keeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from executus._errors import LeaseHeldError, LeaseLostError, RunExistsError, RunNotFoundError

__all__ = [
    "Claim",
    "Lease",
    "LeaseBook",
    "LeaseInfo",
    "LeasesThrough",
    "QueuedRun",
    "Renewal",
    "RunLeases",
    "wall_clock",
]


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's hold on a run: it alone may append to the run while the epoch is current."""

    run_id: str
    owner: str
    """The worker id that holds the run (the runtime picks it, e.g. ``host:pid:random``)."""
    epoch: int
    """Raised by one at every acquire and claim; appends made with it are fenced by it."""
    expires_at: datetime
    """When the lease runs out unless renewed, by the store's clock (UTC)."""


@dataclass(frozen=True, slots=True)
class QueuedRun:
    """A run submitted for any worker to start."""

    run_id: str
    agent: str
    """The agent's name (``Agent.name``): only a worker that has an agent of that name runs it."""
    input: str
    caller_id: str | None
    submitted_at: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """A run a worker claimed: queued and not started yet, or started and left by its owner."""

    lease: Lease
    """The new lease, now the claimer's."""
    queued: QueuedRun | None
    """Set when the run has no events yet: the claimer starts it."""
    previous_owner: str | None
    """Who held the run before (None for a queued run never claimed)."""
    previous_expiry: datetime | None
    """When the previous owner's lease ran out."""
    agent: str
    """The run's agent name (a worker picks its agent by it)."""
    cancel_reason: str | None = None
    """The reason of a cancel requested before the claim (an empty text for no reason): the
    claimer applies it as the run starts."""


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """A run's lease as a reader sees it (resume, ``show --follow``, ``why``)."""

    run_id: str
    owner: str | None
    epoch: int
    expires_at: datetime | None
    live: bool
    """Whether ``expires_at`` is still in the future, by the store's clock."""
    cancel_reason: str | None
    """The reason of a pending cancel request, if there is one (an empty text for no reason)."""


@dataclass(frozen=True, slots=True)
class Renewal:
    """What a heartbeat learns: the extended lease, and whether someone asked to cancel."""

    lease: Lease
    cancel_reason: str | None
    """Set (possibly to an empty text) when a cancel was requested: apply it as a caller cancel."""


@runtime_checkable
class RunLeases(Protocol):
    """Ownership of runs, the work queue and cancel requests: what workers coordinate through."""

    def acquire(self, run_id: str, owner: str, ttl: float, *, force: bool = False) -> Lease:
        """Own a run: a new one (no lease yet), one whose lease expired, or (``force``) any.

        The same owner re-acquiring its own live lease also succeeds, with a new epoch.

        Raises:
            LeaseHeldError: another owner's lease on the run is live (and not ``force``).
        """
        ...

    def renew(self, lease: Lease, ttl: float) -> Renewal:
        """Extend our lease by ``ttl`` seconds from now.

        Raises:
            LeaseLostError: the run's epoch moved on (someone else owns it now).
        """
        ...

    def release(self, lease: Lease) -> None:
        """Give the run up (finished or stopped): it expires now, the owner stays for the record.

        A no-op when the epoch moved on. A finished run is never claimed again.
        """
        ...

    def claim(self, owner: str, ttl: float, limit: int, agents: Collection[str] | None = None) -> list[Claim]:
        """Take up to ``limit`` runs that need an owner, oldest first: queued runs not started
        yet (by submission time) and unfinished runs whose lease expired (by expiry); with
        ``agents``, only runs of agents of those names. No run is claimed by two callers."""
        ...

    def enqueue(self, agent: str, input: str, *, run_id: str, caller_id: str | None = None) -> QueuedRun:
        """Submit a run for any worker to claim.

        Raises:
            RunExistsError: a run (queued, leased or recorded) with that id exists.
        """
        ...

    def request_cancel(self, run_id: str, reason: str | None) -> None:
        """Ask the run's owner (or whoever claims it next) to cancel it.

        Raises:
            RunNotFoundError: no run, queued or recorded, has that id.
        """
        ...

    def lease_of(self, run_id: str) -> LeaseInfo | None:
        """The run's lease, or None when it was never leased (recorded before leases existed)."""
        ...

    def queued_runs(self, limit: int | None = 50) -> list[QueuedRun]:
        """Runs submitted and not started yet, oldest first."""
        ...

    def wait_for_work(self, timeout: float) -> None:
        """Block up to ``timeout`` seconds, or less once work may be there. Call off the loop."""
        ...


class LeasesThrough:
    """:class:`RunLeases` by handing each call to the store's lease keeper, ``self._leases``
    (what :class:`~executus.storage.MemoryStore` and the SQL store share)."""

    _leases: RunLeases

    def acquire(self, run_id: str, owner: str, ttl: float, *, force: bool = False) -> Lease:
        """See :meth:`RunLeases.acquire`."""
        return self._leases.acquire(run_id, owner, ttl, force=force)

    def renew(self, lease: Lease, ttl: float) -> Renewal:
        """See :meth:`RunLeases.renew`."""
        return self._leases.renew(lease, ttl)

    def release(self, lease: Lease) -> None:
        """See :meth:`RunLeases.release`."""
        self._leases.release(lease)

    def claim(self, owner: str, ttl: float, limit: int, agents: Collection[str] | None = None) -> list[Claim]:
        """See :meth:`RunLeases.claim`."""
        return self._leases.claim(owner, ttl, limit, agents)

    def enqueue(self, agent: str, input: str, *, run_id: str, caller_id: str | None = None) -> QueuedRun:
        """See :meth:`RunLeases.enqueue`."""
        return self._leases.enqueue(agent, input, run_id=run_id, caller_id=caller_id)

    def request_cancel(self, run_id: str, reason: str | None) -> None:
        """See :meth:`RunLeases.request_cancel`."""
        self._leases.request_cancel(run_id, reason)

    def lease_of(self, run_id: str) -> LeaseInfo | None:
        """See :meth:`RunLeases.lease_of`."""
        return self._leases.lease_of(run_id)

    def queued_runs(self, limit: int | None = 50) -> list[QueuedRun]:
        """See :meth:`RunLeases.queued_runs`."""
        return self._leases.queued_runs(limit)

    def wait_for_work(self, timeout: float) -> None:
        """See :meth:`RunLeases.wait_for_work`."""
        self._leases.wait_for_work(timeout)


def wall_clock() -> datetime:
    """The host's time: the clock of a store with no database to ask (inject another for tests)."""
    return datetime.now(UTC)  # noqa: TID251 - a store's clock, standing in for a database's


@dataclass(slots=True)
class _Row:
    owner: str | None
    epoch: int
    expires_at: datetime
    cancel_reason: str | None = None


class LeaseBook:
    """Leases, the queue and cancel requests in plain memory, under one lock.

    Args:
        now: the store's clock.
        run_state: the run's summary status (``running``, or how it ended), or None if the run
            has no events yet.
        run_agent: the agent name of a recorded run.
    """

    def __init__(
        self,
        now: Callable[[], datetime],
        run_state: Callable[[str], str | None],
        run_agent: Callable[[str], str],
    ) -> None:
        self._now = now
        self._run_state = run_state
        self._run_agent = run_agent
        self._rows: dict[str, _Row] = {}
        self._queue: dict[str, QueuedRun] = {}
        self._work = threading.Condition()

    def acquire(self, run_id: str, owner: str, ttl: float, *, force: bool = False) -> Lease:
        with self._work:
            now = self._now()
            row = self._rows.get(run_id)
            if row is not None and row.owner not in (None, owner) and row.expires_at > now and not force:
                raise LeaseHeldError(run_id, row.owner, row.expires_at)
            return self._take(run_id, row, owner, now + timedelta(seconds=ttl))

    def _take(self, run_id: str, row: _Row | None, owner: str, expires_at: datetime) -> Lease:
        if row is None:
            row = self._rows[run_id] = _Row(owner, 1, expires_at)
        else:
            row.owner, row.epoch, row.expires_at = owner, row.epoch + 1, expires_at
        return Lease(run_id, owner, row.epoch, expires_at)

    def renew(self, lease: Lease, ttl: float) -> Renewal:
        with self._work:
            row = self.fence(lease.run_id, lease.epoch)
            row.expires_at = self._now() + timedelta(seconds=ttl)
            return Renewal(Lease(lease.run_id, lease.owner, lease.epoch, row.expires_at), row.cancel_reason)

    def fence(self, run_id: str, epoch: int) -> _Row:
        """The run's lease row if its epoch is ``epoch``; else :class:`LeaseLostError`."""
        row = self._rows.get(run_id)
        if row is None or row.epoch != epoch:
            raise LeaseLostError(run_id, epoch, None if row is None else row.owner)
        return row

    def release(self, lease: Lease) -> None:
        with self._work:
            row = self._rows.get(lease.run_id)
            if row is not None and row.epoch == lease.epoch:
                row.expires_at = self._now()

    def claim(self, owner: str, ttl: float, limit: int, agents: Collection[str] | None = None) -> list[Claim]:
        with self._work:
            now = self._now()
            due: list[tuple[datetime, str, _Row, QueuedRun | None, str]] = []
            for run_id, row in self._rows.items():
                if row.expires_at > now:
                    continue
                queued = self._queue.get(run_id)
                if queued is None and self._run_state(run_id) != "running":
                    continue  # finished, or leased by a caller that never started it
                agent = queued.agent if queued is not None else self._run_agent(run_id)
                if agents is None or agent in agents:
                    due.append((row.expires_at, run_id, row, queued, agent))
            due.sort(key=lambda candidate: (candidate[0], candidate[1]))
            expires_at = now + timedelta(seconds=ttl)
            claims = []
            for _, run_id, row, queued, agent in due[: max(limit, 0)]:
                previous_owner, previous_expiry = row.owner, row.expires_at
                lease = self._take(run_id, row, owner, expires_at)
                claims.append(
                    Claim(
                        lease,
                        queued,
                        previous_owner,
                        None if previous_owner is None else previous_expiry,
                        agent,
                        row.cancel_reason,
                    )
                )
            return claims

    def enqueue(self, agent: str, input: str, *, run_id: str, caller_id: str | None = None) -> QueuedRun:
        with self._work:
            if run_id in self._queue or run_id in self._rows or self._run_state(run_id) is not None:
                raise RunExistsError(run_id)
            now = self._now()
            queued = QueuedRun(run_id, agent, input, caller_id, now)
            self._queue[run_id] = queued
            # Due at once: a queued run's lease row has no owner and expires when submitted.
            self._rows[run_id] = _Row(None, 0, now)
            self._work.notify_all()
            return queued

    def started(self, run_id: str) -> None:
        """The run's ``run_started`` was appended: it leaves the queue."""
        with self._work:
            self._queue.pop(run_id, None)

    def request_cancel(self, run_id: str, reason: str | None) -> None:
        with self._work:
            row = self._rows.get(run_id)
            if row is None:
                if self._run_state(run_id) is None:
                    raise RunNotFoundError(run_id)
                # A run recorded without a lease: the request waits for whoever acquires it.
                row = self._rows[run_id] = _Row(None, 0, self._now())
            row.cancel_reason = reason or ""

    def lease_of(self, run_id: str) -> LeaseInfo | None:
        with self._work:
            row = self._rows.get(run_id)
            if row is None:
                return None
            live = row.owner is not None and row.expires_at > self._now()
            return LeaseInfo(
                run_id,
                row.owner,
                row.epoch,
                row.expires_at if row.owner is not None else None,
                live,
                row.cancel_reason,
            )

    def queued_runs(self, limit: int | None = 50) -> list[QueuedRun]:
        with self._work:
            pending = sorted(self._queue.values(), key=lambda queued: (queued.submitted_at, queued.run_id))
            return pending if limit is None else pending[:limit]

    def wait_for_work(self, timeout: float) -> None:
        with self._work:
            self._work.wait(max(timeout, 0.0))
