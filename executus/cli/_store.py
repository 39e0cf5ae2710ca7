"""The CLI's view of the database: opening it, and finding a run by its id or a prefix of it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from executus._errors import RunNotFoundError, StoreError
from executus._store import EventStore

__all__ = ["AmbiguousRunIdError", "BrowsableStore", "StoreOpener", "open_sql_store", "resolve_run_id"]

MIN_SUGGESTION_PREFIX = 3
"""A suggested run id must share at least this many leading characters with what was typed."""


@runtime_checkable
class BrowsableStore(EventStore, Protocol):
    """An event store the CLI can browse: the SQL store, or a test double of it."""

    @property
    def display_url(self) -> str:
        """The database URL without its password, for messages."""
        ...

    def run_ids_with_prefix(self, prefix: str, limit: int = 5) -> list[str]:
        """Up to ``limit`` run ids that start with ``prefix``, sorted."""
        ...

    def close(self) -> None:
        """Release the connection pool."""
        ...


class StoreOpener(Protocol):
    """Opens the store at a URL (None: ``EXECUTUS_DB`` or the default SQLite file)."""

    def __call__(self, url: str | None, *, read_only: bool = False) -> BrowsableStore: ...


def open_sql_store(url: str | None, *, read_only: bool = False) -> BrowsableStore:
    """Open the SQL store (imported late, so ``executus --help`` stays fast).

    Raises:
        DatabaseUnavailableError: the database cannot be reached or opened.
        SchemaOutdatedError: the database needs ``executus db upgrade``.
    """
    import store as sql_store

    return sql_store.open_store(url, read_only=read_only)


class AmbiguousRunIdError(StoreError):
    """A run id prefix matches more than one run."""

    def __init__(self, prefix: str, matches: list[str]) -> None:
        self.prefix = prefix
        self.matches = matches
        super().__init__(
            f"run id {prefix!r} is ambiguous: {', '.join(matches)} all start with it; type more of the id"
        )


def resolve_run_id(event_store: BrowsableStore, typed: str) -> str:
    """The full id of the run ``typed`` names: its exact id, or a prefix only one run has.

    Raises:
        RunNotFoundError: no run has that id or prefix; suggests runs whose ids share the
            longest prefix with it (at least three characters).
        AmbiguousRunIdError: several runs start with it.
    """
    try:
        return event_store.get_run(typed).run_id
    except RunNotFoundError:
        pass
    matches = sorted(event_store.run_ids_with_prefix(typed, limit=5))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AmbiguousRunIdError(typed, matches)
    for length in range(len(typed) - 1, MIN_SUGGESTION_PREFIX - 1, -1):
        close = sorted(event_store.run_ids_with_prefix(typed[:length], limit=5))
        if close:
            raise RunNotFoundError(typed, close)
    raise RunNotFoundError(typed)
