"""What a replay returns: the first divergence, the what-if comparison, and their text reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from executus import Result
from executus.events import CriticDecided, CriticSpec, Event
from replay._diff import FieldDifference
from replay._errors import DivergenceError

__all__ = ["CriticAction", "ReplayDivergence", "ReplayResult", "ReplayRunsResult", "WhatIfReport"]


def _summary(event: Event | None) -> str:
    if event is None:
        return "(nothing: the log ends here)"
    detail = {
        "model_requested": lambda e: (
            f"step {e.step}, fingerprint {e.fingerprint[:12]}, {e.message_count} messages"
        ),
        "model_responded": lambda e: f"step {e.step}, {len(e.tool_calls)} tool call(s), text {e.text!r:.60}",
        "model_attempt_failed": lambda e: f"step {e.step}, attempt {e.attempt}, {e.error}",
        "model_failed": lambda e: f"step {e.step}, {e.error}",
        "tool_started": lambda e: f"{e.name} ({e.call_id})",
        "tool_finished": lambda e: f"{e.name} ({e.call_id}), " + (f"error {e.error}" if e.error else "ok"),
        "critic_decided": lambda e: f"{e.decision}: {e.reason}",
        "run_cancelled": lambda e: f"cause {e.cause}: {e.detail}",
        "run_finished": lambda e: f"status {e.status}" + (f", {e.error}" if e.error else ""),
        "steer_injected": lambda e: f"{len(e.messages)} message(s) from {e.source}",
    }.get(event.kind)
    return f"{event.kind} ({detail(event)})" if detail else event.kind


@dataclass(frozen=True, slots=True)
class ReplayDivergence:
    """The first event where a replay differs from its recording.

    Attributes:
        run_id: the recorded run.
        seq: the seq of the first differing event.
        expected: the recorded event at ``seq`` (None: the replay went on past the recording).
        actual: the replayed event at ``seq`` (None: the replay stopped short).
        differences: the fields that differ (``kind`` first when the kinds differ).
        request_differences: for a ``model_requested`` fingerprint mismatch, how the model
            request rebuilt from each log differs (which message, which field).
    """

    run_id: str
    seq: int
    expected: Event | None
    actual: Event | None
    differences: tuple[FieldDifference, ...]
    request_differences: tuple[FieldDifference, ...] = ()

    @property
    def expected_kind(self) -> str | None:
        """The recorded event's kind."""
        return self.expected.kind if self.expected is not None else None

    @property
    def actual_kind(self) -> str | None:
        """The replayed event's kind."""
        return self.actual.kind if self.actual is not None else None

    def __str__(self) -> str:
        lines = [
            f"replay of run {self.run_id} diverged at seq {self.seq}",
            f"  expected: {_summary(self.expected)}",
            f"  actual:   {_summary(self.actual)}",
        ]
        if self.expected is not None and self.actual is not None:
            lines.append("  differences:")
            lines += [
                f"    {line}" for difference in self.differences for line in str(difference).splitlines()
            ]
        if self.request_differences:
            lines.append("  the model request differs (rebuilt from each log):")
            lines += [
                f"    {line}"
                for difference in self.request_differences
                for line in str(difference).splitlines()
            ]
        return "\n".join(lines)


def _offset(seconds: float) -> str:
    sign, seconds = ("-" if seconds < 0 else "+"), abs(seconds)
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{sign}{hours}h{minutes:02d}m{rest:04.1f}s"
    return f"{sign}{minutes}m{rest:04.1f}s" if minutes else f"{sign}{rest:g}s"


@dataclass(frozen=True, slots=True)
class CriticAction:
    """One critic decision, placed on the run's timeline.

    Attributes:
        offset: seconds from the run's start.
        decision: nudge, extend, raise_steps or kill.
        reason: the critic's reason.
        at: the instant.
    """

    offset: float
    decision: str
    reason: str
    at: datetime

    @classmethod
    def of(cls, event: CriticDecided, start: datetime) -> CriticAction:
        """Place a ``critic_decided`` event on the timeline of a run started at ``start``."""
        return cls((event.at - start).total_seconds(), event.decision, event.reason, event.at)

    def __str__(self) -> str:
        return f"{self.decision} at {_offset(self.offset)}"


@dataclass(frozen=True, slots=True)
class WhatIfReport:
    """How a run would have gone with another critic, against what happened.

    Attributes:
        critic: the what-if critic's configuration (None: no critic at all).
        recorded_status: how the recorded run ended.
        replayed_status: how it ends with the what-if critic (``unfinished``: it was still
            running when the replay reached its horizon).
        recorded_decisions: the recorded critic's decisions.
        replayed_decisions: the what-if critic's decisions.
        recorded_duration: seconds the recorded run took.
        replayed_duration: seconds it takes with the what-if critic.
    """

    critic: CriticSpec | None
    recorded_status: str
    replayed_status: str
    recorded_decisions: tuple[CriticAction, ...]
    replayed_decisions: tuple[CriticAction, ...]
    recorded_duration: float
    replayed_duration: float

    def _first(self, decisions: Sequence[CriticAction], kind: str) -> CriticAction | None:
        return next((action for action in decisions if action.decision == kind), None)

    @property
    def killed_at(self) -> float | None:
        """Seconds from the start at which the what-if critic kills the run, if it does."""
        action = self._first(self.replayed_decisions, "kill")
        return action.offset if action else None

    @property
    def changed(self) -> bool:
        """Whether the what-if critic decides anything differently, or the run ends differently."""
        mine = [(a.decision, round(a.offset, 3)) for a in self.replayed_decisions]
        theirs = [(a.decision, round(a.offset, 3)) for a in self.recorded_decisions]
        return mine != theirs or self.recorded_status != self.replayed_status

    def __str__(self) -> str:
        name = self.critic.name if self.critic else "no critic"
        settings = ", ".join(
            f"{k}={v}" for k, v in sorted((self.critic.settings if self.critic else {}).items())
        )

        def line(status: str, duration: float, actions: Sequence[CriticAction]) -> str:
            decided = ", ".join(str(action) for action in actions) or "no critic decisions"
            if len(actions) > 6:
                decided = ", ".join(str(action) for action in actions[:5]) + f", … {len(actions) - 5} more"
            ended = "still running at the replay horizon" if status == "unfinished" else status
            return f"{ended} at {_offset(duration)} ({decided})"

        lines = [
            f"what-if critic: {name}" + (f" ({settings})" if settings else ""),
            f"  recorded: {line(self.recorded_status, self.recorded_duration, self.recorded_decisions)}",
            f"  what-if:  {line(self.replayed_status, self.replayed_duration, self.replayed_decisions)}",
        ]
        recorded_kill = self._first(self.recorded_decisions, "kill")
        if self.killed_at is not None and recorded_kill is None:
            lines.append(f"  => would have been killed at {_offset(self.killed_at)}")
        elif self.killed_at is not None and recorded_kill is not None:
            delta = recorded_kill.offset - self.killed_at
            when = (
                "at the same time"
                if abs(delta) < 1e-3
                else f"{_offset(abs(delta))[1:]} " + ("earlier" if delta > 0 else "later")
            )
            lines.append(f"  => would still have been killed, {when}")
        elif recorded_kill is not None:
            lines.append(f"  => would not have been killed (ends {self.replayed_status})")
        else:
            lines.append("  => same decisions" if not self.changed else "  => different decisions, no kill")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """The outcome of replaying one recorded run.

    Attributes:
        run_id: the recorded run.
        recorded: the recorded events.
        replayed: the events the replay produced.
        divergence: the first difference, or None when the replay is identical.
        agent_changes: how the agent given to the replay differs from the recorded agent spec
            (these are the change under test, not a divergence by themselves).
        notes: other things worth knowing (a different executor version).
        what_if: the what-if critic comparison, when a what-if critic was given.
        result: what the executor returned for the replayed run.
    """

    run_id: str
    recorded: tuple[Event, ...]
    replayed: tuple[Event, ...]
    divergence: ReplayDivergence | None
    agent_changes: tuple[FieldDifference, ...] = ()
    notes: tuple[str, ...] = ()
    what_if: WhatIfReport | None = None
    result: Result | None = None

    @property
    def identical(self) -> bool:
        """Whether the replay produced the recorded events (times within the tolerance)."""
        return self.divergence is None

    def report(self) -> str:
        """The whole result as text, for a terminal or a pytest failure.

        For a what-if replay, the what-if comparison (a different critic is expected to
        make the events differ), then where the events first differ.
        """
        if self.what_if is not None:
            lines = str(self.what_if).splitlines()
            if self.divergence is not None:
                divergence = self.divergence
                recorded = divergence.expected_kind or "(nothing)"
                lines.append(
                    f"  events first differ at seq {divergence.seq}: recorded {recorded}, "
                    f"what-if {divergence.actual_kind or '(nothing)'}"
                )
            return "\n".join(lines)
        if self.divergence is None:
            lines = [f"replay of run {self.run_id}: identical ({len(self.recorded)} events)"]
        else:
            lines = str(self.divergence).splitlines()
        if self.agent_changes:
            lines.append("  the agent differs from the recorded one (the change under test):")
            lines += [f"    {line}" for change in self.agent_changes for line in str(change).splitlines()]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def raise_on_divergence(self) -> None:
        """Raise :class:`DivergenceError` (its message is :meth:`report`) if the replay diverged."""
        if self.divergence is not None:
            raise DivergenceError(self.report())


@dataclass(frozen=True, slots=True)
class ReplayRunsResult:
    """The outcome of replaying many runs.

    Attributes:
        results: every run's result, by run id, in the order given.
        errors: runs that could not be replayed at all, by run id, with the reason.
    """

    results: Mapping[str, ReplayResult]
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def failures(self) -> dict[str, ReplayDivergence]:
        """The first divergence of every run that diverged."""
        return {run_id: r.divergence for run_id, r in self.results.items() if r.divergence is not None}

    @property
    def ok(self) -> bool:
        """Whether every run replayed identically."""
        return not self.failures and not self.errors
