"""Opening the configured store: ``--db``/``EXECUTUS_DB``, else a SQLite file in the user's data dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import platformdirs

from store._migrate import ensure_schema
from store._settings import WriterSettings
from store._sql import SqlStore

__all__ = ["ENV_DB", "default_url", "open_store"]

ENV_DB: Final = "EXECUTUS_DB"


def _default_sqlite_path() -> Path:
    return Path(platformdirs.user_data_dir("executus")) / "executus.db"


def default_url() -> str:
    """The database used when none is named: ``$EXECUTUS_DB`` if set and non-empty, else
    ``sqlite:///`` + ``platformdirs.user_data_dir("executus")/executus.db``."""
    configured = os.environ.get(ENV_DB, "").strip()
    return configured or f"sqlite:///{_default_sqlite_path()}"


def open_store(url: str | None = None, settings: WriterSettings | None = None) -> SqlStore:
    """Open the event store at ``url`` (default: :func:`default_url`), ready to use.

    A fresh database (no tables at all) is created and migrated to the newest schema, so
    first use needs no set-up; the default SQLite file's directory is created too. A database
    that has the schema at an older revision is refused rather than migrated behind the
    user's back: migrating a shared PostgreSQL database is a deliberate act.

    Args:
        url: the database (default: :func:`default_url`).
        settings: the timeouts and retry window of the store's writes (default: WriterSettings()).

    Returns:
        A store the caller must :meth:`~SqlStore.close` (or use in a ``with`` block).

    Raises:
        DatabaseUnavailableError: the URL is malformed, or the database cannot be opened
            (the message names the URL without its password).
        SchemaOutdatedError: the database is behind; the message says to run ``executus db upgrade``.
        StoreError: the database was migrated by a newer executus.
    """
    if url is None:
        url = default_url()
        if url == f"sqlite:///{_default_sqlite_path()}":
            _default_sqlite_path().parent.mkdir(parents=True, exist_ok=True)
    store = SqlStore(url, settings)
    try:
        ensure_schema(store.engine, url)
    except BaseException:
        store.close()
        raise
    return store
