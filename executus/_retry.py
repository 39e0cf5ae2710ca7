"""The retry policy of a model step: which failed attempts are tried again, and after how long.

Pure: the delay is a function of the policy, the recorded error, the attempt number and the
run's id, so a run and its replay wait exactly alike. There is no random source here: the
jitter that spreads retrying runs apart is drawn from a hash of (run id, step, attempt), and
run ids come from the executor's injected id generator. A replay of the same run therefore
computes the same instants, and different runs hitting the same 429 spread apart.

A policy is recorded in the agent spec of ``run_started`` (``AgentSpec.retry``). A run
recorded without one (every run before retries existed, or an agent with ``retry=None``) made
exactly one attempt per step, and replays so.
"""

from __future__ import annotations

import hashlib
from typing import Final, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CONNECTION", "SERVER_ERRORS", "Failure", "RetryPolicy", "retry_delay"]

CONNECTION: Final = "connection"
"""The ``retry_on`` entry for failures without an HTTP error status that the adapter called
retryable: the connection failed or timed out, a stream was cut off mid-reply, or the server
said mid-stream that it was busy."""
LONGEST_WAIT: Final = 366 * 24 * 3600.0
"""The longest wait before a retry, in seconds: a server asking for more is waited a year."""
SERVER_ERRORS: Final = "5xx"
"""The ``retry_on`` entry for every HTTP status from 500 up (Anthropic's 529 "overloaded" too)."""


class Failure(Protocol):
    """What the policy reads of a failed attempt (an :class:`~executus.events.ErrorInfo`; the
    event catalogue records a policy in its agent spec, so this module cannot import it)."""

    @property
    def status(self) -> int | None: ...
    @property
    def retryable(self) -> bool | None: ...
    @property
    def retry_after(self) -> float | None: ...


class RetryPolicy(BaseModel):
    """How an agent's model calls are retried: attempts, back-off, and which failures qualify.

    The wait before attempt ``n + 1`` is ``min(max_delay, base_delay * 2 ** (n - 1))``,
    shortened by up to ``jitter`` of itself, and never shorter than the server's
    ``retry-after`` when ``honour_retry_after``. It runs on the run's clock: the deadline, the
    critic and a cancel act during it, and a replay on a virtual clock skips it.

    Only :class:`~executus.ModelCallError` failures can qualify (the adapters raise nothing
    else); any other exception a model raises ends the run at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=3, ge=1)
    """Attempts per model step in all, the first included (1: never retry)."""
    base_delay: float = Field(default=0.5, ge=0)
    """Seconds of back-off before the second attempt; doubled before each one after it."""
    max_delay: float = Field(default=8.0, ge=0)
    """The most seconds of back-off (a longer ``retry-after`` from the server still wins)."""
    jitter: float = Field(default=0.25, ge=0, le=1)
    """Up to this fraction of the back-off is taken off, by a hash of (run id, step, attempt):
    0 for none. Deterministic: a replay waits exactly as the run did."""
    honour_retry_after: bool = True
    """Wait at least as long as the server's ``retry-after`` (or ``retry-after-ms``) asks."""
    retry_on: tuple[str, ...] = (CONNECTION, "408", "409", "429", SERVER_ERRORS)
    """Which failures are retried: HTTP statuses (``"429"``), ``"5xx"`` for every server
    error, and ``"connection"`` for failures without a status that the adapter called
    retryable (connection errors, timeouts, streams cut off)."""

    @field_validator("retry_on")
    @classmethod
    def _known_entries(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        for entry in entries:
            if entry not in (CONNECTION, SERVER_ERRORS) and not (
                entry.isdigit() and 400 <= int(entry) <= 599
            ):
                raise ValueError(
                    f"retry_on entry {entry!r} is not 'connection', '5xx' or an HTTP error status (400-599)"
                )
        return entries

    def retries(self, error: Failure) -> bool:
        """Whether this policy retries a failure like ``error`` (attempts aside)."""
        if error.status is not None:
            return str(error.status) in self.retry_on or (
                error.status >= 500 and SERVER_ERRORS in self.retry_on
            )
        return bool(error.retryable) and CONNECTION in self.retry_on

    def backoff(self, attempt: int, run_id: str, step: int) -> float:
        """Seconds of back-off after failed attempt ``attempt`` (1-based), jitter applied."""
        delay = min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 64))
        if self.jitter:
            delay *= 1.0 - self.jitter * _unit(run_id, step, attempt)
        return delay


def retry_delay(
    policy: RetryPolicy | None, error: Failure, attempt: int, run_id: str, step: int
) -> float | None:
    """Seconds to wait before trying step ``step`` again after its attempt ``attempt`` failed
    with ``error``; None when the policy gives up (no policy, not retried, or no attempts left)."""
    if policy is None or attempt >= policy.attempts or not policy.retries(error):
        return None
    delay = policy.backoff(attempt, run_id, step)
    if policy.honour_retry_after and error.retry_after is not None:
        delay = max(delay, error.retry_after)
    return min(delay, LONGEST_WAIT)


def _unit(run_id: str, step: int, attempt: int) -> float:
    """A number in [0, 1) drawn from (run id, step, attempt): the same for a run and its replay."""
    digest = hashlib.sha256(f"executus-retry\n{run_id}\n{step}\n{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64
