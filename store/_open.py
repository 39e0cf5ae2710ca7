"""Opening the configured store: ``--db``/``EXECUTUS_DB``, else a SQLite file in the user's data dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import platformdirs

from executus import DatabaseUnavailableError
from store._engine import read_only_url
from store._migrate import ensure_schema
from store._settings import WriterSettings
from store._sql import SqlStore

__all__ = ["ENV_DB", "default_url", "make_default_directory", "open_store"]

ENV_DB: Final = "EXECUTUS_DB"


def _default_sqlite_path() -> Path:
    return Path(platformdirs.user_data_dir("executus")) / "executus.db"


def default_url() -> str:
    """The database used when none is named: ``$EXECUTUS_DB`` if set and non-empty, else
    ``sqlite:///`` + ``platformdirs.user_data_dir("executus")/executus.db``."""
    configured = os.environ.get(ENV_DB, "").strip()
    return configured or f"sqlite:///{_default_sqlite_path()}"


def make_default_directory() -> None:
    """Create the default database's directory if it is new.

    Raises:
        DatabaseUnavailableError: it cannot be made (HOME unwritable, or a file in the way);
            the message names the way out, ``--db``/``EXECUTUS_DB``.
    """
    directory = _default_sqlite_path().parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatabaseUnavailableError(
            f"cannot use the default data directory {directory}: {error.strerror or error}; "
            f"name a database with --db URL or {ENV_DB}=URL"
        ) from None


def open_store(
    url: str | None = None, *, read_only: bool = False, settings: WriterSettings | None = None
) -> SqlStore:
    """Open the event store at ``url`` (default: :func:`default_url`), ready to use.

    A fresh database (no tables at all) is created and migrated to the newest schema, so
    first use needs no set-up; the default SQLite file's directory is created too. A database
    that has the schema at an older revision is refused rather than migrated behind the
    user's back: migrating a shared PostgreSQL database is a deliberate act.

    Args:
        url: the database; None for :func:`default_url`.
        read_only: the caller only reads. A SQLite file this process may not write (an
            auditor's copy) is then opened read-only (see :func:`read_only_url`) instead of
            failing, and nothing is created in it.
        settings: the timeouts and retry window of the store's writes (default: WriterSettings()).

    Returns:
        A store the caller must :meth:`~SqlStore.close` (or use in a ``with`` block).

    Raises:
        DatabaseUnavailableError: the URL is malformed, or the database cannot be opened
            (the message names the URL without its password), or the default data directory
            cannot be made.
        SchemaOutdatedError: the database is behind; the message says to run ``executus db upgrade``.
        StoreError: the database was migrated by a newer executus.
    """
    if url is None:
        url = default_url()
        if url == f"sqlite:///{_default_sqlite_path()}":
            make_default_directory()
    locked = read_only_url(url) if read_only else None
    store = SqlStore(locked or url, settings=settings)
    try:
        ensure_schema(store.engine, locked or url, create=locked is None)
    except BaseException:
        store.close()
        raise
    return store
