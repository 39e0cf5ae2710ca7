"""The exception tree of executus.

Every exception the library raises on purpose derives from :class:`ExecutusError`, so a
host can catch one type at its boundary. A run that *ends badly* (model error, timeout,
kill, cancel) is not an exception: it is a :class:`~executus.Result` with a status. The
exceptions below are for misuse and for a log or store that cannot be trusted.

```
ExecutusError
├── ConfigurationError        an agent, tool, clock or executor is set up wrongly
│   └── UnknownModelError     the agent names a model the resolver does not know
├── ScriptExhaustedError      a fake model was asked for more replies than its script holds
├── EventLogError             a log that cannot be folded into a run
│   ├── EventOrderError       a seq gap, a repeated seq, or an event after run_finished
│   ├── UnknownEventError     a stored event kind this version does not know
│   └── SchemaVersionError    a stored event written by a newer executus
├── StoreError                the event store failed or refused
│   ├── ConcurrencyError      another writer appended to the run first (optimistic lock)
│   ├── RunNotFoundError      no run with that id
│   ├── BlobNotFoundError     no blob with that sha256
│   ├── DatabaseUnavailableError  the database cannot be reached or opened
│   │   └── StoreUnavailableError  the store's writer kept failing and gave up
│   └── SchemaOutdatedError   the database is behind the code's migrations
└── RunNotResumableError      resume asked for a run that has already finished
```
"""

from __future__ import annotations

__all__ = [
    "BlobNotFoundError",
    "ConcurrencyError",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "EventLogError",
    "EventOrderError",
    "ExecutusError",
    "RunNotFoundError",
    "RunNotResumableError",
    "SchemaOutdatedError",
    "SchemaVersionError",
    "ScriptExhaustedError",
    "StoreError",
    "StoreUnavailableError",
    "UnknownEventError",
    "UnknownModelError",
]


class ExecutusError(Exception):
    """Root of every error executus raises on purpose."""


class ConfigurationError(ExecutusError):
    """An agent, tool, clock or executor is set up in a way that cannot work."""


class UnknownModelError(ConfigurationError):
    """The agent names a model that the executor's resolver does not know."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        choices = ", ".join(sorted(known)) or "none registered"
        super().__init__(f"unknown model {name!r} (known: {choices})")


class ScriptExhaustedError(ExecutusError):
    """A scripted fake model was asked for reply N but its script holds fewer."""


class EventLogError(ExecutusError):
    """A sequence of events cannot be folded into a run state."""


class EventOrderError(EventLogError):
    """Events out of order: a gap, a repeat, a wrong run, or anything after ``run_finished``."""

    def __init__(self, run_id: str, message: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id}: {message}")


class UnknownEventError(EventLogError):
    """A stored event kind this version of executus does not know."""


class SchemaVersionError(EventLogError):
    """A stored event was written with a schema version newer than this code understands."""


class StoreError(ExecutusError):
    """The event store failed, or refused an operation."""


class ConcurrencyError(StoreError):
    """Another writer appended to the run first; nothing of this append was written.

    Attributes:
        run_id: the run appended to.
        expected_seq: the last seq the writer believed the run had.
        actual_seq: the last seq the store actually holds.
    """

    def __init__(self, run_id: str, expected_seq: int, actual_seq: int) -> None:
        self.run_id = run_id
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq
        super().__init__(
            f"run {run_id}: expected to append after seq {expected_seq}, "
            f"but the log already ends at seq {actual_seq} (another writer got there first)"
        )


class RunNotFoundError(StoreError):
    """No run with the given id exists in the store."""

    def __init__(self, run_id: str, suggestions: list[str] | None = None) -> None:
        self.run_id = run_id
        self.suggestions = suggestions or []
        hint = f" (did you mean {', '.join(self.suggestions)}?)" if self.suggestions else ""
        super().__init__(f"no run {run_id!r}{hint}")


class BlobNotFoundError(StoreError):
    """No blob with the given sha256 exists in the store."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        super().__init__(f"no blob with sha256 {sha256}")


class DatabaseUnavailableError(StoreError):
    """The database cannot be reached or opened; the message names the URL without its password."""


class StoreUnavailableError(DatabaseUnavailableError):
    """The store's writer retried a transient failure (a lock it waited for too long, a refused,
    reset or stalled connection, a server restart) for its whole retry window and gave up.

    Nothing of the write is durable unless :attr:`outcome_unknown` is set: then the connection
    was lost while committing and never came back to tell whether the commit happened.

    Attributes:
        run_id: the run appended to (None for a blob).
        expected_seq: the seq the append expected the run's log to end at; unless the outcome is
            unknown, it is the run's last durable seq as far as this write knew.
        outcome_unknown: whether the batch may have been committed after all.
    """

    def __init__(
        self,
        message: str,
        run_id: str | None = None,
        expected_seq: int | None = None,
        *,
        outcome_unknown: bool = False,
    ) -> None:
        self.run_id = run_id
        self.expected_seq = expected_seq
        self.outcome_unknown = outcome_unknown
        super().__init__(message)


class SchemaOutdatedError(StoreError):
    """The database schema is behind this code's migrations; the message names the command to run."""


class RunNotResumableError(ExecutusError):
    """Resume was asked for a run whose log already ends with ``run_finished``."""

    def __init__(self, run_id: str, status: str) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(f"run {run_id} already finished with status {status}; nothing to resume")
