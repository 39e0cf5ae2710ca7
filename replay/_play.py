"""Playing a recorded run back through the executor's core: recorded inputs in, events out.

The replay feeds :func:`executus._core.decide` the inputs the recorded run received, each at
its recorded instant, and collects the events the core records. Nothing waits and nothing
runs: a model call is answered by the recorded reply for its step, a tool call by the
recorded result for its call id, the post-run hook by the recorded outcome, each scheduled at
its recorded instant (something still in flight when the recorded process stopped never
answers). Caller cancels, shutdowns, session steer messages and process deaths come from the
log too.

Inputs due at the same instant are taken in the order of the recorded events they caused
(their seq), so a critic check and a model reply at one instant come out as recorded; a steer
message is due just before the decision that injected it.

*Timers.* A strict replay takes the watchdog's firings from the log (each critic decision,
each timeout) and a stand-in critic re-issues the recorded decisions. When the agent is under
test (``agent=``) or a what-if critic runs, the watchdog fires where the core arms it and
that critic decides live.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Final, NamedTuple

from executus import EXECUTOR_VERSION, Artifact, CriticDecision, Result
from executus._core import CoreState, decide
from executus._critic import Critic
from executus._driver import result_of
from executus._effects import (
    CallModel,
    CancelInFlight,
    Effect,
    Finish,
    Outcome,
    RunPostRun,
    StartTools,
    WaitToRetry,
    WakeAt,
)
from executus._inputs import (
    CallerCancelled,
    ChildRunRequested,
    Input,
    ModelCallFailed,
    ModelChunksArrived,
    ModelReplied,
    ParentStopped,
    PostRunDone,
    RetryDue,
    RunRequested,
    RunResumeRequested,
    ShutdownRequested,
    SteerArrived,
    TimerFired,
    ToolCallFinished,
)
from executus.events import (
    AgentSpec,
    CriticDecided,
    CriticSpec,
    ErrorInfo,
    Event,
    ModelFailed,
    ModelResponded,
    RunCancelled,
    RunFinished,
    RunState,
    rebuild,
)
from executus.storage import Blob
from replay._recording import Recording

__all__ = ["HORIZON_DETAIL", "Playback", "RecordedCritic", "decision_of"]

HORIZON_DETAIL: Final = "the replay reached its horizon"
"""The detail of the caller cancel that ends a replay which would otherwise never end."""
_LAST: Final = math.inf
"""The position of an input with no recorded event to order it by: after those at its instant."""


def decision_of(event: CriticDecided) -> CriticDecision:
    """The critic decision a ``critic_decided`` event records."""
    seconds = 0.0
    if event.old_deadline is not None and event.new_deadline is not None:
        seconds = (event.new_deadline - event.old_deadline).total_seconds()
    steps = 0
    if event.old_max_steps is not None and event.new_max_steps is not None:
        steps = event.new_max_steps - event.old_max_steps
    return CriticDecision(event.decision, event.reason, nudge=event.nudge, seconds=seconds, steps=steps)


class RecordedCritic:
    """Re-issues the recorded critic decisions, one per watchdog firing taken from the log."""

    check_interval = 3600.0

    def __init__(self, spec: CriticSpec, decisions: list[CriticDecided]) -> None:
        self._spec = spec
        self._decisions = decisions
        self.due = False
        """Set by the playback just before it fires the watchdog for a recorded decision."""

    def spec(self) -> CriticSpec:
        return self._spec

    def decide(self, state: RunState, now: datetime) -> CriticDecision | None:
        if not self.due:
            return None
        self.due = False
        index = len(state.critic_decisions)
        return decision_of(self._decisions[index]) if index < len(self._decisions) else None


class _Due(NamedTuple):
    """An input due at an instant; ordered by (at, position, order), compared in C by the heap."""

    at: datetime
    position: float
    order: int
    input: Input
    segment: int
    in_flight: bool
    """Answers a model or tool call (dropped when the run cancels what is in flight)."""
    fires_critic: bool = False


class Playback:
    """One replay of a recorded run through the core.

    Args:
        recording: the recorded run.
        spec: the agent spec the replay starts with (recorded, or the agent under test's).
        tool_names: the tools the replayed agent has.
        critic: the critic to consult (None: none).
        strict: take the watchdog's firings from the log (with a :class:`RecordedCritic`, or
            no critic), rather than from where the core arms it.
        horizon: the instant at which a replay that has not ended is cancelled.
        blobs: reads artifacts' bytes for the result.
    """

    def __init__(
        self,
        recording: Recording,
        spec: AgentSpec,
        tool_names: frozenset[str],
        critic: Critic | None,
        horizon: datetime,
        blobs: Callable[[str], Blob],
        *,
        strict: bool,
    ) -> None:
        self.recording = recording
        self.spec = spec
        self.tool_names = tool_names
        self.critic = critic
        self.strict_timers = strict
        self.horizon = horizon
        self.blobs = blobs
        self.events: list[Event] = []
        self.result: Result | None = None
        self.core = CoreState(recording.started.run_id, critic=critic)
        self.segment = 0
        self.crash_points = recording.crash_points
        self.now = recording.started.at
        self._due: dict[int, list[_Due]] = {}
        self._order = itertools.count()
        self._timer: datetime | None = None
        self._timer_positions = {event.at: float(event.seq) for event in recording.decisions} | {
            cancel.at: float(cancel.seq)
            for cancel in recording.cancels
            if cancel.cause in ("timeout", "critic_kill")
        }

    # -- scheduling --------------------------------------------------------------------------

    def _schedule(
        self,
        at: datetime,
        position: float,
        input: Input,
        *,
        in_flight: bool = False,
        fires_critic: bool = False,
    ) -> None:
        heapq.heappush(
            self._due.setdefault(self.segment, []),
            _Due(
                max(at, self.now), position, next(self._order), input, self.segment, in_flight, fires_critic
            ),
        )

    def _schedule_recorded_inputs(self) -> None:
        """The inputs that came from outside the run: cancels, shutdowns, steer, watchdog firings."""
        events = self.recording.events
        for cancel in self.recording.cancels:
            if cancel.cause == "caller":
                self._external(cancel, CallerCancelled(at=cancel.at, detail=cancel.detail))
            elif cancel.cause == "shutdown":
                self._external(cancel, ShutdownRequested(at=cancel.at, detail=cancel.detail))
            elif cancel.cause == "parent_stopped":
                self._external(cancel, ParentStopped(at=cancel.at, detail=cancel.detail))
            elif self.strict_timers and not (
                cancel.cause == "critic_kill" and events[cancel.seq - 2].kind == "critic_decided"
            ):
                self._external(cancel, TimerFired(at=cancel.at))
        if self.strict_timers:
            for decision in self.recording.decisions:
                self._external(decision, TimerFired(at=decision.at), fires_critic=True)
        nudges: Iterator[CriticDecided] = iter(d for d in self.recording.decisions if d.decision == "nudge")
        for event in self.recording.steers:  # kinds, not isinstance (an ABC check per event)
            index = event.seq - 1
            if event.source == "critic":
                for _ in event.messages:
                    next(nudges, None)
                continue
            group_start = index
            while group_start > 0 and events[group_start - 1].kind == "steer_injected":
                group_start -= 1
            trigger = events[group_start - 1]
            at, position = trigger.at, trigger.seq - 0.5
            following = events[index + 1] if index + 1 < len(events) else None
            if following is not None and following.kind == "steer_injected" and following.source == "critic":
                # It arrived before the critic nudge injected after it in the same batch.
                upcoming = list(itertools.islice(nudges, 1))
                if upcoming:
                    at, position = upcoming[0].at, upcoming[0].seq - 0.5
                    nudges = itertools.chain(upcoming, nudges)
            for message in event.messages:
                self._schedule_at_segment(event, at, position, SteerArrived(at=at, message=message))

    def _external(self, event: Event, input: Input, *, fires_critic: bool = False) -> None:
        self._schedule_at_segment(event, event.at, float(event.seq), input, fires_critic=fires_critic)

    def _schedule_at_segment(
        self, event: Event, at: datetime, position: float, input: Input, *, fires_critic: bool = False
    ) -> None:
        segment = sum(1 for resumed in self.recording.resumes if resumed.seq <= event.seq)
        heapq.heappush(
            self._due.setdefault(segment, []),
            _Due(at, position, next(self._order), input, segment, False, fires_critic),
        )

    # -- playing -----------------------------------------------------------------------------

    def play(self, setup_error: ErrorInfo | None) -> None:
        """Feed the recorded inputs until the run finishes, its log ends, or the horizon."""
        started = self.recording.started
        self._schedule_recorded_inputs()
        self._schedule(
            started.at,
            1.0,
            RunRequested(
                at=started.at,
                spec=self.spec,
                input=started.input,
                caller_id=started.caller_id,
                parent_run_id=started.parent_run_id,
                parent_call_id=started.parent_call_id,
                executor_version=EXECUTOR_VERSION,
                setup_error=setup_error,
                cancelled=_carried_cancel(self.recording.events, 1, started.at),
            ),
        )
        while self.result is None and not self._crashed():
            due = self._next()
            if due is None:
                self.now = max(self.now, self.horizon)
                detail = (
                    f"{HORIZON_DETAIL} ({(self.horizon - started.at).total_seconds():g}s of virtual time)"
                )
                self._feed(CallerCancelled(at=self.now, detail=detail))
                if self.result is None and not self._crashed():
                    return  # nothing answers the post-run hook: the run stays unfinished
                continue
            self.now = max(self.now, due.at)
            if due.fires_critic and isinstance(self.critic, RecordedCritic):
                self.critic.due = True
            self._feed(due.input)
            if isinstance(self.critic, RecordedCritic):
                self.critic.due = False

    def _next(self) -> _Due | None:
        """The next input due in this segment (or the watchdog), before the horizon."""
        due = self._due.get(self.segment, [])
        head = due[0] if due else None
        timer = self._timer
        if timer is not None and (
            head is None or (timer, self._timer_position(timer)) < (head.at, head.position)
        ):
            self._timer = None
            if timer >= self.horizon:
                return None  # the horizon's cancel was due first
            return _Due(timer, self._timer_position(timer), -1, TimerFired(at=timer), self.segment, False)
        if head is None or head.at > self.horizon:
            return None
        return heapq.heappop(due)

    def _timer_position(self, at: datetime) -> float:
        return self._timer_positions.get(at, _LAST)

    def _feed(self, input: Input) -> None:
        decision = decide(self.core, input)
        self.events.extend(decision.events)
        if self._dying():
            return  # the recorded process died once these were committed: nothing more happens
        for effect in decision.effects:
            self._perform(effect)

    def _dying(self) -> bool:
        return self.segment < len(self.crash_points) and len(self.events) >= self.crash_points[self.segment]

    def _crashed(self) -> bool:
        """Whether the replayed process has reached its recorded death (then resume, if any)."""
        if not self._dying():
            return False
        point = self.crash_points[self.segment]
        del self.events[point:]  # recorded by a process that did not live to commit them
        if self.segment >= len(self.recording.resumes):
            return True  # the log ends here
        resumed = self.recording.resumes[self.segment]
        self.segment += 1
        self._timer = None
        self.now = max(self.now, resumed.at)
        self.core = CoreState(self.core.run_id, critic=self.critic, run=rebuild(self.events))
        self._feed(
            RunResumeRequested(
                at=resumed.at,
                executor_version=EXECUTOR_VERSION,
                worker_id=resumed.worker_id,
                previous_owner=resumed.previous_owner,
                lease_expired_at=resumed.lease_expired_at,
                forced=bool(resumed.forced),
                cancelled=None
                if resumed.rerun
                else _carried_cancel(self.recording.events, resumed.seq, resumed.at),
            )
        )
        return self._crashed()

    def _perform(self, effect: Effect) -> None:
        if isinstance(effect, CallModel):
            self._answer_model(effect.step)
        elif isinstance(effect, StartTools):
            for call in effect.calls:
                self._answer_tool(call.id, call.name)
        elif isinstance(effect, WakeAt):
            if not self.strict_timers:
                self._timer = effect.at
        elif isinstance(effect, WaitToRetry):
            # Due where the core computed it: a changed policy shows in model_attempt_failed.
            self._schedule(effect.at, _LAST, RetryDue(at=effect.at, step=effect.step), in_flight=True)
        elif isinstance(effect, CancelInFlight):
            due = [item for item in self._due.get(self.segment, []) if not item.in_flight]
            heapq.heapify(due)
            self._due[self.segment] = due
        elif isinstance(effect, RunPostRun):
            self._answer_post_run()
        elif isinstance(effect, Finish):
            self.result = self._result(effect.outcome)

    def _answer_model(self, step: int) -> None:
        key = (self.segment, step)
        pending = self.core.run.pending_model if self.core.run is not None else None
        failures = self.recording.attempts.get(key, [])
        attempt = pending.attempt if pending is not None else 1
        # What this attempt streamed: the chunks after the previous attempt's failure, before its own.
        after = failures[attempt - 2].seq if 1 < attempt <= len(failures) + 1 else 0
        before = failures[attempt - 1].seq if attempt <= len(failures) else math.inf
        for chunk in self.recording.chunks.get(key, ()):
            if after < chunk.seq < before:
                arrived = ModelChunksArrived(
                    at=chunk.at, step=step, text=chunk.text, tool_calls=chunk.tool_calls
                )
                self._schedule(chunk.at, chunk.seq, arrived, in_flight=True)
        if attempt <= len(failures):  # an attempt the recorded run retried
            failed = failures[attempt - 1]
            retried = ModelCallFailed(at=failed.at, step=step, error=failed.error)
            self._schedule(failed.at, failed.seq, retried, in_flight=True)
            return
        reply = self.recording.replies.get(key)
        if reply is None:
            if key not in self.recording.requests:
                error = ErrorInfo(
                    type="RecordingMissError", message=f"the recording has no model reply for step {step}"
                )
                self._schedule(
                    self.now, _LAST, ModelCallFailed(at=self.now, step=step, error=error), in_flight=True
                )
            return  # in flight when the recorded process stopped: it never answers
        if isinstance(reply, ModelFailed):
            input: Input = ModelCallFailed(at=reply.at, step=step, error=reply.error)
        else:
            input = _replied(reply)
        self._schedule(reply.at, reply.seq, input, in_flight=True)

    def _answer_tool(self, call_id: str, name: str) -> None:
        finished = self.recording.tool_ends.get((self.segment, call_id))
        if name not in self.tool_names:
            known = ", ".join(sorted(self.tool_names)) or "none"
            error = ErrorInfo(type="UnknownTool", message=f"no tool named {name!r} (available: {known})")
            at, position = (finished.at, finished.seq) if finished else (self.now, _LAST)
            self._tool_result(
                at, position, call_id, name, None, error, finished.duration if finished else 0.0
            )
            return
        for child in self.recording.children.get((self.segment, call_id), []):
            input = ChildRunRequested(at=child.at, call_id=call_id, child_run_id=child.child_run_id)
            self._schedule(child.at, child.seq, input, in_flight=True)
        if finished is None:
            if call_id not in self.recording.tool_starts:
                error = ErrorInfo(
                    type="RecordingMissError", message=f"the recording has no tool call {call_id}"
                )
                self._tool_result(self.now, _LAST, call_id, name, None, error, 0.0)
            return  # in flight when the recorded process stopped
        self._tool_result(
            finished.at, finished.seq, call_id, name, finished.result, finished.error, finished.duration
        )

    def _tool_result(
        self,
        at: datetime,
        position: float,
        call_id: str,
        name: str,
        result: str | None,
        error: ErrorInfo | None,
        duration: float,
    ) -> None:
        input = ToolCallFinished(
            at=at, call_id=call_id, name=name, result=result, error=error, duration=duration
        )
        self._schedule(at, position, input, in_flight=True)

    def _answer_post_run(self) -> None:
        recorded = self.recording.post_runs.get(self.segment)
        if recorded is None or (self.core.run is not None and self.core.run.post_run_done):
            if self.recording.post_runs and not (self.core.run is not None and self.core.run.post_run_done):
                return  # the process died while the hook ran
            events = self.recording.events
            at = self.now
            if isinstance(events[-1], RunFinished) and len(events) > 1:
                # No hook: the recorded run finished as long after its outcome as its commit took.
                at += events[-1].at - events[-2].at
            self._feed(PostRunDone(at=at, ran=False))
            return
        input = PostRunDone(
            at=recorded.at,
            ran=True,
            artifacts=recorded.artifacts,
            metadata=recorded.metadata,
            error=recorded.error,
            cleanup_error=recorded.cleanup_error,
        )
        self._schedule(recorded.at, recorded.seq, input)

    def _result(self, outcome: Outcome) -> Result:
        state = self.core.run
        assert state is not None
        artifacts = tuple(
            Artifact(ref.name, ref.media_type, self.blobs(ref.sha256).data) for ref in state.artifacts
        )
        return result_of(outcome, state, artifacts)


def _carried_cancel(events: Sequence[Event], first: int, at: datetime) -> str | None:
    """The detail of a caller cancel that the run's start or a resume carried, or None.

    A cancel asked for before the run started (or before a worker took it over) is recorded
    in the start's own decision, right after its events (a resume's answers to the calls it
    found unanswered) and at its instant: no other input's decision records a caller cancel
    there, since a start always goes on to call the model or end otherwise.

    Args:
        events: the recorded log.
        first: the index of the first event after ``run_started`` or ``run_resumed``.
        at: the instant of that event.
    """
    index = first
    while index < len(events) and events[index].kind == "tool_finished" and events[index].at == at:
        index += 1
    following = events[index] if index < len(events) else None
    if isinstance(following, RunCancelled) and following.cause == "caller" and following.at == at:
        return following.detail
    return None


def _replied(reply: ModelResponded) -> ModelReplied:
    return ModelReplied(
        at=reply.at,
        step=reply.step,
        text=reply.text,
        tool_calls=reply.tool_calls,
        usage=reply.usage,
        latency=reply.latency,
        finish_reason=reply.finish_reason,
    )
