"""Fresh executus databases and executus's real append path, for the cases to time."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

from bench._pg import conninfo
from executus.events import Event
from store import SqlStore, open_store

__all__ = ["database_bytes", "executus_append", "fresh_sqlite", "new_path", "reset_postgres"]

_names = itertools.count(1)


def new_path(workdir: Path, label: str) -> Path:
    """A database file name that does not exist yet in ``workdir``."""
    while True:
        path = workdir / f"{label}-{next(_names)}.db"
        if not path.exists():
            return path


def fresh_sqlite(workdir: Path, label: str) -> tuple[Path, str]:
    """A new SQLite database file with executus's schema (migrated by ``open_store``).

    Returns:
        The file's path and its SQLAlchemy URL.
    """
    path = new_path(workdir, label)
    url = f"sqlite:///{path}"
    open_store(url).close()
    return path, url


def reset_postgres(url: str) -> None:
    """Empty executus's tables (creating them first if needed) and checkpoint, between repetitions."""
    open_store(url).close()
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        connection.execute("TRUNCATE events, runs, blobs, ledger, leases, queue RESTART IDENTITY")
        connection.execute("CHECKPOINT")


def executus_append(url: str, batches: Sequence[Sequence[Event]]) -> float:
    """Append ``batches`` through ``SqlStore.append``, one call per executor transaction; events/s.

    The store is opened (and its connection pool warmed by a read) before the timing starts.
    """
    store = SqlStore(url)
    try:
        store.list_runs()
        expected: dict[str, int] = {}
        count = sum(len(batch) for batch in batches)
        started = time.perf_counter()
        for batch in batches:
            run_id = batch[0].run_id
            seq = expected.get(run_id, 0)
            store.append(run_id, batch, seq)
            expected[run_id] = seq + len(batch)
        seconds = time.perf_counter() - started
    finally:
        store.close()
    return count / seconds


def database_bytes(path: Path) -> int:
    """Bytes of a SQLite database on disk, with its WAL and shared-memory files if present."""
    return sum(
        os.path.getsize(candidate)
        for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
        if candidate.exists()
    )
