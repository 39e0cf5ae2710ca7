"""Failed model attempts in words: ``3 x 429 (rate limited)``, for ``why``, ``show`` and reports.

Pure functions of recorded errors (:class:`~executus.events.ErrorInfo`); the text they return
holds only numbers and fixed words, or the recorded error code made inert by the caller.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import datetime
from http import HTTPStatus
from typing import Final, Literal

from executus._events import (
    ErrorInfo,
    Event,
    ModelAttemptFailed,
    ModelFailed,
    ModelResponded,
    RunCancelled,
    RunStarted,
)
from executus._text import terminal_text

__all__ = ["attempts_summary", "failure_label", "retry_statements"]

_STATUS_WORDS: Final = {429: "rate limited", 529: "overloaded"}
"""Statuses whose standard phrase says less than what the providers mean by them."""
_KIND_WORDS: Final = {
    "connection": "connection failed",
    "timeout": "timed out",
    "stream_interrupted": "stream cut off",
    "malformed_response": "malformed reply",
}


def failure_label(error: ErrorInfo) -> str:
    """A failed attempt in a few words: ``429 (rate limited)``, ``503 (service unavailable)``,
    ``connection failed``; the error's type for anything that is not a model call error."""
    if error.status is not None:
        words = _STATUS_WORDS.get(error.status)
        if words is None:
            try:
                words = HTTPStatus(error.status).phrase.lower()
            except ValueError:
                words = "HTTP error"
        return f"{error.status} ({words})"
    if error.code is not None:
        return _KIND_WORDS.get(error.code, terminal_text(error.code, 40))
    return terminal_text(error.type, 40)


def attempts_summary(errors: Sequence[ErrorInfo]) -> str:
    """Failed attempts in order, runs of the same failure counted: ``2 x 503 (service
    unavailable), 1 x connection failed``."""
    labels = [failure_label(error) for error in errors]
    return ", ".join(f"{len(list(run))} x {label}" for label, run in itertools.groupby(labels))


_ENDINGS: Final = {
    "critic_kill": "the critic killed the run",
    "timeout": "the deadline passed",
    "caller": "the caller cancelled the run",
    "shutdown": "the executor shut down",
    "parent_stopped": "its parent run stopped here",
}


def retry_statements(
    events: Sequence[Event], since_start: Callable[[datetime], str]
) -> list[tuple[Literal["outcome", "failure", "recoveries"], str, tuple[int, ...]]]:
    """What the retry policy did, as (section, sentence, cited seqs) for ``why``.

    A step whose attempts failed and that then answered is a recovery; a step that gave up
    says how many attempts it made; a run stopped while a step was retrying says so after its
    outcome: ``step 1: 3 x 429 (rate limited), then the critic killed the run``.
    """
    failures: dict[int, list[ModelAttemptFailed]] = {}
    statements: list[tuple[Literal["outcome", "failure", "recoveries"], str, tuple[int, ...]]] = []
    policy = events[0].agent.retry if isinstance(events[0], RunStarted) else None
    for event in events:
        if isinstance(event, ModelAttemptFailed):
            failures.setdefault(event.step, []).append(event)
        elif isinstance(event, ModelResponded) and event.step in failures:
            failed = failures.pop(event.step)
            summary = attempts_summary([f.error for f in failed])
            text = (
                f"The model call of step {event.step} was retried after {summary}; "
                f"attempt {len(failed) + 1} answered at {since_start(event.at)}."
            )
            statements.append(("recoveries", text, (*(f.seq for f in failed), event.seq)))
        elif isinstance(event, ModelFailed):
            failed = failures.pop(event.step, [])
            errors = [*(f.error for f in failed), event.error]
            cited = (*(f.seq for f in failed), event.seq)
            if failed:
                text = f"The retry policy gave up after {len(errors)} attempts: {attempts_summary(errors)}."
            elif event.error.status is None and event.error.retryable is None:
                continue  # not a model call error: nothing to say about retrying it
            elif policy is None:
                text = "The agent had no retry policy, so the failure was not retried."
            elif policy.retries(event.error):
                text = f"The retry policy allows {policy.attempts} attempt(s) a step, so it was not retried."
            else:
                text = f"The retry policy does not retry {failure_label(event.error)} failures."
            statements.append(("failure", text, cited))
        elif isinstance(event, RunCancelled) and failures:
            step, failed = max(failures.items())
            errors = [f.error for f in failed]
            # No event marks a retry's start: the back-off was over once next_attempt_at passed.
            waiting = event.at < failed[-1].next_attempt_at
            when = "while it waited to retry" if waiting else f"during attempt {len(failed) + 1}"
            text = f"Step {step}: {attempts_summary(errors)}, then {_ENDINGS[event.cause]} {when}."
            statements.append(("outcome", text, (*(f.seq for f in failed), event.seq)))
    return statements
