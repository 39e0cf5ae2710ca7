"""The event-store contract, the run summary projection, and the in-memory store.

Stores are IO and live at the edges (``store/`` holds the SQL one); this module holds only
what every store shares: the protocol the executor appends through, the pure projection from
events to a run's summary row, the hash chain, and a store in plain memory that keeps the
core usable and testable with no database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, TypeAlias, runtime_checkable

from executus._errors import (
    BlobNotFoundError,
    ConcurrencyError,
    EventOrderError,
    RunNotFoundError,
    StoreError,
)
from executus._events import (
    ENVELOPE_KEYS,
    Event,
    RunStatus,
    body_object,
    canonical_json,
    encode_event,
    refuse_envelope_keys,
    sha256_hex,
    utc_json,
)
from executus._leases import (
    Claim,
    Lease,
    LeaseBook,
    LeaseInfo,
    LeasesThrough,
    QueuedRun,
    Renewal,
    RunLeases,
    wall_clock,
)

__all__ = [
    "Blob",
    "Claim",
    "EventSink",
    "EventStore",
    "EventWriter",
    "InlineWriter",
    "Lease",
    "LeaseInfo",
    "LeaseWriter",
    "MemoryStore",
    "QueuedRun",
    "Renewal",
    "RunLeases",
    "RunQuery",
    "RunSummary",
    "chain_hash",
    "check_batch",
    "event_json",
    "event_json_and_body",
    "event_json_from_body",
    "summarize",
    "summarize_batch",
]

SummaryStatus: TypeAlias = Literal["running"] | RunStatus
GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of every run's first event."""


@dataclass(frozen=True, slots=True)
class Blob:
    """Content stored once by its sha256: an image or an artifact."""

    sha256: str
    media_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One row per run: what listing and filtering runs needs, kept in step with the events."""

    run_id: str
    agent: str
    model: str
    caller_id: str | None
    parent_run_id: str | None
    status: SummaryStatus
    started_at: datetime
    finished_at: datetime | None
    steps: int
    input_tokens: int
    output_tokens: int
    end_cause: str | None
    """Why the run ended, in one line (None while running)."""
    last_seq: int
    last_event_at: datetime
    head_hash: str
    """Hash of the run's last event: the tip of its hash chain."""


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Filters for listing runs; runs come newest first."""

    status: SummaryStatus | None = None
    agent: str | None = None
    caller_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = 50


def event_json(event: Event) -> str:
    """The canonical stored text of an event: what its hash covers."""
    return canonical_json(encode_event(event))


def event_json_and_body(event: Event) -> tuple[str, str]:
    """The event's canonical text (what its hash covers) and its body's: the same JSON without
    the envelope keys (``run_id``, ``seq``, ``kind``, ``schema_version``, ``at``).

    A store that keeps the envelope in columns stores only the body; :func:`event_json_from_body`
    gives the full text back.
    """
    data = encode_event(event)
    full = canonical_json(data)
    for key in ENVELOPE_KEYS:
        del data[key]
    return full, canonical_json(data)


def event_json_from_body(
    body: str, run_id: str, seq: int, kind: str, schema_version: int, at: datetime
) -> str:
    """An event's canonical text, rebuilt from its body's and its envelope's values.

    Exactly :func:`event_json` of the event the body came from: canonical JSON parses back to
    the same values and encodes to the same text, and ``at`` has one text per instant.

    Raises:
        UnknownEventError: the body is not a JSON object, or repeats an envelope field (the
            text rebuilt would not be what a reader decodes).
    """
    data = body_object(body)
    refuse_envelope_keys(data)
    data.update(run_id=run_id, seq=seq, kind=kind, schema_version=schema_version, at=utc_json(at))
    return canonical_json(data)


def chain_hash(prev_hash: str, payload_json: str) -> str:
    """The hash of an event: sha256 over the previous event's hash and this event's stored text."""
    return sha256_hex(f"{prev_hash}\n{payload_json}")


def summarize(summary: RunSummary | None, event: Event, head_hash: str) -> RunSummary:
    """Project one more event onto a run's summary row (pure; stores call it inside the append)."""
    return summarize_batch(summary, (event,), head_hash)


def summarize_batch(summary: RunSummary | None, events: Sequence[Event], head_hash: str) -> RunSummary:
    """Project a batch of events onto a run's summary row: exactly :func:`summarize` applied to
    each event in turn, with one row built for the batch instead of one per event.

    Args:
        summary: the run's row before the batch (None: the batch starts the run).
        events: at least one event, in seq order.
        head_hash: the hash of the batch's last event.

    Raises:
        EventOrderError: the run has no row and the batch does not begin with run_started.
    """
    first = events[0]
    if summary is None:
        if first.kind != "run_started":
            raise EventOrderError(first.run_id, f"a run must begin with run_started, got {first.kind}")
        run_id, agent, model = first.run_id, first.agent.name, first.agent.model
        caller_id, parent_run_id, started_at = first.caller_id, first.parent_run_id, first.at
        status: SummaryStatus = "running"
        finished_at: datetime | None = None
        steps = input_tokens = output_tokens = 0
        end_cause: str | None = None
        rest = events[1:]
    else:
        run_id, agent, model = summary.run_id, summary.agent, summary.model
        caller_id, parent_run_id, started_at = summary.caller_id, summary.parent_run_id, summary.started_at
        status, finished_at, end_cause = summary.status, summary.finished_at, summary.end_cause
        steps, input_tokens, output_tokens = summary.steps, summary.input_tokens, summary.output_tokens
        rest = events
    for event in rest:
        if event.kind == "model_requested":
            steps = event.step
        elif event.kind == "model_responded":
            input_tokens += event.usage.input_tokens
            output_tokens += event.usage.output_tokens
        elif event.kind == "run_cancelled":
            end_cause = f"{event.cause}: {event.detail}" if event.detail else event.cause
        elif event.kind == "run_finished":
            status = event.status
            finished_at = event.at
            if end_cause is None:
                end_cause = "final answer" if event.status == "ok" else str(event.error)
    last = events[-1]
    # Spelled out rather than dataclasses.replace, which costs more than the rest of an append
    # to the in-memory store.
    return RunSummary(
        run_id=run_id,
        agent=agent,
        model=model,
        caller_id=caller_id,
        parent_run_id=parent_run_id,
        status=status,
        started_at=started_at,
        finished_at=finished_at,
        steps=steps,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        end_cause=end_cause,
        last_seq=last.seq,
        last_event_at=last.at,
        head_hash=head_hash,
    )


def check_batch(run_id: str, events: Sequence[Event], expected_seq: int) -> None:
    """Refuse a batch that is not this run's next events in order (a caller bug, not a race)."""
    for offset, event in enumerate(events, start=1):
        if event.run_id != run_id:
            raise EventOrderError(run_id, f"event seq {event.seq} belongs to run {event.run_id}")
        if event.seq != expected_seq + offset:
            raise EventOrderError(
                run_id,
                f"append after seq {expected_seq} must continue at {expected_seq + offset}, got {event.seq}",
            )


@runtime_checkable
class EventSink(Protocol):
    """What the executor records through."""

    def append(
        self, run_id: str, events: Sequence[Event], expected_seq: int, *, epoch: int | None = None
    ) -> None:
        """Append ``events`` (seq ``expected_seq + 1`` onwards) atomically: all or nothing.

        With ``epoch``, the append is fenced: it commits only if the run's lease still has that
        epoch (see :class:`RunLeases`). Without, it is not (imports, tests, unleased runs).

        Raises:
            ConcurrencyError: the run's log does not end at ``expected_seq``; nothing written.
            LeaseLostError: the run's lease epoch is not ``epoch``; nothing written.
        """
        ...

    def put_blob(self, data: bytes, media_type: str) -> str:
        """Store content once by its sha256 and return the hex digest."""
        ...


@runtime_checkable
class EventStore(EventSink, Protocol):
    """A sink that can also be read: what rebuild, resume, replay and the CLI need."""

    def read_run(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """A run's events in seq order, after ``after_seq``.

        Raises:
            RunNotFoundError: there is no such run.
        """
        ...

    def get_run(self, run_id: str) -> RunSummary:
        """A run's summary row. Raises :class:`RunNotFoundError`."""
        ...

    def list_runs(self, query: RunQuery = RunQuery()) -> list[RunSummary]:
        """Summaries of the runs that match, newest first."""
        ...

    def get_blob(self, sha256: str) -> Blob:
        """Stored content by hash. Raises :class:`BlobNotFoundError`."""
        ...


@runtime_checkable
class EventWriter(Protocol):
    """The executor's write port: commits a run's events without blocking the event loop.

    The executor awaits :meth:`append` before it starts any side effect that the appended
    events precede (a model call, a tool), so what a log says was in flight was durable before
    it started. A SQL store serves this port from a dedicated writer (another thread, group
    commit); :class:`InlineWriter` commits on the calling thread, which is what a
    :class:`~executus.VirtualClock` run needs to stay deterministic.
    """

    async def append(
        self, run_id: str, events: Sequence[Event], expected_seq: int, *, epoch: int | None = None
    ) -> None:
        """Commit ``events`` (seq ``expected_seq + 1`` onwards) atomically: all or nothing.

        With ``epoch``, fenced by the run's lease, as :meth:`EventSink.append` is.

        Raises:
            ConcurrencyError: the run's log does not end at ``expected_seq``; nothing written.
            LeaseLostError: the run's lease epoch is not ``epoch``; nothing written.
            StoreError: the store failed and kept failing; nothing of this batch is durable.
        """
        ...

    async def put_blob(self, data: bytes, media_type: str) -> str:
        """Store content once by its sha256 and return the hex digest."""
        ...


@runtime_checkable
class LeaseWriter(Protocol):
    """The lease half of a write port: a heartbeat that never blocks the event loop.

    The same operations as :class:`RunLeases`, served where the port commits (a SQL store's
    writer thread; :class:`InlineWriter` calls the store's at once).
    """

    async def acquire(self, run_id: str, owner: str, ttl: float, *, force: bool = False) -> Lease:
        """:meth:`RunLeases.acquire`."""
        ...

    async def renew(self, lease: Lease, ttl: float) -> Renewal:
        """:meth:`RunLeases.renew`."""
        ...

    async def release(self, lease: Lease) -> None:
        """:meth:`RunLeases.release`."""
        ...


class InlineWriter:
    """An :class:`EventWriter` that commits through a sink's synchronous ``append`` at once.

    For stores with no IO to wait on (:class:`MemoryStore`) and for virtual-clock runs, where
    a commit finishing on another thread at an unpredictable moment would break determinism.
    Its lease operations (:class:`LeaseWriter`) call the sink's, which must keep leases
    (:class:`RunLeases`).
    """

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    async def append(
        self, run_id: str, events: Sequence[Event], expected_seq: int, *, epoch: int | None = None
    ) -> None:
        if epoch is None:  # a sink written before fencing takes no epoch
            self._sink.append(run_id, events, expected_seq)
        else:
            self._sink.append(run_id, events, expected_seq, epoch=epoch)

    async def acquire(self, run_id: str, owner: str, ttl: float, *, force: bool = False) -> Lease:
        return self._leases().acquire(run_id, owner, ttl, force=force)

    async def renew(self, lease: Lease, ttl: float) -> Renewal:
        return self._leases().renew(lease, ttl)

    async def release(self, lease: Lease) -> None:
        self._leases().release(lease)

    def _leases(self) -> RunLeases:
        if not isinstance(self._sink, RunLeases):
            raise StoreError(f"{type(self._sink).__name__} keeps no leases (it is not a RunLeases)")
        return self._sink

    async def put_blob(self, data: bytes, media_type: str) -> str:
        return self._sink.put_blob(data, media_type)


class MemoryStore(LeasesThrough):
    """An event store in plain memory, held to the same contract as the SQL store, leases too.

    Args:
        now: the clock leases expire by (the host's by default; a test may pass a
            :class:`~executus.VirtualClock`'s ``now``).
    """

    def __init__(self, *, now: Callable[[], datetime] = wall_clock) -> None:
        self._events: dict[str, list[Event]] = {}
        self._hashes: dict[str, list[str]] = {}
        self._summaries: dict[str, RunSummary] = {}
        self._blobs: dict[str, Blob] = {}
        self._order: list[str] = []
        # The lease book reads the summaries dict, not this store: a cycle back to the store would
        # keep a dropped store (and every event in it) alive until a full garbage collection.
        summaries = self._summaries
        self._leases: LeaseBook = LeaseBook(
            now,
            lambda run_id: summary.status if (summary := summaries.get(run_id)) else None,
            lambda run_id: summaries[run_id].agent,
        )

    def append(
        self, run_id: str, events: Sequence[Event], expected_seq: int, *, epoch: int | None = None
    ) -> None:
        if epoch is not None:
            self._leases.fence(run_id, epoch)
        log = self._events.get(run_id, [])
        if len(log) != expected_seq:
            raise ConcurrencyError(run_id, expected_seq, len(log))
        check_batch(run_id, events, expected_seq)
        # Everything that can fail happens before the log changes; then it is extended in place
        # (copying it would make every append, and so a long run, cost O(run length)).
        previous = self._hashes[run_id][-1] if log else GENESIS_HASH
        new_hashes: list[str] = []
        for event in events:
            previous = chain_hash(previous, event_json(event))
            new_hashes.append(previous)
        if not events:
            return
        summary = summarize_batch(self._summaries.get(run_id), events, previous)
        if run_id not in self._events:
            self._order.append(run_id)
            self._events[run_id] = []
            self._hashes[run_id] = []
            self._leases.started(run_id)
        self._events[run_id].extend(events)
        self._hashes[run_id].extend(new_hashes)
        self._summaries[run_id] = summary

    def put_blob(self, data: bytes, media_type: str) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._blobs.setdefault(digest, Blob(digest, media_type, data))
        return digest

    def read_run(self, run_id: str, after_seq: int = 0) -> list[Event]:
        if run_id not in self._events:
            raise RunNotFoundError(run_id, [known for known in self._order if known.startswith(run_id)][:5])
        return list(self._events[run_id][after_seq:])

    def get_run(self, run_id: str) -> RunSummary:
        try:
            return self._summaries[run_id]
        except KeyError:
            raise RunNotFoundError(run_id) from None

    def list_runs(self, query: RunQuery = RunQuery()) -> list[RunSummary]:
        matches = [
            summary
            for summary in sorted(
                self._summaries.values(), key=lambda s: (s.started_at, s.run_id), reverse=True
            )
            if (query.status is None or summary.status == query.status)
            and (query.agent is None or summary.agent == query.agent)
            and (query.caller_id is None or summary.caller_id == query.caller_id)
            and (query.since is None or summary.started_at >= query.since)
            and (query.until is None or summary.started_at < query.until)
        ]
        return matches if query.limit is None else matches[: query.limit]

    def get_blob(self, sha256: str) -> Blob:
        try:
            return self._blobs[sha256]
        except KeyError:
            raise BlobNotFoundError(sha256) from None

    def hashes(self, run_id: str) -> list[str]:
        """The hash chain of a run, one hash per event."""
        return list(self._hashes.get(run_id, []))
