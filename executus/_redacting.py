"""Redaction at the executor's write port: wrappers that redact every batch before it is stored.

The executor keeps the real values in its own state (the live model and tools see them) and
hands its batches to a writer; wrapped in one of these, the store receives, encodes, hashes and
keeps only the redacted events, and so does everything that reads it (``show``, ``why``,
``export``, replay). The executor wraps whatever writer it records through in a
:class:`RedactingWriter` by default (``Executor(redaction=...)``); a :class:`RedactingStore`
brings its own redactor (its key, its rules) to an executor or to any other writer of a store::

    executor = Executor(RedactingStore(open_store(url), Redactor(secret, rules)))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from executus._errors import StoreError
from executus._events import Event
from executus._leases import Lease, Renewal
from executus._redact import Redaction, Redactor, RunRedaction
from executus._store import Blob, EventStore, EventWriter, InlineWriter, LeaseWriter, RunQuery, RunSummary

__all__ = ["RedactingStore", "RedactingWriter"]

_ALL_DEFAULTS: Final = RunQuery()


class RedactingStore:
    """An :class:`~executus.storage.EventStore` that redacts each batch, then appends it to ``store``.

    Reads, blobs and anything else the wrapped store offers (``display_url``, ``close``...) go
    straight to it.
    """

    def __init__(self, store: EventStore, redactor: Redactor) -> None:
        self.store = store
        self._redaction = RunRedaction(redactor)

    @property
    def redactions(self) -> list[Redaction]:
        """Where rules fired so far (rule and field path, never the value)."""
        return self._redaction.redactions

    def append(
        self, run_id: str, events: Sequence[Event], expected_seq: int, *, epoch: int | None = None
    ) -> None:
        batch = self._redaction.batch(run_id, events, expected_seq, lambda: self.store.read_run(run_id))
        try:
            if epoch is None:
                self.store.append(run_id, batch, expected_seq)
            else:
                self.store.append(run_id, batch, expected_seq, epoch=epoch)
        except BaseException:
            self._redaction.forget(run_id)
            raise

    def put_blob(self, data: bytes, media_type: str) -> str:
        """Store content, its text redacted (see :meth:`Redactor.redact_blob`); the stored digest."""
        stored, _ = self._redaction.redactor.redact_blob(data, media_type)
        return self.store.put_blob(stored, media_type)

    def read_run(self, run_id: str, after_seq: int = 0) -> list[Event]:
        return self.store.read_run(run_id, after_seq)

    def get_run(self, run_id: str) -> RunSummary:
        return self.store.get_run(run_id)

    def list_runs(self, query: RunQuery = _ALL_DEFAULTS) -> list[RunSummary]:
        return self.store.list_runs(query)

    def get_blob(self, sha256: str) -> Blob:
        return self.store.get_blob(sha256)

    def writer(self) -> RedactingWriter:
        """The write port for an executor that asks its store for one: the wrapped store's own
        writer (a SQL store's writer thread), or its ``append`` called inline, behind a
        :class:`RedactingWriter` that shares this store's redactor and :attr:`redactions`.
        Defined here so that it is never the wrapped store's bare writer, which
        ``__getattr__`` would otherwise hand out, unredacted."""
        make_writer: Callable[[], EventWriter] | None = getattr(self.store, "writer", None)
        return self.inline_writer() if make_writer is None else self._redacting(make_writer())

    def inline_writer(self) -> RedactingWriter:
        """A write port that redacts, then appends to the wrapped store on the calling thread
        (what a :class:`~executus.VirtualClock` run records through)."""
        return self._redacting(InlineWriter(self.store))

    def _redacting(self, writer: EventWriter) -> RedactingWriter:
        port = RedactingWriter(writer, self._redaction.redactor, read_run=self.store.read_run)
        port._redaction = self._redaction  # one record of the run's redactions, whichever way in
        return port

    def __getattr__(self, name: str) -> Any:
        # Reads and housekeeping (display_url, close, records...) of the wrapped store.
        return getattr(self.store, name)


class RedactingWriter:
    """An :class:`~executus.storage.EventWriter` that redacts each batch, then commits it through ``writer``.

    Args:
        writer: the writer to commit through.
        redactor: the redactor.
        read_run: the run's stored events, for a run resumed by this process (its recorded
            requests are then fingerprinted over its redacted log, as a replay does).
    """

    def __init__(
        self,
        writer: EventWriter,
        redactor: Redactor,
        read_run: Callable[[str], Sequence[Event]] | None = None,
    ) -> None:
        self._writer = writer
        self._redaction = RunRedaction(redactor)
        self._read_run = read_run

    @property
    def redactions(self) -> list[Redaction]:
        """Where rules fired so far (rule and field path, never the value)."""
        return self._redaction.redactions

    async def append(
        self, run_id: str, events: Sequence[Event], expected_seq: int, *, epoch: int | None = None
    ) -> None:
        batch = self.redact_batch(run_id, events, expected_seq)
        await self.append_redacted(run_id, batch, expected_seq, epoch=epoch)

    async def put_blob(self, data: bytes, media_type: str) -> str:
        """Store content, its text redacted (see :meth:`Redactor.redact_blob`); the stored digest."""
        return (await self.store_blob(data, media_type)).sha256

    def redact_batch(self, run_id: str, events: Sequence[Event], expected_seq: int) -> list[Event]:
        """The batch that :meth:`append_redacted` will store for ``events``: redacted by this
        writer, then by the writer it commits through if that one redacts too.

        The run's redaction state moves on with it, so the batch must then be appended.
        """
        read_run = self._read_run
        history = None if read_run is None else (lambda: read_run(run_id))
        batch = self._redaction.batch(run_id, events, expected_seq, history)
        if isinstance(self._writer, RedactingWriter):
            try:
                return self._writer.redact_batch(run_id, batch, expected_seq)
            except BaseException:
                self._redaction.forget(run_id)  # the batch will never be appended
                raise
        return batch

    async def append_redacted(
        self, run_id: str, batch: Sequence[Event], expected_seq: int, *, epoch: int | None = None
    ) -> None:
        """Commit a batch :meth:`redact_batch` returned (fenced by ``epoch`` when given)."""
        try:
            if isinstance(self._writer, RedactingWriter):
                await self._writer.append_redacted(run_id, batch, expected_seq, epoch=epoch)
            elif epoch is None:
                await self._writer.append(run_id, batch, expected_seq)
            else:
                await self._writer.append(run_id, batch, expected_seq, epoch=epoch)
        except BaseException:
            self._redaction.forget(run_id)
            raise

    def redact_events(self, events: Sequence[Event]) -> list[Event]:
        """Each event redacted on its own, for events that will not be stored (a run's events
        after its recording failed): what a listener may be shown of them."""
        redacted = [self._redaction.redactor.redact(event)[0] for event in events]
        if isinstance(self._writer, RedactingWriter):
            return self._writer.redact_events(redacted)
        return redacted

    async def store_blob(self, data: bytes, media_type: str) -> Blob:
        """Store content, its text redacted (see :meth:`Redactor.redact_blob`): what was stored."""
        stored, _ = self._redaction.redactor.redact_blob(data, media_type)
        if isinstance(self._writer, RedactingWriter):
            return await self._writer.store_blob(stored, media_type)
        return Blob(await self._writer.put_blob(stored, media_type), media_type, stored)

    # Leases pass through: they hold no content to redact.
    async def acquire(self, run_id: str, owner: str, ttl: float, *, force: bool = False) -> Lease:
        return await self._leases().acquire(run_id, owner, ttl, force=force)

    async def renew(self, lease: Lease, ttl: float) -> Renewal:
        return await self._leases().renew(lease, ttl)

    async def release(self, lease: Lease) -> None:
        await self._leases().release(lease)

    def _leases(self) -> LeaseWriter:
        if not isinstance(self._writer, LeaseWriter):
            raise StoreError(f"{type(self._writer).__name__} keeps no leases (it is not a LeaseWriter)")
        return self._writer
