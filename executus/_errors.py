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
├── ModelCallError            one attempt at a model call failed (HTTP status, connection, bad reply)
├── EventLogError             a log that cannot be folded into a run
│   ├── EventOrderError       a seq gap, a repeated seq, or an event after run_finished
│   ├── UnknownEventError     a stored event kind this version does not know
│   └── SchemaVersionError    a stored event written by a newer executus
├── StoreError                the event store failed or refused
│   ├── ConcurrencyError      another writer appended to the run first (optimistic lock)
│   ├── LeaseLostError        the run's lease moved on to another epoch (fenced append, renew)
│   ├── LeaseHeldError        another owner's lease on the run is live
│   ├── RunExistsError        a run with that id is already queued, leased or recorded
│   ├── RecordingFailedError  a run stopped because its events could not be committed
│   ├── RunNotFoundError      no run with that id
│   ├── BlobNotFoundError     no blob with that sha256
│   ├── DatabaseUnavailableError  the database cannot be reached or opened
│   │   └── StoreUnavailableError  the store's writer kept failing and gave up
│   └── SchemaOutdatedError   the database is behind the code's migrations
└── RunNotResumableError      resume asked for a run that has already finished
```
"""

from __future__ import annotations

from datetime import datetime

__all__ = [
    "BlobNotFoundError",
    "ConcurrencyError",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "EventLogError",
    "EventOrderError",
    "ExecutusError",
    "LeaseHeldError",
    "LeaseLostError",
    "ModelCallError",
    "RecordingFailedError",
    "RunExistsError",
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


class ModelCallError(ExecutusError):
    """One attempt at a model call failed: an HTTP error status, a connection that failed or
    timed out, or a reply that could not be read. Never carries the API key.

    Attributes:
        provider: ``openai`` or ``anthropic`` (the adapter's API).
        model: the provider's model name.
        detail: what went wrong, in the provider's words when it said.
        status: the HTTP status, or None when no response arrived (connection, timeout).
        error_type: the provider's error type or code (``rate_limit_exceeded``,
            ``overloaded_error``), or the failure's kind (``connection``, ``timeout``,
            ``malformed_response``, ``stream_interrupted``).
        request_id: the provider's request id, for its support.
        retry_after: seconds the provider asked to wait before trying again, from the
            ``retry-after-ms`` or ``retry-after`` header; None when it did not say.
        retryable: whether trying again may succeed: connection errors, timeouts, 408, 409,
            429, 5xx (Anthropic's 529 too), and replies cut off mid-stream.
    """

    def __init__(
        self,
        provider: str,
        model: str,
        detail: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
    ) -> None:
        self.provider = provider
        self.model = model
        self.detail = detail
        self.status = status
        self.error_type = error_type
        self.request_id = request_id
        self.retry_after = retry_after
        self.retryable = retryable
        what = f"HTTP {status}" if status is not None else (error_type or "failed")
        if status is not None and error_type:
            what += f" {error_type}"
        notes = [f"request {request_id}"] if request_id else []
        if retry_after is not None:
            notes.append(f"retry after {retry_after:g} s")
        notes.append("retryable" if retryable else "not retryable")
        super().__init__(f"{provider} {model}: {what}: {detail} ({', '.join(notes)})")


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


class LeaseLostError(StoreError):
    """The run's lease is no longer ours: another acquire or claim moved its epoch on.

    Raised by a fenced append (nothing of it was written) and by a renew. The holder must stop
    working on the run: someone else may be working on it now.

    Attributes:
        run_id: the run.
        epoch: the epoch the caller held.
        owner: who holds the run now (None if nobody does, or the store does not say).
    """

    def __init__(self, run_id: str, epoch: int, owner: str | None) -> None:
        self.run_id = run_id
        self.epoch = epoch
        self.owner = owner
        now = f"now held by {owner}" if owner else "no longer held at that epoch"
        super().__init__(f"run {run_id}: lost its lease (epoch {epoch}); {now}; nothing was written")


class LeaseHeldError(StoreError):
    """Another owner's lease on the run is live, so it cannot be acquired.

    Attributes:
        run_id: the run.
        owner: who holds it.
        expires_at: when that lease runs out unless its owner renews it (the store's clock).
    """

    def __init__(self, run_id: str, owner: str, expires_at: datetime) -> None:
        self.run_id = run_id
        self.owner = owner
        self.expires_at = expires_at
        super().__init__(
            f"run {run_id} is owned by {owner} until {expires_at.isoformat(timespec='seconds')} "
            "(its lease is live); wait for it to expire, or take it over with --force "
            "(force=True) if that owner is surely gone"
        )


class RunExistsError(StoreError):
    """A run with that id is already queued, leased or recorded."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id!r} already exists; submit it under another id")


class RecordingFailedError(StoreError):
    """A run was stopped because the store could not commit its events and gave up.

    Nothing was started whose start event is not durable; the session's post-run hook and
    cleanup and the executor's ports still ran. The log in the store is valid and ends at
    ``last_durable_seq``; :meth:`~executus.Executor.resume` can carry the run on once the
    store is back.

    Attributes:
        run_id: the run that was stopped.
        last_durable_seq: the last seq of the run that the store holds.
        cause: what the store raised.
    """

    def __init__(self, run_id: str, last_durable_seq: int, cause: BaseException) -> None:
        self.run_id = run_id
        self.last_durable_seq = last_durable_seq
        self.cause = cause
        super().__init__(
            f"run {run_id}: the store failed and the run was stopped; "
            f"its log ends at seq {last_durable_seq} ({type(cause).__name__}: {cause})"
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
    """The database cannot be reached or opened; the message names the URL without its password.

    Attributes:
        server_down: a database server could not be connected to (refused, unreachable, still
            starting): worth retrying later, unlike a bad URL, a missing file or a refused login.
    """

    def __init__(self, message: str, *, server_down: bool = False) -> None:
        super().__init__(message)
        self.server_down = server_down


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
