"""A run's ownership at runtime: taking its lease, the heartbeat that keeps it, and giving it up.

On a store that keeps leases (:class:`~executus.storage.RunLeases`), every run an executor drives
is owned: the executor takes the run's lease before the first event, every append is fenced by
the lease's epoch, and a :class:`Heartbeat` renews the lease every third of its time to live,
on the run's clock, through the write port (so a slow database never blocks the event loop).
The heartbeat also carries cancel requests from other processes (``executus cancel``) back to
the run, and notices when the lease was lost (another worker claimed the run after this one
paused past its lease): the run then stops where it is, with nothing more written or started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from executus._agent import Cancellation
from executus._clock import Clock, RandomIds
from executus._errors import ExecutusError, LeaseLostError
from executus._leases import Lease, RunLeases
from executus._store import EventStore, EventWriter, LeaseWriter
from executus._weak import weakly

__all__ = [
    "DEFAULT_LEASE_TTL",
    "HandedOverError",
    "Heartbeat",
    "Takeover",
    "cancellation_requested",
    "default_worker_id",
    "lease_port",
]

logger = logging.getLogger("executus")

DEFAULT_LEASE_TTL = 30.0
"""Seconds a run's lease lasts unless renewed: how long a dead worker's runs wait for recovery."""


class HandedOverError(ExecutusError):
    """A run was stopped here without ending, and its lease released, for another worker to
    resume it (a worker shutting down). Nothing was recorded: the log shows it interrupted."""


def default_worker_id() -> str:
    """``host:pid:random``: unique per process, and says where to look for a run's owner.

    The random part is not drawn from the executor's injected id generator, so that a test's
    :class:`~executus.SequentialIds` still numbers the runs from ``run-0001``.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{RandomIds().new_run_id()[:8]}"


def lease_port(store: EventStore, writer: EventWriter) -> LeaseWriter | None:
    """How an executor takes, renews and gives up leases: through its write port, when both the
    store keeps leases and the port serves them (a writer that knows nothing of leases cannot
    fence its appends either). None: runs are not owned."""
    if isinstance(store, RunLeases) and isinstance(writer, LeaseWriter):
        return writer
    return None


@dataclass(frozen=True, slots=True)
class Takeover:
    """What a resume records about whom it took the run from."""

    previous_owner: str | None = None
    lease_expired_at: datetime | None = None
    forced: bool = False


CANCEL_REQUESTED = "cancel requested"
"""The detail of a requested cancel that gave no reason."""


def cancellation_requested(reason: str | None) -> Cancellation | None:
    """A cancellation already cancelled with a pending request's reason (None: no request)."""
    if reason is None:
        return None
    cancellation = Cancellation()
    cancellation.cancel(reason or CANCEL_REQUESTED)
    return cancellation


class Heartbeat:
    """Renews a run's lease every ``ttl / 3`` seconds on the run's clock until stopped.

    Args:
        port: the lease port.
        lease: the run's lease (just acquired or claimed).
        ttl: seconds each renewal extends the lease by.
        clock: the run's clock (its sleep is what the heartbeat waits on).
        on_cancel: called once with the reason of a cancel request a renewal reported.
        on_lost: called once when a renewal says the lease was lost; the heartbeat then stops.
    """

    def __init__(
        self,
        port: LeaseWriter,
        lease: Lease,
        ttl: float,
        clock: Clock,
        on_cancel: Callable[[str], None],
        on_lost: Callable[[LeaseLostError], None],
    ) -> None:
        self.lease = lease
        self._port = port
        self._ttl = ttl
        self._clock = clock
        # Held weakly, as the watchdog timer holds its method: driver -> heartbeat -> method ->
        # driver would be a cycle, and a finished run would wait for a full collection.
        self._on_cancel = weakly(on_cancel)
        self._on_lost = weakly(on_lost)
        self._cancel_reported = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._beat(), name=f"executus-heartbeat-{self.lease.run_id}"
        )

    async def stop(self) -> None:
        """Stop renewing, and wait until no renewal is under way."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _beat(self) -> None:
        while True:
            await self._clock.sleep(self._ttl / 3)
            try:
                renewal = await self._port.renew(self.lease, self._ttl)
            except LeaseLostError as lost:
                on_lost = self._on_lost()
                if on_lost is not None:
                    on_lost(lost)
                return
            except Exception as error:
                # The database may be back before the lease runs out; if not, the next renewal
                # or the next append says the lease was lost.
                logger.warning("run %s: renewing its lease failed: %s", self.lease.run_id, error)
                continue
            self.lease = renewal.lease
            on_cancel = self._on_cancel()
            if renewal.cancel_reason is not None and not self._cancel_reported and on_cancel is not None:
                self._cancel_reported = True
                on_cancel(renewal.cancel_reason or CANCEL_REQUESTED)
