"""Workers: processes that claim queued and orphaned runs from a shared store and run them.

A :class:`Worker` has agents (by name) and a concurrency limit. It loops: claim up to as many
runs as it has free slots (:meth:`~executus.storage.RunLeases.claim`: queued runs, and runs
whose owner's lease expired), start the queued ones and resume the orphaned ones, and between
claims wait for work off the event loop (PostgreSQL: LISTEN/NOTIFY; otherwise a poll). Many
workers on many hosts share one database; leases and fenced appends make sure each run has one
owner at a time.

:func:`enqueue` submits a run for any worker to pick up.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable
from typing import Any, Final

from executus._agent import Agent, Invocation, Result
from executus._clock import IdGenerator, RandomIds
from executus._errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    LeaseLostError,
    RecordingFailedError,
)
from executus._executor import Executor
from executus._leases import Claim, RunLeases
from executus._ownership import HandedOverError, Takeover, cancellation_requested
from executus._store import EventStore

__all__ = ["Worker", "enqueue"]

logger = logging.getLogger("executus")

_POLL_INTERVAL: Final = 0.5
"""Seconds between claims when nothing announces work: an expired lease is found by polling."""


def enqueue(
    store: EventStore,
    agent: Agent | str,
    input: str,
    caller_id: str | None = None,
    *,
    run_id: str | None = None,
    ids: IdGenerator | None = None,
) -> str:
    """Submit a run of ``agent`` (an agent or its name) on ``input`` for any worker to run.

    Returns:
        The new run's id: follow it with ``executus show RUN --follow``.

    Raises:
        ConfigurationError: the store keeps no work queue.
        StoreError: a run with that id exists.
    """
    leases = _leases_of(store)
    new_id = run_id or (ids or RandomIds()).new_run_id()
    name = agent.name if isinstance(agent, Agent) else agent
    leases.enqueue(name, input, run_id=new_id, caller_id=caller_id)
    return new_id


def _leases_of(store: EventStore) -> RunLeases:
    if not isinstance(store, RunLeases):
        raise ConfigurationError(f"{type(store).__name__} keeps no leases or work queue; workers need one")
    return store


class Worker:
    """Claims and runs the queued and orphaned runs of its agents, ``concurrency`` at a time.

    Args:
        store: the shared store (it must keep leases: :class:`~executus.storage.RunLeases`).
        agents: the agents this worker runs; it claims only runs of agents of these names.
        concurrency: how many runs it drives at once.
        executor: the executor that runs them (its worker id and lease time are the worker's);
            by default one on ``store`` with ``worker_id`` and ``lease_ttl``.
        poll_interval: seconds between claims when there is no sign of work (a store that can
            announce work, PostgreSQL, wakes the worker sooner).

    Shutting down (:meth:`stop`, or SIGTERM/SIGINT under :meth:`run_until_signalled`): the
    worker stops claiming, stops the runs it drives where they are, *without* recording an
    end, and releases their leases, so that another worker (or this one, restarted) resumes
    them at once; their logs then show who took them over and what was interrupted. Cancelling
    them instead would end runs for good only because a process was redeployed.
    """

    def __init__(
        self,
        store: EventStore,
        agents: Iterable[Agent],
        *,
        concurrency: int = 4,
        executor: Executor | None = None,
        worker_id: str | None = None,
        lease_ttl: float = 30.0,
        poll_interval: float = _POLL_INTERVAL,
    ) -> None:
        self._leases = _leases_of(store)
        self.agents: dict[str, Agent] = {}
        for agent in agents:
            if agent.name in self.agents and self.agents[agent.name] is not agent:
                raise ConfigurationError(f"two agents are named {agent.name!r}")
            self.agents[agent.name] = agent
        if not self.agents:
            raise ConfigurationError("a worker needs at least one agent")
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        self.store = store
        self.concurrency = concurrency
        self.executor = executor or Executor(store, worker_id=worker_id, lease_ttl=lease_ttl)
        self.poll_interval = poll_interval
        self._runs: dict[str, asyncio.Task[Result | None]] = {}
        self._stopping = asyncio.Event()

    @property
    def worker_id(self) -> str:
        return self.executor.worker_id

    def stop(self) -> None:
        """Stop claiming and hand the runs in progress over (see the class docstring)."""
        self._stopping.set()

    async def run_until_signalled(self, ready: Callable[[], None] | None = None) -> None:
        """:meth:`run` until SIGTERM or SIGINT, then shut down cleanly.

        Args:
            ready: called once the signals are handled (a process announcing it is up).
        """
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        if ready is not None:
            ready()
        try:
            await self.run()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    async def run(self) -> None:
        """Claim and run work until :meth:`stop`; then hand the runs in progress over."""
        waiting: asyncio.Future[None] | None = None
        try:
            while not self._stopping.is_set():
                free = self.concurrency - len(self._runs)
                claims = await self._claim(free) if free > 0 else []
                for claim in claims:
                    self._start(claim)
                if free > 0 and len(claims) == free:
                    continue  # there may be more
                if waiting is None and len(self._runs) < self.concurrency:
                    waiting = asyncio.ensure_future(
                        asyncio.to_thread(self._leases.wait_for_work, self.poll_interval)
                    )
                stop = asyncio.ensure_future(self._stopping.wait())
                watched: set[asyncio.Future[Any]] = {stop, *self._runs.values()}
                if waiting is not None:
                    watched.add(waiting)
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                if waiting is not None and waiting.done():
                    failed, waiting = waiting.exception(), None
                    if failed is not None:  # the database is away: try again in a while
                        logger.warning("worker %s: waiting for work failed: %s", self.worker_id, failed)
                        await asyncio.sleep(self.poll_interval)
        finally:
            await self._hand_over()
            if waiting is not None:
                await asyncio.gather(waiting, return_exceptions=True)

    async def _claim(self, limit: int) -> list[Claim]:
        try:
            return await asyncio.to_thread(
                self._leases.claim, self.worker_id, self.executor.lease_ttl, limit, tuple(self.agents)
            )
        except Exception as error:
            logger.warning("worker %s: claiming runs failed: %s", self.worker_id, error)
            return []

    def _start(self, claim: Claim) -> None:
        run_id = claim.lease.run_id
        task = asyncio.get_running_loop().create_task(self._drive(claim), name=f"executus-worker-{run_id}")
        self._runs[run_id] = task
        task.add_done_callback(lambda _: self._runs.pop(run_id, None))

    async def _drive(self, claim: Claim) -> Result | None:
        run_id = claim.lease.run_id
        executor = self.executor
        # A cancel requested before the claim is applied as the run starts.
        cancellation = cancellation_requested(claim.cancel_reason)
        try:
            agent = self.agents[claim.agent]
            queued = claim.queued
            if queued is not None:
                invocation = Invocation(run_id=run_id, caller_id=queued.caller_id, cancellation=cancellation)
                return await executor._run_leased(agent, invocation, queued.input, run_id, claim.lease)
            takeover = Takeover(claim.previous_owner, claim.previous_expiry)
            logger.info("worker %s: resuming run %s (was %s's)", self.worker_id, run_id, claim.previous_owner)
            invocation = Invocation(cancellation=cancellation)
            return await executor._resume_leased(run_id, agent, invocation, claim.lease, takeover)
        except LeaseLostError as lost:
            logger.warning("worker %s: %s", self.worker_id, lost)
        except HandedOverError:
            pass
        except RecordingFailedError as failed:
            logger.error("worker %s: run %s could not be recorded: %s", self.worker_id, run_id, failed)
        except DatabaseUnavailableError as away:  # the run was given back: it is claimed again
            logger.warning("worker %s: run %s could not be taken up: %s", self.worker_id, run_id, away)
        except Exception:
            logger.exception("worker %s: run %s failed", self.worker_id, run_id)
        return None

    async def _hand_over(self) -> None:
        # A run still setting up is not among the executor's active runs yet: ask again until
        # every run has stopped.
        while self._runs:
            for run_id in list(self._runs):
                driver = self.executor._active.get(run_id)
                if driver is not None:
                    driver.hand_over()
            await asyncio.wait(list(self._runs.values()), timeout=0.05)
