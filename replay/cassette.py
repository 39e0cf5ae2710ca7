"""Cassettes: one recorded run as a portable, deterministic JSON Lines file.

Layout, one JSON value a line, UTF-8, ``\\n`` line ends::

    {"format":"executus-cassette","version":1,"run_id":...,"events":N,"blobs":M,...}   header
    {"kind":"run_started","seq":1,...}                                             N events,
    ...                                                                            seq order
    {"blob":"<sha256>","media_type":"image/png","size":123,"data":"<base64>"}     M blobs,
    ...                                                                            by sha256

Each event line is the event's canonical stored text (:func:`executus.storage.event_json`: sorted keys,
no whitespace), exactly what the store's hash chain covers, so the header's ``head_hash`` (the
chain's tip) lets :func:`read_cassette` prove the events were not edited. Blobs are the images
attached to steer messages and the artifacts of the post-run hook that the events reference.
Writing the same run twice gives the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from pydantic import BaseModel, ConfigDict, ValidationError

from executus import ExecutusError, RunNotFoundError
from executus.events import Event, PostRunFinished, SteerInjected, decode_event, rebuild
from executus.storage import (
    GENESIS_HASH,
    Blob,
    BlobNotFoundError,
    EventStore,
    canonical_json,
    chain_hash,
    event_json,
)
from replay._errors import CassetteConflictError, CassetteError
from replay._evidence import Evidence
from replay._strict import MAX_NAME_LENGTH, check_run_id, first_difference, json_line, shown

__all__ = [
    "CASSETTE_FORMAT",
    "CASSETTE_VERSION",
    "Cassette",
    "CassetteHeader",
    "dump_cassette",
    "import_cassette",
    "load_cassette",
    "read_cassette",
    "referenced_blobs",
    "save_cassette",
    "write_cassette",
]

CASSETTE_FORMAT: Final = "executus-cassette"
CASSETTE_VERSION: Final = 1


class CassetteHeader(BaseModel):
    """The first line of a cassette: what it holds, checked against the lines that follow."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str = CASSETTE_FORMAT
    """Always ``executus-cassette``."""
    version: int = CASSETTE_VERSION
    """The cassette layout version."""
    run_id: str
    agent: str
    """The agent's name, from ``run_started``."""
    model: str
    """The model's name, from ``run_started``."""
    status: str
    """How the run ended (``running`` if its log has no ``run_finished``)."""
    started_at: str
    """``run_started``'s time, ISO 8601."""
    events: int
    """How many event lines follow the header."""
    blobs: int
    """How many blob lines follow the events."""
    head_hash: str
    """The hash chain's tip over the events: editing any event line breaks it."""
    verification_failures: list[str] | None = None
    """Set only by ``export --force``: what ``verify`` found wrong with the stored run. Such a
    cassette records a run that was tampered with, and ``import`` refuses it."""
    evidence: Evidence | None = None
    """Set by ``export --evidence``: the run's ledger seal, inclusion proof and a signed
    checkpoint, which ``executus verify --bundle`` checks with no database."""


@dataclass(frozen=True, slots=True)
class Cassette:
    """A recorded run read from a cassette: its header, events in seq order, and blobs.

    Attributes:
        header: the cassette's first line.
        events: the run's events, seq 1 onwards.
        blobs: the content the events reference, sorted by sha256.
    """

    header: CassetteHeader
    events: tuple[Event, ...]
    blobs: tuple[Blob, ...] = ()

    @property
    def run_id(self) -> str:
        """The recorded run's id."""
        return self.header.run_id

    def get_blob(self, sha256: str) -> Blob:
        """A blob by hash; raises :class:`executus.storage.BlobNotFoundError` (as the stores do)."""
        for blob in self.blobs:
            if blob.sha256 == sha256:
                return blob
        raise BlobNotFoundError(sha256)


def referenced_blobs(events: Iterable[Event]) -> list[str]:
    """The sha256 of every blob the events reference (steer images, artifacts), sorted, unique."""
    digests: set[str] = set()
    for event in events:
        if isinstance(event, SteerInjected):
            digests.update(image.sha256 for message in event.messages for image in message.images)
        elif isinstance(event, PostRunFinished):
            digests.update(artifact.sha256 for artifact in event.artifacts)
    return sorted(digests)


def _head_hash(lines: Iterable[str]) -> str:
    head = GENESIS_HASH
    for line in lines:
        head = chain_hash(head, line)
    return head


def dump_cassette(
    events: Sequence[Event],
    blobs: Iterable[Blob],
    stream: TextIO,
    *,
    evidence: Evidence | None = None,
    verification_failures: Sequence[str] | None = None,
) -> None:
    """Write events and the blobs they reference as a cassette.

    Args:
        events: one run's whole log, seq 1 onwards.
        blobs: at least every blob the events reference (others are left out).
        stream: a text stream opened for writing (``newline=""`` is not needed: only ``\\n``).
        evidence: the run's ledger evidence, for an evidence bundle.
        verification_failures: what verification found wrong (``export --force`` only).

    Raises:
        CassetteError: there are no events, or a referenced blob is missing.
    """
    if not events:
        raise CassetteError("a cassette needs at least one event (run_started)")
    first = events[0]
    if first.kind != "run_started":
        raise CassetteError(f"a run's log must begin with run_started, not {first.kind}")
    by_hash = {blob.sha256: blob for blob in blobs}
    wanted = referenced_blobs(events)
    missing = [digest for digest in wanted if digest not in by_hash]
    if missing:
        raise CassetteError(f"run {first.run_id} references blob {missing[0]}, which is not available")
    lines = [event_json(event) for event in events]
    last = events[-1]
    header = CassetteHeader(
        run_id=first.run_id,
        agent=first.agent.name,
        model=first.agent.model,
        status=last.status if last.kind == "run_finished" else "running",
        started_at=first.at.isoformat(),
        events=len(lines),
        blobs=len(wanted),
        head_hash=_head_hash(lines),
        verification_failures=list(verification_failures) if verification_failures else None,
        evidence=evidence,
    )
    stream.write(canonical_json(header.model_dump(mode="json", exclude_none=True)) + "\n")
    for line in lines:
        stream.write(line + "\n")
    for digest in wanted:
        blob = by_hash[digest]
        record = {
            "blob": blob.sha256,
            "media_type": blob.media_type,
            "size": len(blob.data),
            "data": base64.b64encode(blob.data).decode("ascii"),
        }
        stream.write(canonical_json(record) + "\n")


def write_cassette(
    store: EventStore,
    run_id: str,
    stream: TextIO,
    *,
    evidence: Evidence | None = None,
    verification_failures: Sequence[str] | None = None,
) -> None:
    """Export one stored run, with the blobs it references, as a cassette.

    Callers that export for others should verify the run first (``store.verify_run``): this
    writes whatever the store reads, with a fresh hash chain.

    Raises:
        RunNotFoundError: the store has no such run.
        BlobNotFoundError: the store lacks a blob the run references.
    """
    events = store.read_run(run_id)
    blobs = [store.get_blob(digest) for digest in referenced_blobs(events)]
    dump_cassette(events, blobs, stream, evidence=evidence, verification_failures=verification_failures)


def _read_header(text: str) -> CassetteHeader:
    data = json_line(text, 1)
    if data.get("format") != CASSETTE_FORMAT:
        raise CassetteError(f"not an executus cassette (format is {data.get('format')!r})", 1)
    version = data.get("version")
    if not isinstance(version, int) or version > CASSETTE_VERSION or version < 1:
        raise CassetteError(
            f"cassette version {version!r} is not one this executus reads (1 to {CASSETTE_VERSION})", 1
        )
    try:
        header = CassetteHeader.model_validate(data, strict=True)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise CassetteError(f"invalid header: {where}: {problem['msg']}", 1) from None
    check_run_id(header.run_id)
    return header


def _read_blob(text: str, number: int) -> Blob:
    data = json_line(text, number)
    if set(data) != {"blob", "media_type", "size", "data"}:
        raise CassetteError("a blob line needs exactly blob, media_type, size and data", number)
    digest, media_type, size, encoded = data["blob"], data["media_type"], data["size"], data["data"]
    if not (isinstance(digest, str) and isinstance(media_type, str) and isinstance(encoded, str)):
        raise CassetteError("blob, media_type and data must be strings", number)
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise CassetteError(f"blob {digest[:12]}: data is not valid base64", number) from None
    if size != len(content):
        raise CassetteError(f"blob {digest[:12]}: size says {size} but the data has {len(content)}", number)
    if hashlib.sha256(content).hexdigest() != digest:
        raise CassetteError(f"blob {digest[:12]}: the data does not hash to its sha256", number)
    return Blob(digest, media_type, content)


def _read_event(text: str, number: int) -> Event:
    """Decode an event line as strictly as the store writes: its canonical text, nothing coerced."""
    data = json_line(text, number)
    try:
        event = decode_event(data)
    except ExecutusError as error:
        raise CassetteError(str(error), number) from None
    if data.get("schema_version", 1) == event.schema_version:  # not upcast from an older version
        difference = first_difference(data, json.loads(event_json(event)))
        if difference is not None:
            raise CassetteError(f"not an event as the store writes it: {difference}", number)
    usage = data.get("usage")
    if isinstance(usage, dict) and any(isinstance(n, int) and n < 0 for n in usage.values()):
        raise CassetteError(f"{event.kind} at seq {event.seq} has negative token usage", number)
    return event


def _check_run(header: CassetteHeader, events: Sequence[Event]) -> None:
    """The events must fold into a run (as the store would rebuild it) that the header describes."""
    try:
        state = rebuild(events)
    except ExecutusError as error:
        raise CassetteError(f"the events do not make a run: {error}") from None
    first, last = events[0], events[-1]
    assert first.kind == "run_started"
    told = {
        "status": last.status if last.kind == "run_finished" else "running",
        "agent": first.agent.name,
        "model": first.agent.model,
        "started_at": first.at.isoformat(),
    }
    for field, value in told.items():
        if getattr(header, field) != value:
            raise CassetteError(
                f"the header says {field} {shown(getattr(header, field))}, the events {shown(value)}", 1
            )
    for what, name in (
        ("agent name", first.agent.name),
        ("model name", first.agent.model),
        ("caller id", state.caller_id),
    ):
        if name is not None and len(name) > MAX_NAME_LENGTH:
            raise CassetteError(f"the {what} is longer than {MAX_NAME_LENGTH} characters", 2)


def read_cassette(stream: TextIO) -> Cassette:
    """Read and check a cassette.

    Every line is checked as strictly as the store writes: the header (strict types, a run id
    of at most 128 letters, digits and ``. _ : @ + -``), each event (its canonical text: no
    ``"seq":"3"``, no NaN, no integer beyond 64 bits, no nesting deeper than 64, no lone
    surrogate; this run, seq 1, 2, 3… in order, time never going back, usage never negative),
    the fold of all events (nothing after ``run_finished``), the header against the events
    (status, agent, model, start, counts, the hash chain's ``head_hash``), and each blob's size
    and sha256; every blob the events reference must be present. Lines may end in ``\r\n``.

    Raises:
        CassetteError: anything malformed, naming the 1-based line number and why.
    """
    # A line may end in \r\n (a checkout with Windows line ends): the \r is not part of it.
    lines = [line.removesuffix("\r") for line in stream.read().split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise CassetteError("the file is empty")
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            raise CassetteError("blank line", number)
    header = _read_header(lines[0])
    expected_lines = 1 + header.events + header.blobs
    if len(lines) != expected_lines:
        raise CassetteError(
            f"the header promises {header.events} events and {header.blobs} blobs "
            f"({expected_lines} lines) but the file has {len(lines)} lines"
        )
    if header.events < 1:
        raise CassetteError("a cassette needs at least one event", 1)
    events: list[Event] = []
    head = GENESIS_HASH
    for number in range(2, 2 + header.events):
        text = lines[number - 1]
        event = _read_event(text, number)
        if event.run_id != header.run_id:
            raise CassetteError(f"event belongs to run {shown(event.run_id)}, not {header.run_id}", number)
        if event.seq != len(events) + 1:
            raise CassetteError(f"expected seq {len(events) + 1}, got {event.seq} ({event.kind})", number)
        if event.seq == 1 and event.kind != "run_started":
            raise CassetteError(f"the first event must be run_started, not {event.kind}", number)
        if events and event.at < events[-1].at:
            raise CassetteError(
                f"{event.kind} at seq {event.seq} is earlier than the event before it", number
            )
        head = chain_hash(head, text)
        events.append(event)
    if head != header.head_hash:
        raise CassetteError(
            "the events do not match the header's head_hash: an event line was edited, "
            "or is not in canonical form"
        )
    _check_run(header, events)
    blobs = [_read_blob(lines[number - 1], number) for number in range(2 + header.events, len(lines) + 1)]
    present = {blob.sha256 for blob in blobs}
    for digest in referenced_blobs(events):
        if digest not in present:
            raise CassetteError(f"the events reference blob {digest} but the cassette does not hold it")
    return Cassette(header=header, events=tuple(events), blobs=tuple(sorted(blobs, key=lambda b: b.sha256)))


def import_cassette(store: EventStore, cassette: Cassette) -> str:
    """Store a cassette's run (blobs first, then all events in one append); return its run id.

    Importing a run the store already holds with identical events is a no-op; with any other
    events it is refused.

    Raises:
        CassetteError: the cassette was exported with ``--force`` from a run that failed
            verification: importing it would pass tampered history off as genuine.
        CassetteConflictError: the run exists in the store with different events.
        StoreError: the store refused the append.
    """
    run_id = cassette.run_id
    if cassette.header.verification_failures:
        raise CassetteError(
            f"run {run_id} failed verification when it was exported (--force): "
            f"{cassette.header.verification_failures[0]}; refusing to import it as genuine",
            1,
        )
    try:
        existing = store.read_run(run_id)
    except RunNotFoundError:
        existing = None
    if existing is not None:
        for ours, theirs in zip(cassette.events, existing, strict=False):
            if event_json(ours) != event_json(theirs):
                raise CassetteConflictError(
                    f"run {run_id} already exists in the store and differs at seq {ours.seq} "
                    f"(stored {theirs.kind}, cassette {ours.kind}); refusing to import"
                )
        if len(existing) != len(cassette.events):
            raise CassetteConflictError(
                f"run {run_id} already exists in the store with {len(existing)} events, "
                f"the cassette has {len(cassette.events)}; refusing to import"
            )
    for blob in cassette.blobs:
        store.put_blob(blob.data, blob.media_type)
    if existing is None:
        store.append(run_id, cassette.events, 0)
    return run_id


def load_cassette(path: str | Path) -> Cassette:
    """Read a cassette file (UTF-8).

    Raises:
        CassetteError: the file is malformed (or cannot be read: the message says why).
    """
    try:
        with Path(path).open(encoding="utf-8", newline="") as stream:
            return read_cassette(stream)
    except OSError as error:
        raise CassetteError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise CassetteError(f"{path} is not UTF-8 text ({error.reason})") from None


def save_cassette(store: EventStore, run_id: str, path: str | Path) -> None:
    """Export a stored run to a cassette file, replacing it (written whole, then renamed)."""
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    with partial.open("w", encoding="utf-8", newline="") as stream:
        write_cassette(store, run_id, stream)
    partial.replace(target)
