"""The run's recorder: hands each decision's events to the write port and says when they are durable.

The core has folded the events into the run's state already; the recorder tells ``on_event``
of each, as the log will hold it (redacted, when the writer redacts), then awaits the
:class:`~executus.storage.EventWriter`'s commit of the whole batch (one transaction per
decision), and only then tells ``on_step`` of a model reply. The driver
awaits :meth:`Recorder.record` before it performs the decision's effects: an event that
precedes a side effect (``model_requested``, ``tool_started``, ``child_run_started``) is
durable before the side effect starts.

Once a commit fails, the recorder is *failed*: it commits nothing more (a later batch would
leave a gap after the lost one), and ``last_durable_seq`` stays where the log really ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from executus._events import Event, ModelResponded
from executus._store import Blob, EventWriter

__all__ = ["Recorder", "RedactingPort"]

logger = logging.getLogger("executus")


@runtime_checkable
class RedactingPort(EventWriter, Protocol):
    """A write port that stores something else than it is given (a
    :class:`~executus.RedactingWriter`): it says what it will store first, so that listeners
    hear what the log holds and an artifact's reference names the content stored."""

    def redact_batch(self, run_id: str, events: Sequence[Event], expected_seq: int) -> list[Event]:
        """The batch that :meth:`append_redacted` will store for ``events``."""
        ...

    async def append_redacted(
        self, run_id: str, batch: Sequence[Event], expected_seq: int, *, epoch: int | None = None
    ) -> None:
        """Commit a batch :meth:`redact_batch` returned (fenced by ``epoch`` when given)."""
        ...

    def redact_events(self, events: Sequence[Event]) -> list[Event]:
        """Events that will not be stored, as they would have been."""
        ...

    async def store_blob(self, data: bytes, media_type: str) -> Blob:
        """Store content; what was stored."""
        ...


class Recorder:
    """Commits one run's events through a writer, in order, and notifies listeners.

    Args:
        writer: the write port.
        run_id: the run recorded.
        last_durable_seq: the seq the run's log ends at in the store (0 for a new run).
        on_event: called with each event before it is committed.
        on_step: called with each model reply once it is committed.
    """

    def __init__(
        self,
        writer: EventWriter,
        run_id: str,
        last_durable_seq: int,
        on_event: Callable[[Event], None] | None,
        on_step: Callable[[ModelResponded], None] | None,
    ) -> None:
        self._writer = writer
        self.run_id = run_id
        self.last_durable_seq = last_durable_seq
        self.failure: BaseException | None = None
        """Why the store gave up, once it has."""
        self._on_event = on_event
        self._on_step = on_step
        self._redacting = writer if isinstance(writer, RedactingPort) else None
        self.epoch: int | None = None
        """The run's lease epoch every append is fenced by (None: unfenced, a store without leases)."""

    async def record(self, events: Sequence[Event]) -> None:
        """Commit ``events`` as one batch; a no-op once failed.

        Raises:
            Exception: whatever the writer raised; the recorder is failed from then on.
        """
        if self.failure is not None or not events:
            self._tell_unrecorded(events)
            return
        redacting = self._redacting
        try:
            batch = (
                events
                if redacting is None
                else redacting.redact_batch(self.run_id, events, self.last_durable_seq)
            )
        except Exception as error:
            self.failure = error
            self._tell_unrecorded(events)
            raise
        if self._on_event is not None:
            for event in batch:
                self._notify(self._on_event, event, "on_event")
        try:
            if redacting is not None:
                await redacting.append_redacted(self.run_id, batch, self.last_durable_seq, epoch=self.epoch)
            elif self.epoch is None:  # a writer written before fencing takes no epoch
                await self._writer.append(self.run_id, batch, self.last_durable_seq)
            else:
                await self._writer.append(self.run_id, batch, self.last_durable_seq, epoch=self.epoch)
        except Exception as error:
            self.failure = error
            raise
        self.last_durable_seq = events[-1].seq
        if self._on_step is not None:
            for event in events:
                if isinstance(event, ModelResponded):
                    self._notify(self._on_step, event, "on_step")

    def _tell_unrecorded(self, events: Sequence[Event]) -> None:
        """``on_event`` hears of events the store will never hold too, redacted as they would be."""
        if self._on_event is None or not events:
            return
        if self._redacting is not None:
            try:
                events = self._redacting.redact_events(events)
            except Exception:
                logger.exception("run %s: redacting events for on_event failed", self.run_id)
                return
        for event in events:
            self._notify(self._on_event, event, "on_event")

    async def put_blob(self, data: bytes, media_type: str) -> Blob:
        """Store content by hash through the writer (images, artifacts): what was stored (an
        artifact's text redacted, when the writer redacts)."""
        if self._redacting is not None:
            return await self._redacting.store_blob(data, media_type)
        return Blob(await self._writer.put_blob(data, media_type), media_type, data)

    def _notify(
        self, listener: Callable[[Event], None] | Callable[[ModelResponded], None], event: Event, name: str
    ) -> None:
        try:
            listener(event)  # type: ignore[arg-type]
        except Exception:
            logger.exception("run %s: %s callback failed", self.run_id, name)
