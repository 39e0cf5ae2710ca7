"""Alembic, driven from code: the functions behind ``executus db upgrade | current``.

The migration scripts are found next to this module (``store/migrations``), so an installed
executus can migrate a database from any directory; ``alembic.ini`` at the repository root
points at the same scripts for developers who run the ``alembic`` command itself.

Alembic itself (and Mako, which it pulls in) is imported only when a migration runs: opening a
store whose database is already at the newest revision, which is every open but the first, reads
the version row with one query. The revisions this code knows are its migration scripts' file
names (``0001_...``, ``0002_...``: one linear chain, numbered in order; a test holds Alembic's own
view of the scripts to that). That halves ``import store`` and the heap a process starts with.

Every migration runs in one transaction on a connection handed to Alembic through
``config.attributes["connection"]`` (the env supports that for tests, which migrate inside a
transaction too). On SQLite the transaction is ``BEGIN IMMEDIATE``; on PostgreSQL it takes an
advisory lock: two processes that first open a fresh database at the same moment then create
the schema once, and the second finds it done.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import Connection, Engine, func, inspect, select, text

from executus import SchemaOutdatedError, StoreError
from store._engine import (
    WRITE_OPTION,
    connect,
    create_store_engine,
    display_url,
    read_only_url,
    require_supported_server,
)
from store._schema import metadata

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "MIGRATIONS_DIRECTORY",
    "alembic_config",
    "current_revision",
    "ensure_schema",
    "head_revision",
    "is_known_revision",
    "known_revisions",
    "upgrade",
]

MIGRATIONS_DIRECTORY: Final = Path(__file__).resolve().parent / "migrations"
_VERSION_TABLE: Final = "alembic_version"
_MIGRATION_LOCK_KEY: Final = 0x6578_6563_6D69_6772 >> 1
"""The PostgreSQL advisory lock held while migrating ("execmigr" in ASCII, halved)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for executus's migrations, independent of the working directory.

    Args:
        connection: run migrations on this connection, inside the caller's transaction.
    """
    from alembic.config import Config  # only to migrate: see the module docstring

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def known_revisions() -> tuple[str, ...]:
    """This code's migrations, oldest first: the number each script's file name starts with."""
    names = sorted(
        path.name for path in (MIGRATIONS_DIRECTORY / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    )
    if not names:  # pragma: no cover - the package always ships its migrations
        raise StoreError(f"no migrations found in {MIGRATIONS_DIRECTORY}")
    return tuple(name.partition("_")[0] for name in names)


def head_revision() -> str:
    """The newest migration this code knows: what ``upgrade`` brings a database to."""
    return known_revisions()[-1]


def current_revision(url: str) -> str | None:
    """The migration ``url``'s database is at, or None for a database never migrated.

    Asking about a SQLite file that does not exist answers None without creating the file.

    Raises:
        DatabaseUnavailableError: the database cannot be opened.
    """
    engine = create_store_engine(url)
    database = engine.url.database
    in_memory = database in (None, "", ":memory:")
    if engine.dialect.name == "sqlite" and not in_memory and not Path(str(database)).exists():
        engine.dispose()
        return None
    locked = read_only_url(url)  # a file this process may not write is read as it is
    if locked is not None:
        engine.dispose()
        engine = create_store_engine(locked)
    try:
        with connect(engine, url, "reading the schema version") as connection:
            require_supported_server(connection, url)
            return _revision(connection)
    finally:
        engine.dispose()


def upgrade(url: str) -> None:
    """Bring ``url``'s database to the newest migration, creating the schema if needed.

    Raises:
        DatabaseUnavailableError: the database cannot be opened.
        StoreError: a migration failed (its transaction is rolled back) or the database was
            migrated by a newer executus.
    """
    engine = create_store_engine(url)
    try:
        with _migrating(engine, url) as connection:
            _check_known(connection, url)
            _upgrade_to_head(connection)
    finally:
        engine.dispose()


def ensure_schema(engine: Engine, url: str, *, create: bool = True) -> None:
    """Make sure the store can use ``engine``'s database: create a fresh one, refuse an old one.

    Args:
        engine: the store's engine.
        url: the database, as the user gave it (for messages).
        create: give a fresh database the schema; False (a read-only database) refuses it.

    Raises:
        SchemaOutdatedError: the database is behind this code's migrations.
        StoreError: the database was migrated by a newer executus, or holds tables that no
            migration made.
        DatabaseUnavailableError: the database cannot be opened, or its server is older than
            PostgreSQL 13.
    """
    with connect(engine, url, "reading the schema version") as connection:
        require_supported_server(connection, url)
        current = _revision(connection)
        fresh = current is None and not _has_any_table(connection)
    head = head_revision()
    if current == head:
        return
    if fresh and not create:
        raise StoreError(f"database {display_url(url)} is empty: it holds no executus runs")
    if fresh:
        with _migrating(engine, url) as connection:
            # Re-read under the lock: another process may have created the schema meanwhile.
            if _revision(connection) is None and not _has_any_table(connection):
                _upgrade_to_head(connection)
    with connect(engine, url, "reading the schema version") as connection:
        _check_known(connection, url)
        current = _revision(connection)
        stray = sorted(set(inspect(connection).get_table_names()) & set(metadata.tables))
    if current == head:
        return
    if current is None and stray:
        raise StoreError(
            f"database {display_url(url)} has executus tables ({', '.join(stray)}) but no schema "
            "version: they were not made by executus's migrations"
        )
    raise SchemaOutdatedError(
        f"database {display_url(url)} is at schema revision {current or 'base'}, but this executus "
        f"needs {head}: run `executus db upgrade` (with --db or EXECUTUS_DB naming this database)"
    )


@contextmanager
def _migrating(engine: Engine, url: str) -> Iterator[Connection]:
    with connect(engine, url, "migrating the schema") as connection:
        require_supported_server(connection, url)
        connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
            yield connection


def _upgrade_to_head(connection: Connection) -> None:
    from alembic import command  # only to migrate: see the module docstring

    command.upgrade(alembic_config(connection), "head")


def _revision(connection: Connection) -> str | None:
    """The database's revision, read as Alembic keeps it: None without a version row.

    Raises:
        StoreError: the version table holds more than one revision (branches executus never makes).
    """
    if not inspect(connection).has_table(_VERSION_TABLE):
        return None
    revisions = connection.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars().all()
    if len(revisions) > 1:
        raise StoreError(f"the schema version table holds {len(revisions)} revisions: {', '.join(revisions)}")
    return revisions[0] if revisions else None


def _has_any_table(connection: Connection) -> bool:
    existing = set(inspect(connection).get_table_names())
    return bool(existing & ({*metadata.tables, _VERSION_TABLE}))


def is_known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of this code's migrations (else a newer executus made it)."""
    return revision in known_revisions()


def _check_known(connection: Connection, url: str) -> None:
    """Refuse a database stamped with a revision this code's migrations do not contain."""
    current = _revision(connection)
    if current is None:
        return
    if not is_known_revision(current):
        raise StoreError(
            f"database {display_url(url)} is at schema revision {current}, which this executus "
            "does not know: it was migrated by a newer executus; upgrade executus"
        )
