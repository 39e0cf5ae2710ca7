"""The executor: the public entry point that runs agents and records every run as an event log.

Each run is driven by a :class:`~executus._driver.RunDriver`: a pure core
(:mod:`executus._core`) decides, from the run's state and one input at a time, which events to
record and what to do next; the driver performs that and reports back. Events are committed
through an :class:`~executus.storage.EventWriter` before any side effect they precede starts, so a
process that dies mid-run leaves a log that says what was in flight, and :meth:`Executor.resume`
can carry on from it.

Secrets are redacted at the write port, by default: the writer the executor records through is
wrapped in a :class:`~executus.RedactingWriter` with the built-in detectors, so the store only
ever receives, hashes and keeps placeholders, while the run's own state (what the model and the
tools see) keeps the real values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import importlib.metadata
from collections.abc import Callable, Mapping
from typing import Final, Literal, Self

from executus._agent import Agent, BudgetPort, DeliveryPort, Invocation, Result
from executus._clock import Clock, IdGenerator, RandomIds, SystemClock, VirtualClock
from executus._driver import RunDriver, Runtime
from executus._errors import RunNotResumableError
from executus._events import Event
from executus._leases import Lease, RunLeases
from executus._model import Model, ModelRegistry, ModelResolver
from executus._ownership import (
    DEFAULT_LEASE_TTL,
    Takeover,
    cancellation_requested,
    default_worker_id,
    lease_port,
)
from executus._redact import Redactor
from executus._redacting import RedactingStore, RedactingWriter
from executus._state import rebuild
from executus._store import EventStore, EventWriter, InlineWriter, LeaseWriter, MemoryStore

__all__ = ["EXECUTOR_VERSION", "Executor"]

EXECUTOR_VERSION: Final = importlib.metadata.version("executus")
"""Recorded in ``run_started`` and ``run_resumed``; pyproject.toml is its one source (replay
compares runs across versions, so it never counts as a difference)."""


class _Default(enum.Enum):
    REDACTION = "the built-in detectors, unless the store or writer given already redacts"


BUILT_IN_REDACTION: Final = _Default.REDACTION


class Executor:
    """Runs agents and records each run as an event log.

    Args:
        store: where runs are recorded; an in-memory store by default.
        models: resolves an agent's model name to a model (a mapping or any callable).
        clock: time and waiting; :class:`SystemClock` by default, :class:`VirtualClock` for
            tests and replay.
        ids: run ids; random by default.
        budget: charged with each run's duration after it ends.
        delivery: receives each finished run's artifacts.
        on_event: called with every event of every run (child runs too) as it is recorded, in
            seq order, on the event loop's thread: redacted, as the store keeps it. The event
            is already in the run's state, and is committed before the run next starts
            anything; an exception is logged and ignored. This is where a live view or a
            metrics exporter listens.
        writer: the write port runs are recorded through. By default the store's own writer
            (``store.writer()``, e.g. a SQL store's writer thread), or the store's ``append``
            called inline when the store has no writer or the clock is a :class:`VirtualClock`
            (whose runs must not depend on when another thread commits).
        redaction: what redacts every batch before ``writer`` gets it. By default a
            :class:`Redactor` with the built-in detectors, keyed by ``$EXECUTUS_REDACTION_KEY``
            (else a public default key), unless ``store`` is a :class:`RedactingStore` or
            ``writer`` a :class:`RedactingWriter`, whose redactor (its key, its rules) then does
            it alone. A :class:`Redactor` of your own (a key, user rules) replaces the default.
            ``None`` records values verbatim: for tests and benchmarks only.
        worker_id: the owner this executor's runs are leased to, on a store that keeps leases
            (:class:`~executus.storage.RunLeases`); ``host:pid:random`` by default.
        lease_ttl: seconds a run's lease lasts unless renewed; the heartbeat renews it every
            third of that. A worker that dies leaves its runs to others after at most this long.

    Ownership: on a store that keeps leases, every run is owned. The executor takes the run's
    lease before its first event, fences every append with the lease's epoch, renews the lease
    on the run's clock, applies cancel requests from other processes (``executus cancel``) as a
    caller cancel, and releases the lease when the run ends. If another worker takes the run
    over (this process paused past its lease), the run stops here at once and ``run`` or
    ``resume`` raises :class:`~executus.LeaseLostError`.
    """

    version: str = EXECUTOR_VERSION

    def __init__(
        self,
        store: EventStore | None = None,
        *,
        models: ModelResolver | Mapping[str, Model] | None = None,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        budget: BudgetPort | None = None,
        delivery: DeliveryPort | None = None,
        on_event: Callable[[Event], None] | None = None,
        writer: EventWriter | None = None,
        redaction: Redactor | Literal[_Default.REDACTION] | None = BUILT_IN_REDACTION,
        worker_id: str | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
    ) -> None:
        self.store: EventStore = store if store is not None else MemoryStore()
        self._resolve: ModelResolver = (
            ModelRegistry(models) if isinstance(models, Mapping) else models or ModelRegistry()
        )
        # A resolver made here is the executor's to close; one passed in is its owner's.
        self._own_registry = self._resolve if self._resolve is not models else None
        self.clock: Clock = clock or SystemClock()
        self.ids: IdGenerator = ids or RandomIds()
        self._budget = budget
        self._delivery = delivery
        self._on_event = on_event
        # The default writer of a RedactingStore (its RedactingWriter, or an InlineWriter over
        # it) redacts already, under the caller's key and rules.
        redacts_already = isinstance(writer, RedactingWriter) or (
            writer is None and isinstance(self.store, RedactingStore)
        )
        chosen = writer if writer is not None else self._default_writer()
        self.writer: EventWriter = self._redacting(chosen, redaction, redacts_already)
        self._active: dict[str, RunDriver] = {}
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be positive seconds, got {lease_ttl}")
        self.worker_id: str = worker_id or default_worker_id()
        self.lease_ttl = lease_ttl
        # The redacting wrapper passes leases through only to a port that serves them.
        self._leases = lease_port(self.store, self.writer) if isinstance(chosen, LeaseWriter) else None

    def _default_writer(self) -> EventWriter:
        make_writer: Callable[[], EventWriter] | None = getattr(self.store, "writer", None)
        if isinstance(self.clock, VirtualClock) and isinstance(self.store, RedactingStore):
            return self.store.inline_writer()  # redacting before the store: on_event hears that
        if isinstance(self.clock, VirtualClock) or make_writer is None:
            return InlineWriter(self.store)
        return make_writer()

    def _redacting(
        self,
        writer: EventWriter,
        redaction: Redactor | Literal[_Default.REDACTION] | None,
        redacts_already: bool,
    ) -> EventWriter:
        if redaction is BUILT_IN_REDACTION:
            if redacts_already:
                return writer  # a default-keyed pass first would fingerprint every secret
            redaction = Redactor()
        if redaction is None:
            return writer
        return RedactingWriter(writer, redaction, read_run=self.store.read_run)

    async def run(self, agent: Agent, invocation: Invocation | None, input: str) -> Result:
        """Run ``agent`` on ``input`` until it answers, fails, times out, is cancelled or killed.

        Cancelling the awaiting task cancels the run: the cancellation is recorded, the
        session's post-run hook still runs, and then ``CancelledError`` propagates. Use
        ``Invocation(cancellation=...)`` to cancel and still receive the :class:`Result`.

        Raises:
            ConfigurationError: the clock cannot run on this event loop.
            RecordingFailedError: the run could not be recorded: it was stopped (nothing
                started that the log does not show), its session cleaned up and the ports
                called; the log stays valid up to the seq the error names.
            LeaseHeldError: ``invocation.run_id`` names a run another worker owns.
            LeaseLostError: another worker took the run over (this process paused past its
                lease); the run was stopped here at once, with nothing more written or started.
        """
        self.clock.check_loop()
        invocation = invocation or Invocation()
        run_id = invocation.run_id or self.ids.new_run_id()
        lease = None
        if self._leases is not None:
            lease = await self._leases.acquire(run_id, self.worker_id, self.lease_ttl)
        return await self._run_leased(agent, invocation, input, run_id, lease)

    async def _run_leased(
        self, agent: Agent, invocation: Invocation, input: str, run_id: str, lease: Lease | None
    ) -> Result:
        """Start a run whose lease is taken already (a worker's claim of a queued run)."""
        driver = RunDriver(self._runtime(), agent, invocation, run_id, lease=lease)
        return await driver.run(input)

    def run_sync(self, agent: Agent, invocation: Invocation | None, input: str) -> Result:
        """Run an agent from synchronous code, on an event loop the executor's clock can drive.

        The loop ends with the call, so the adapters made for it are closed (:meth:`aclose`).
        """
        return self.clock.run(self._run_and_close(agent, invocation, input))

    async def _run_and_close(self, agent: Agent, invocation: Invocation | None, input: str) -> Result:
        try:
            return await self.run(agent, invocation, input)
        finally:
            await self.aclose()

    async def resume(
        self, run_id: str, agent: Agent, invocation: Invocation | None = None, *, force: bool = False
    ) -> Result:
        """Carry on an interrupted run (one whose log has no ``run_finished``) from its log.

        A model call in flight is made again (it has no side effects). A tool call in flight is
        recorded as failed with error type ``Interrupted``, and a call of a sequential batch
        that had not started as ``NotStarted``; the model decides what to do: tools may have
        side effects, so they are never re-run behind the model's back, unless declared
        idempotent (``@tool(idempotent=True)``): those are run again.

        On a store that keeps leases, the run's lease is taken first: a run another worker owns
        (its lease is live) is refused, unless ``force`` (then that worker's next append fails
        and it stops the run there). ``run_resumed`` records who took the run from whom.

        Raises:
            RunNotFoundError: no such run.
            RunNotResumableError: the run already finished.
            LeaseHeldError: another worker's lease on the run is live (and not ``force``).
            RecordingFailedError, LeaseLostError: as for :meth:`run`.
        """
        self.clock.check_loop()
        takeover, lease = Takeover(), None
        leases = self.store if isinstance(self.store, RunLeases) else None
        if leases is not None and self._leases is not None:
            # Off the loop: a database that is away must not stall the other runs' heartbeats.
            summary = await self.clock.run_blocking(lambda: self.store.get_run(run_id))
            if summary.status != "running":  # RunNotFoundError above: before any lease is taken
                raise RunNotResumableError(run_id, summary.status)
            info = await self.clock.run_blocking(lambda: leases.lease_of(run_id))
            lease = await self._leases.acquire(run_id, self.worker_id, self.lease_ttl, force=force)
            if info is not None and info.owner is not None and info.owner != self.worker_id:
                takeover = Takeover(info.owner, None if info.live else info.expires_at, forced=info.live)
            requested = cancellation_requested(info.cancel_reason if info is not None else None)
            if requested is not None:
                invocation = dataclasses.replace(invocation or Invocation(), cancellation=requested)
        return await self._resume_leased(run_id, agent, invocation, lease, takeover)

    async def _resume_leased(
        self,
        run_id: str,
        agent: Agent,
        invocation: Invocation | None,
        lease: Lease | None,
        takeover: Takeover | None = None,
    ) -> Result:
        """Resume a run whose lease is taken already (a worker's claim of an orphaned run)."""
        try:
            state = rebuild(await self.clock.run_blocking(lambda: self.store.read_run(run_id)))
            if state.finished:
                raise RunNotResumableError(run_id, state.status)
        except BaseException:
            # Give the run back at once rather than hold it, unstarted, for a whole lease (a
            # database that was away: the claim committed, this read did not).
            if lease is not None and self._leases is not None:
                with contextlib.suppress(Exception):
                    await self._leases.release(lease)
            raise
        invocation = dataclasses.replace(
            invocation or Invocation(),
            run_id=run_id,
            caller_id=state.caller_id,
            parent_run_id=state.parent_run_id,
        )
        driver = RunDriver(
            self._runtime(), agent, invocation, run_id, state=state, lease=lease, takeover=takeover
        )
        return await driver.run(state.input)

    def _runtime(self) -> Runtime:
        return Runtime(
            store=self.store,
            writer=self.writer,
            clock=self.clock,
            ids=self.ids,
            resolve=self._resolve,
            version=self.version,
            on_event=self._on_event,
            budget=self._budget,
            delivery=self._delivery,
            active=self._active,
            run_child=self.run,
            leases=self._leases,
            worker_id=self.worker_id,
            lease_ttl=self.lease_ttl,
        )

    async def shutdown(self, detail: str = "the executor is shutting down") -> None:
        """Cancel every active run (cause ``shutdown``), wait until each is recorded as ended,
        and close the model adapters the executor made (:meth:`aclose`)."""
        runs = list(self._active.values())
        for driver in runs:
            driver.shut_down(detail)
        for driver in runs:
            await driver.finished.wait()
        await self.aclose()

    async def aclose(self) -> None:
        """Close the model adapters the executor's own resolver made from names such as
        ``openai:gpt-4.1-mini`` (their HTTP connections); a later run makes new ones.

        A resolver passed as ``models=`` (a :class:`ModelRegistry` or any callable) and model
        objects given to agents belong to the caller, who closes them.
        """
        if isinstance(self._own_registry, ModelRegistry):
            await self._own_registry.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Shut down: cancel runs still going (none, unless the block raised) and close adapters."""
        await self.shutdown("the executor's context exited")
