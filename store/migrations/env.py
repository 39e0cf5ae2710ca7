"""Alembic environment for executus's schema.

Where the connection comes from, first match wins:

1. ``config.attributes["connection"]``: a connection the caller opened, usually inside a
   transaction it commits or rolls back itself (``store.upgrade``, ``open_store``, tests);
2. ``alembic -x db=URL ...``;
3. ``sqlalchemy.url`` in the ini file (the repository's ``alembic.ini`` sets none);
4. ``$EXECUTUS_DB``, else the default SQLite file (``store.default_url()``).

SQLite cannot ALTER most of a table, so migrations render in batch mode there (copy, move,
swap); the same scripts run unchanged on PostgreSQL.
"""

from __future__ import annotations

import logging.config
from typing import Any

from alembic import context
from sqlalchemy import Connection, Index

from store._engine import WRITE_OPTION, create_store_engine
from store._open import default_url
from store._schema import POSTGRES_ONLY, metadata

config = context.config


def _url() -> str:
    return context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option(
        "sqlalchemy.url", default_url()
    )


def _on_this_backend(connection: Connection) -> Any:
    """Leave indexes of PostgreSQL only out of the comparison on any other backend."""

    def include(item: Any, _name: str | None, kind: str, reflected: bool, _compare_to: Any) -> bool:
        postgres_only = (
            kind == "index" and not reflected and isinstance(item, Index) and item.info.get(POSTGRES_ONLY)
        )
        return not postgres_only or connection.dialect.name == "postgresql"

    return include


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=_on_this_backend(connection),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Emit SQL instead of running it (``alembic upgrade --sql``)."""
    url = _url()
    context.configure(
        url=url, target_metadata=metadata, literal_binds=True, render_as_batch=url.startswith("sqlite")
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on a database, in one transaction."""
    shared = config.attributes.get("connection")
    if isinstance(shared, Connection):
        _run_on(shared)
        return
    engine = create_store_engine(_url())
    try:
        with engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                _run_on(connection)
    finally:
        engine.dispose()


if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_offline()
else:
    run_online()
