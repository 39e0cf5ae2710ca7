"""The SQL event store: SQLite by default, PostgreSQL at scale, migrated with Alembic.

``open_store()`` is the way in: it resolves the configured database, creates a fresh one and
refuses one whose schema is behind. :class:`SqlStore` is held to the same contract as the
core's :class:`executus.storage.MemoryStore` and adds what the CLI needs (global tailing, raw records,
id suggestions). The ``executus db`` commands call :func:`upgrade` and :func:`current_revision`;
``executus verify`` and ``checkpoint`` call :func:`verify_run`, :func:`verify_all`,
:func:`verify_checkpoint` and :func:`signed_checkpoint`.
"""

from store._engine import display_url, hide_passwords
from store._migrate import current_revision, head_revision, is_known_revision, upgrade
from store._open import ENV_DB, default_url, make_default_directory, open_store
from store._settings import WriterSettings
from store._sql import SqlStore, StoredEvent
from store._verify import (
    RunEvidence,
    run_evidence,
    signed_checkpoint,
    verify_all,
    verify_checkpoint,
    verify_run,
)

__all__ = [
    "ENV_DB",
    "RunEvidence",
    "SqlStore",
    "StoredEvent",
    "WriterSettings",
    "current_revision",
    "default_url",
    "display_url",
    "head_revision",
    "hide_passwords",
    "is_known_revision",
    "make_default_directory",
    "open_store",
    "run_evidence",
    "signed_checkpoint",
    "upgrade",
    "verify_all",
    "verify_checkpoint",
    "verify_run",
]
