"""A run's text artifacts and what its ``on_event`` listener hears are redacted like its events.

The run of :mod:`test_redaction` (one planted secret per built-in detector and per user rule)
also makes a text artifact from a session's post-run hook holding every secret a blob can
hold (a field rule names an event field; a blob has none), and an image that holds bytes
that look like a key. Afterwards: the listener heard no secret, the artifact's reference
(sha256, size) describes the redacted bytes the store keeps, the image is kept as it was,
and no secret is in the raw SQLite file or in a ``pg_dump`` of PostgreSQL. The caller's
``Result`` still has the real artifact, and the run verifies, exports and replays.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from _pgserver import _find_binaries
from test_redaction import KEY, RULES, SECRETS, START, agent, found_in

from executus import (
    Artifact,
    Executor,
    Invocation,
    Message,
    PostRun,
    RecordingFailedError,
    SequentialIds,
    Session,
    VirtualClock,
)
from executus.events import ErrorInfo, Event, PostRunFinished
from executus.redaction import RedactingStore, Redactor
from executus.storage import MemoryStore, event_json
from replay import Replayer, read_cassette, write_cassette
from store import SqlStore, verify_all

BLOB_SECRETS = {name: secret for name, secret in SECRETS.items() if name != "card"}
NOTES = "Run notes\n" + "\n".join(
    f"{name}: {'Bearer ' if name == 'bearer_token' else ''}"
    + {
        "aws_secret_access_key": f"aws_secret_access_key = {secret}",
        "url_password": f"postgresql://app:{secret}@db.example.com/prod",
        "libpq_password": f"host=db password={secret}",
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----",
    }.get(name, secret)
    for name, secret in BLOB_SECRETS.items()
)
IMAGE = b"\x89PNG\r\n\x1a\n" + SECRETS["aws_access_key_id"].encode() + b"\x00\xff"
"""An image is stored as it is (the events name it by its digest): even key-like bytes stay."""


class NoteTaker(Session):
    async def post_run(
        self, transcript: Sequence[Message], output: str | None, error: ErrorInfo | None
    ) -> PostRun:
        return PostRun(
            artifacts=[
                Artifact("notes.txt", "text/plain; charset=utf-8", NOTES.encode()),
                Artifact("notes.bin", "application/octet-stream", NOTES.encode()),
                Artifact("photo.png", "image/png", IMAGE),
            ]
        )


def pg_dump(url: str) -> bytes:
    binaries = _find_binaries()
    assert binaries is not None
    dump = Path(binaries[0]).with_name("pg_dump")
    libpq_url = url.replace("postgresql+psycopg://", "postgresql://")
    return subprocess.run([str(dump), "--data-only", libpq_url], capture_output=True, check=True).stdout


def found_in_dump(dump: bytes) -> list[str]:
    """Secrets in a dump, as text or as the hex a ``bytea`` column is dumped in."""
    return [
        name
        for name, secret in SECRETS.items()
        if secret.encode() in dump or secret.encode().hex().encode() in dump
    ]


@pytest.mark.parametrize("way", ["executor redactor, writer thread", "redacting store, virtual clock"])
def test_text_artifacts_and_listeners_get_no_secret(sql_url: str, way: str) -> None:
    heard: list[Event] = []
    with SqlStore(sql_url) as sql_store:
        if way.startswith("executor"):
            executor = Executor(sql_store, redaction=Redactor(KEY, RULES), on_event=heard.append)
        else:
            executor = Executor(
                RedactingStore(sql_store, Redactor(KEY, RULES)),
                clock=VirtualClock(START),
                ids=SequentialIds("leak-"),
                on_event=heard.append,
            )
        invocation = Invocation(session=lambda context: NoteTaker())
        result = executor.run_sync(agent([]), invocation, "hello")
        assert result.status == "ok", result.error
        assert [artifact.data for artifact in result.artifacts] == [NOTES.encode(), NOTES.encode(), IMAGE]

        stored = sql_store.read_run(result.run_id)
        assert [event_json(event) for event in heard] == [event_json(event) for event in stored]
        assert found_in("\n".join(event_json(event) for event in heard)) == []
        finished = next(event for event in stored if isinstance(event, PostRunFinished))
        text, binary, image = finished.artifacts
        for ref in (text, binary):
            blob = sql_store.get_blob(ref.sha256)
            assert (hashlib.sha256(blob.data).hexdigest(), len(blob.data)) == (ref.sha256, ref.size)
            kept = blob.data.decode()
            assert found_in(kept) == []
            assert "[REDACTED:customer_id:" in kept
            assert "[REDACTED:private_key:" in kept
            assert kept.startswith("Run notes\nopenai_api_key: [REDACTED:openai_api_key:")  # the rest stays
        assert (image.sha256, image.size) == (hashlib.sha256(IMAGE).hexdigest(), len(IMAGE))
        assert sql_store.get_blob(image.sha256).data == IMAGE

        assert verify_all(sql_store).ok
        assert Replayer(blobs=sql_store).replay_run(stored).identical
        exported = io.StringIO()
        write_cassette(sql_store, result.run_id, exported)
        cassette = read_cassette(io.StringIO(exported.getvalue()))
        assert {blob.sha256 for blob in cassette.blobs} == {text.sha256, image.sha256}
        assert found_in(exported.getvalue()) == []

    if sql_url.startswith("sqlite"):
        database = Path(sql_url.removeprefix("sqlite:///"))
        for path in database.parent.glob(database.name + "*"):  # the file, and its WAL if any
            assert set(found_in(path.read_bytes())) == {"aws_access_key_id"}, path  # the image's bytes
    else:
        assert set(found_in_dump(pg_dump(sql_url))) == {"aws_access_key_id"}


def test_a_listener_hears_events_the_store_will_never_hold_redacted_too() -> None:
    # The store refuses every batch: the run's events are never stored, but on_event still
    # hears them (a live view shows how the run ended), redacted all the same.
    class Refusing(MemoryStore):
        def append(self, run_id: str, events: Sequence[Event], expected_seq: int) -> None:
            raise OSError("disk full")

    heard: list[Event] = []
    executor = Executor(
        RedactingStore(Refusing(), Redactor(KEY, RULES)), clock=VirtualClock(START), on_event=heard.append
    )
    with pytest.raises(RecordingFailedError):
        executor.run_sync(agent([]), Invocation(), f"my key {SECRETS['openai_api_key']}")
    assert heard[0].kind == "run_started"
    assert heard[-1].kind == "run_finished"
    assert found_in("\n".join(event_json(event) for event in heard)) == []
    assert "[REDACTED:openai_api_key:" in event_json(heard[0])
