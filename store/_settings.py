"""How long the store's writer waits, and for how long it retries, before a run gives up."""

from __future__ import annotations

from dataclasses import dataclass

from executus import ConfigurationError

__all__ = ["WriterSettings"]


@dataclass(frozen=True, slots=True)
class WriterSettings:
    """Bounds on every wait of the store's writes (``SqlStore(url, settings=...)``).

    A write that hits a *transient* failure (a lock held by another process past
    ``lock_timeout``, a connection refused, reset or stalled, a server restarting) is retried
    with exponential back-off, starting at ``first_backoff`` and doubling up to ``max_backoff``,
    until ``retry_window`` has passed since its first attempt; then it fails with
    :class:`executus.StoreUnavailableError`. Any other failure is not retried.
    """

    lock_timeout: float = 5.0
    """Seconds one attempt waits for a lock: SQLite's busy timeout, PostgreSQL's ``lock_timeout``."""
    statement_timeout: float = 30.0
    """Seconds one statement may run on PostgreSQL (``statement_timeout``). A server that stops
    answering altogether (stopped, or cut off) cannot enforce it, so the writer also abandons
    its connection once a transaction has taken ``lock_timeout + statement_timeout + 1`` s."""
    connect_timeout: float = 10.0
    """Seconds to wait for a PostgreSQL connection (libpq counts at least 2)."""
    retry_window: float = 30.0
    """Seconds from a write's first attempt during which transient failures are retried."""
    first_backoff: float = 0.05
    """Seconds before the first retry."""
    max_backoff: float = 1.0
    """The longest pause between two attempts."""
    max_group: int = 1000
    """At most this many waiting writes share one transaction."""

    def __post_init__(self) -> None:
        for name in ("lock_timeout", "statement_timeout", "connect_timeout", "first_backoff", "max_backoff"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(
                    f"WriterSettings.{name} must be positive, got {getattr(self, name)!r}"
                )
        if self.retry_window < 0:
            raise ConfigurationError(
                f"WriterSettings.retry_window must not be negative, got {self.retry_window!r}"
            )
        if self.max_group < 1:
            raise ConfigurationError(f"WriterSettings.max_group must be at least 1, got {self.max_group!r}")

    @property
    def transaction_deadline(self) -> float:
        """Seconds after which a PostgreSQL transaction's connection is abandoned as stalled."""
        return self.lock_timeout + self.statement_timeout + 1.0
