"""The run's recorder: hands each decision's events to the write port and says when they are durable.

The core has folded the events into the run's state already; the recorder tells ``on_event``
of each, then awaits the :class:`~executus.storage.EventWriter`'s commit of the whole batch (one
transaction per decision), and only then tells ``on_step`` of a model reply. The driver
awaits :meth:`Recorder.record` before it performs the decision's effects: an event that
precedes a side effect (``model_requested``, ``tool_started``, ``child_run_started``) is
durable before the side effect starts.

Once a commit fails, the recorder is *failed*: it commits nothing more (a later batch would
leave a gap after the lost one), and ``last_durable_seq`` stays where the log really ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from executus._events import Event, ModelResponded
from executus._store import EventWriter

__all__ = ["Recorder"]

logger = logging.getLogger("executus")


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
        self.epoch: int | None = None
        """The run's lease epoch every append is fenced by (None: unfenced, a store without leases)."""

    async def record(self, events: Sequence[Event]) -> None:
        """Commit ``events`` as one batch; a no-op once failed.

        Raises:
            Exception: whatever the writer raised; the recorder is failed from then on.
        """
        if self._on_event is not None:
            for event in events:
                self._notify(self._on_event, event, "on_event")
        if self.failure is not None or not events:
            return
        try:
            if self.epoch is None:
                await self._writer.append(self.run_id, events, self.last_durable_seq)
            else:
                await self._writer.append(self.run_id, events, self.last_durable_seq, epoch=self.epoch)
        except Exception as error:
            self.failure = error
            raise
        self.last_durable_seq = events[-1].seq
        if self._on_step is not None:
            for event in events:
                if isinstance(event, ModelResponded):
                    self._notify(self._on_step, event, "on_step")

    async def put_blob(self, data: bytes, media_type: str) -> str:
        """Store content by hash through the writer (images, artifacts)."""
        return await self._writer.put_blob(data, media_type)

    def _notify(
        self, listener: Callable[[Event], None] | Callable[[ModelResponded], None], event: Event, name: str
    ) -> None:
        try:
            listener(event)  # type: ignore[arg-type]
        except Exception:
            logger.exception("run %s: %s callback failed", self.run_id, name)
