"""The critic: a watchdog that notices a stalled run and nudges, extends, raises or kills it.

A critic is consulted by the executor's watchdog every ``check_interval`` seconds on the run's
clock. It decides from the run's state alone (the fold of the log) and the current time, so
its decisions replay exactly, and a different critic can be tried on a recorded run
("what-if"). The executor records each decision as ``critic_decided`` and applies it through
the fold: the deadline, step ceiling, queued nudges and kill cause all live in the log.

The default :class:`IdleCritic` calls a run *idle* when it has shown no activity (no event
other than a critic decision) for ``idle_after`` seconds. It consults its escalation policy
once per idle period; a decision starts a new period, so a run that stays stuck climbs the
policy's ladder one rung per period: by default nudge, then extend the deadline, then kill.
A kill is sticky: nothing un-kills a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from executus._errors import ConfigurationError
from executus._events import CriticSpec
from executus._state import RunState

__all__ = [
    "Critic",
    "CriticDecision",
    "EscalationPolicy",
    "IdleCritic",
    "Ladder",
    "Stall",
    "extend",
    "kill",
    "nudge",
    "raise_steps",
]


@dataclass(frozen=True, slots=True)
class CriticDecision:
    """What a critic wants done about a run.

    Attributes:
        kind: nudge (queue a message for the model), extend (move the deadline later),
            raise_steps (allow more model calls), or kill (end the run now, status killed).
        reason: why, in words a log reader understands.
        nudge: the message to queue, for a nudge.
        seconds: how far to move the deadline, for extend.
        steps: how many model calls to add, for raise_steps.
    """

    kind: Literal["nudge", "extend", "raise_steps", "kill"]
    reason: str
    nudge: str | None = None
    seconds: float = 0.0
    steps: int = 0


def nudge(text: str, reason: str = "the run went idle") -> CriticDecision:
    """A decision to queue ``text`` for the model's next step."""
    return CriticDecision("nudge", reason, nudge=text)


def extend(seconds: float, reason: str = "the run is still idle; allowing it more time") -> CriticDecision:
    """A decision to move the run's deadline ``seconds`` later."""
    return CriticDecision("extend", reason, seconds=seconds)


def raise_steps(steps: int, reason: str = "allowing more model calls") -> CriticDecision:
    """A decision to allow ``steps`` more model calls."""
    return CriticDecision("raise_steps", reason, steps=steps)


def kill(reason: str = "the run stayed idle after nudges and an extension") -> CriticDecision:
    """A decision to end the run now, with status killed."""
    return CriticDecision("kill", reason)


@dataclass(frozen=True, slots=True)
class Stall:
    """What an escalation policy is told about an idle run.

    Attributes:
        level: decisions already made in this stall (0 at the first idle period).
        idle_seconds: seconds since the run's last activity.
        state: the run's state.
    """

    level: int
    idle_seconds: float
    state: RunState


@runtime_checkable
class EscalationPolicy(Protocol):
    """Decides what to do about a stall; consulted once per idle period."""

    def __call__(self, stall: Stall) -> CriticDecision | None: ...


class Ladder:
    """Escalate one rung per idle period; past the last rung, repeat it.

    Args:
        rungs: decisions in order, e.g. ``[nudge("..."), extend(60), kill()]``.
    """

    def __init__(self, rungs: Sequence[CriticDecision]) -> None:
        if not rungs:
            raise ConfigurationError("a critic ladder needs at least one rung")
        self.rungs = tuple(rungs)

    def __call__(self, stall: Stall) -> CriticDecision:
        return self.rungs[min(stall.level, len(self.rungs) - 1)]

    def describe(self) -> list[str]:
        """The rungs in words, for the run's critic snapshot."""
        details = {"nudge": "", "extend": "+{seconds:g}s", "raise_steps": "+{steps}", "kill": ""}
        return [
            f"{rung.kind}{details[rung.kind].format(seconds=rung.seconds, steps=rung.steps)}"
            for rung in self.rungs
        ]


@runtime_checkable
class Critic(Protocol):
    """A run watchdog. Implementations must decide from ``state`` and ``now`` alone."""

    @property
    def check_interval(self) -> float:
        """Seconds between consultations."""
        ...

    def spec(self) -> CriticSpec:
        """The configuration recorded in ``run_started``."""
        ...

    def decide(self, state: RunState, now: datetime) -> CriticDecision | None:
        """What to do now, or None to leave the run alone."""
        ...


class IdleCritic:
    """The default critic: acts on runs idle for ``idle_after`` seconds.

    Args:
        idle_after: seconds without activity that make an idle period.
        policy: what to do in each idle period; default nudge, extend by ``idle_after``, kill.
        check_interval: seconds between checks; default a quarter of ``idle_after``.
    """

    def __init__(
        self,
        idle_after: float = 120.0,
        *,
        policy: EscalationPolicy | None = None,
        check_interval: float | None = None,
    ) -> None:
        if idle_after <= 0:
            raise ConfigurationError("idle_after must be positive")
        self.idle_after = idle_after
        self.policy: EscalationPolicy = policy or Ladder(
            [
                nudge("You seem stuck. Summarise what you are waiting for and move on.", "the run went idle"),
                extend(idle_after),
                kill(),
            ]
        )
        self._check_interval = check_interval if check_interval is not None else idle_after / 4
        if self._check_interval <= 0:
            raise ConfigurationError("check_interval must be positive")

    @property
    def check_interval(self) -> float:
        return self._check_interval

    def spec(self) -> CriticSpec:
        policy = self.policy.describe() if isinstance(self.policy, Ladder) else type(self.policy).__name__
        return CriticSpec(
            name=type(self).__name__,
            settings={
                "idle_after": self.idle_after,
                "check_interval": self._check_interval,
                "policy": policy,
            },
        )

    def decide(self, state: RunState, now: datetime) -> CriticDecision | None:
        if state.kill_reason is not None:
            return None
        period_start = state.last_activity_at
        if state.last_decision_at is not None and state.last_decision_at > period_start:
            period_start = state.last_decision_at
        if (now - period_start).total_seconds() < self.idle_after:
            return None
        idle = (now - state.last_activity_at).total_seconds()
        return self.policy(Stall(level=state.decisions_since_activity, idle_seconds=idle, state=state))
