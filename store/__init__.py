"""The SQL event store: SQLite by default, PostgreSQL at scale, migrated with Alembic.

``open_store()`` is the way in: it resolves the configured database, creates a fresh one and
refuses one whose schema is behind. :class:`SqlStore` is held to the same contract as the
core's :class:`executus.MemoryStore` and adds what the CLI needs (global tailing, raw records,
id suggestions). The ``executus db`` commands call :func:`upgrade` and :func:`current_revision`.
"""

from store._engine import display_url
from store._migrate import current_revision, head_revision, upgrade
from store._open import ENV_DB, default_url, open_store
from store._settings import WriterSettings
from store._sql import SqlStore, StoredEvent

__all__ = [
    "ENV_DB",
    "SqlStore",
    "StoredEvent",
    "WriterSettings",
    "current_revision",
    "default_url",
    "display_url",
    "head_revision",
    "open_store",
    "upgrade",
]
