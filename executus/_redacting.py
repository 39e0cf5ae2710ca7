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
        return self.store.put_blob(data, media_type)

    def read_run(self, run_id: str, after_seq: int = 0) -> list[Event]:
        return self.store.read_run(run_id, after_seq)

    def get_run(self, run_id: str) -> RunSummary:
        return self.store.get_run(run_id)

    def list_runs(self, query: RunQuery = _ALL_DEFAULTS) -> list[RunSummary]:
        return self.store.list_runs(query)

    def get_blob(self, sha256: str) -> Blob:
        return self.store.get_blob(sha256)

    def writer(self) -> EventWriter:
        """The write port for an executor that asks its store for one: the wrapped store's own
        writer (a SQL store's writer thread) behind a :class:`RedactingWriter`, or appends
        through this store. Defined here so that it is never the wrapped store's bare writer,
        which ``__getattr__`` would otherwise hand out, unredacted."""
        make_writer: Callable[[], EventWriter] | None = getattr(self.store, "writer", None)
        if make_writer is None:
            return InlineWriter(self)
        return RedactingWriter(make_writer(), self._redaction.redactor, read_run=self.store.read_run)

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
        read_run = self._read_run
        history = None if read_run is None else (lambda: read_run(run_id))
        batch = self._redaction.batch(run_id, events, expected_seq, history)
        try:
            if epoch is None:
                await self._writer.append(run_id, batch, expected_seq)
            else:
                await self._writer.append(run_id, batch, expected_seq, epoch=epoch)
        except BaseException:
            self._redaction.forget(run_id)
            raise

    async def put_blob(self, data: bytes, media_type: str) -> str:
        return await self._writer.put_blob(data, media_type)

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
