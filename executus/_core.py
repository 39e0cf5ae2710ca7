"""The run's decisions as a pure function: (state, input) → (events, effects).

Nothing here waits, reads a clock or does IO: time arrives with each input, and what to do
next leaves as effects for the driver (:mod:`executus._driver`) to perform. The live executor,
:meth:`~executus.Executor.resume` and the replayer all feed inputs to :func:`decide`, so they
cannot disagree about what a run does.

:class:`CoreState` changes in place, like :func:`~executus._state.apply` (which it uses to
fold each event it records): ``decide`` returns what it recorded, and the state it was given
is the state after it. A driver keeps one ``CoreState`` per run and feeds it one input at a
time, in arrival order.

**The outcome is state.** The first of a final answer (ok), a model failure, max iterations,
a set-up or store failure (error), the deadline (timeout, or killed if the critic had killed),
a caller cancel or shutdown (cancelled) and a critic kill (killed) sets ``outcome``; from then
on every input but :class:`~executus._inputs.PostRunDone` records nothing, and the only events
still to come are ``post_run_finished`` and ``run_finished``. The critic is consulted only
while the outcome is open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeAlias

from executus._calls import INTERRUPTED, NOT_STARTED, unanswered_calls, unique_call_ids
from executus._critic import Critic, CriticDecision
from executus._effects import (
    STATUS_OF_CAUSE,
    CallModel,
    CancelInFlight,
    Decision,
    Effect,
    Finish,
    Outcome,
    RunPostRun,
    StartChild,
    StartTools,
    WaitToRetry,
    WakeAt,
    decided_outcome,
)
from executus._events import (
    CancelCause,
    ChildRunStarted,
    CriticDecided,
    ErrorInfo,
    Event,
    ModelAttemptFailed,
    ModelChunk,
    ModelFailed,
    ModelRequested,
    ModelResponded,
    PostRunFinished,
    RunCancelled,
    RunFinished,
    RunResumed,
    RunStarted,
    SteerInjected,
    SteerMessage,
    ToolFinished,
    ToolStarted,
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
    StoreFailed,
    TimerFired,
    ToolCallFinished,
)
from executus._messages import MessagesSnapshot, ToolCall, trusted
from executus._retry import retry_delay
from executus._state import RunState, apply

__all__ = ["CoreState", "decide"]

SteerSource: TypeAlias = Literal["session", "critic"]


@dataclass(slots=True)
class CoreState:
    """A run as the core knows it: the fold of its log plus what is not in the log.

    Attributes:
        run_id: the run's id.
        critic: the critic policy consulted on the watchdog timer, or None.
        run: the fold of the events recorded so far (None before ``run_started``).
        mailbox: steer messages waiting for the next model step, in arrival order.
        queued_calls: calls of a sequential batch not started yet.
        outcome: how the run ends, once decided.
        post_run_requested: whether the post-run effect was asked for.
    """

    run_id: str
    critic: Critic | None = None
    run: RunState | None = None
    mailbox: list[tuple[SteerSource, SteerMessage]] = field(default_factory=list)
    queued_calls: list[ToolCall] = field(default_factory=list)
    outcome: Outcome | None = None
    post_run_requested: bool = False


def decide(core: CoreState, input: Input) -> Decision:
    """The events to record and the effects to perform for one input (``core`` is updated)."""
    return _Decider(core, input.at).handle(input)


class _Decider:
    """One decision in the making: records events into the core's state, collects effects."""

    def __init__(self, core: CoreState, at: datetime) -> None:
        self.core = core
        if at.tzinfo is None:
            raise ValueError(f"an input's time must be timezone-aware, got {at}")
        at = at.astimezone(UTC)  # events built with trusted() are not converted by validation
        run = core.run
        self.at = at if run is None or at >= run.last_event_at else run.last_event_at
        self.events: list[Event] = []
        self.effects: list[Effect] = []

    @property
    def run(self) -> RunState:
        assert self.core.run is not None, "the run has not started"
        return self.core.run

    @property
    def seq(self) -> int:
        return self.run.last_seq + 1

    # The events of every step (model_requested, model_responded, tool_started, tool_finished,
    # steer_injected) are built with trusted(): every value in them was validated already (an
    # input's parts, or the state), and validating them again was a third of a replay's cost.
    # The rarer events are validated.
    def record(self, event: Event) -> None:
        self.core.run = apply(self.core.run, event)
        self.events.append(event)

    def decision(self) -> Decision:
        return Decision(self.events, self.effects)

    def handle(self, input: Input) -> Decision:
        handler = _HANDLERS[type(input)]
        if self.core.outcome is not None and handler not in _AFTER_OUTCOME:
            if isinstance(input, ChildRunRequested):
                self.effects.append(StartChild(input.call_id, input.child_run_id, allowed=False))
            return self.decision()
        handler(self, input)
        return self.decision()

    # -- starting ----------------------------------------------------------------------------

    def requested(self, input: RunRequested) -> None:
        self.record(
            RunStarted(
                run_id=self.core.run_id,
                seq=1,
                at=self.at,
                agent=input.spec,
                input=input.input,
                caller_id=input.caller_id,
                parent_run_id=input.parent_run_id,
                parent_call_id=input.parent_call_id,
                executor_version=input.executor_version,
            )
        )
        if input.setup_error is not None:
            self.end(Outcome("error", error=input.setup_error))
            return
        if input.cancelled is not None:
            self.cancel("caller", input.cancelled)
            return
        self.next_step()
        self.watch()

    def resumed(self, input: RunResumeRequested) -> None:
        run = self.run
        downtime = max(0.0, (self.at - run.last_event_at).total_seconds())
        new_deadline = run.deadline + timedelta(seconds=downtime) if run.deadline else None
        pending = set(run.pending_tools)
        rerun = _calls_to_rerun(run, input)
        self.record(
            RunResumed(
                run_id=run.run_id,
                seq=self.seq,
                at=self.at,
                interrupted=run.in_flight,
                downtime=downtime,
                old_deadline=run.deadline,
                new_deadline=new_deadline,
                executor_version=input.executor_version,
                worker_id=input.worker_id,
                previous_owner=input.previous_owner,
                lease_expired_at=input.lease_expired_at,
                forced=input.forced or None,
                rerun=tuple(call.id for call in rerun) or None,
            )
        )
        rerun_ids = {call.id for call in rerun}
        unanswered = [call for call in unanswered_calls(run) if call.id not in rerun_ids]
        if rerun and not run.agent.parallel_tool_calls:
            # The calls after the re-run one in a sequential batch follow as they would have.
            self.core.queued_calls, unanswered = unanswered, []
        for call in unanswered:
            self.record(
                trusted(
                    ToolFinished,
                    run_id=run.run_id,
                    seq=self.seq,
                    at=self.at,
                    call_id=call.id,
                    name=call.name,
                    error=INTERRUPTED if call.id in pending else NOT_STARTED,
                    duration=0.0,
                )
            )
        if input.setup_error is not None:
            self.end(Outcome("error", error=input.setup_error))
            return
        if run.kill_reason is not None and run.cancellation is None:
            # Killed, and the process died before recording the kill's run_cancelled.
            self.cancel("critic_kill", run.kill_reason)
            return
        outcome = decided_outcome(run)
        if outcome is not None:
            self.end(outcome)  # the outcome was recorded, run_finished was not
            return
        if input.cancelled is not None:
            self.cancel("caller", input.cancelled)
            return
        self.core.mailbox = [("critic", SteerMessage(text=text)) for text in run.pending_nudges]
        if rerun:
            self.effects.append(StartTools(tuple(rerun)))
        else:
            self.next_step()
        self.watch()

    def next_step(self) -> None:
        """Inject queued steer messages and call the model, or end at the step limit."""
        run = self.run
        if run.steps >= run.max_steps:
            self.end(
                Outcome(
                    "error",
                    error=ErrorInfo(
                        type="MaxIterationsExceeded",
                        message=f"the agent made {run.steps} model calls "
                        f"(max_iterations={run.max_steps}) without a final answer",
                    ),
                )
            )
            return
        batches: list[tuple[SteerSource, list[SteerMessage]]] = []
        for source, message in self.core.mailbox:
            if batches and batches[-1][0] == source:
                batches[-1][1].append(message)
            else:
                batches.append((source, [message]))
        self.core.mailbox = []
        for source, messages in batches:
            self.record(
                trusted(
                    SteerInjected,
                    run_id=run.run_id,
                    seq=self.seq,
                    at=self.at,
                    source=source,
                    messages=tuple(messages),
                )
            )
        step = run.steps + 1
        self.record(
            trusted(
                ModelRequested,
                run_id=run.run_id,
                seq=self.seq,
                at=self.at,
                step=step,
                fingerprint=run.fingerprint,
                message_count=len(run.transcript),
            )
        )
        self.effects.append(CallModel(step, MessagesSnapshot(run.transcript)))

    # -- the model ---------------------------------------------------------------------------

    def model_replied(self, input: ModelReplied) -> None:
        run = self.run
        if run.pending_model is None or run.pending_model.step != input.step:
            return  # a reply nobody waits for any more
        calls = unique_call_ids(input.tool_calls)
        self.record(
            trusted(
                ModelResponded,
                run_id=run.run_id,
                seq=self.seq,
                at=self.at,
                step=input.step,
                text=input.text,
                tool_calls=calls,
                usage=input.usage,
                latency=input.latency,
                finish_reason=input.finish_reason,
            )
        )
        if not calls:
            self.end(Outcome("ok", output=input.text or ""))
            return
        if run.agent.parallel_tool_calls:
            self.start_tools(calls)
        else:
            self.core.queued_calls = list(calls[1:])
            self.start_tools(calls[:1])

    def chunks_arrived(self, input: ModelChunksArrived) -> None:
        """Record what arrived of a streamed reply (nothing after the call stopped mattering)."""
        run = self.run
        if run.pending_model is None or run.pending_model.step != input.step:
            return
        self.record(
            trusted(
                ModelChunk,
                run_id=run.run_id,
                seq=self.seq,
                at=self.at,
                step=input.step,
                text=input.text,
                tool_calls=input.tool_calls,
            )
        )

    def model_failed(self, input: ModelCallFailed) -> None:
        run = self.run
        if run.pending_model is None or run.pending_model.step != input.step:
            return
        self.record(
            ModelFailed(run_id=run.run_id, seq=self.seq, at=self.at, step=input.step, error=input.error)
        )
        self.end(Outcome("error", error=input.error))

    def model_call_failed(self, input: ModelCallFailed) -> None:
        """A failed attempt: retried after a back-off if the agent's policy says so, else the end."""
        run = self.run
        pending = run.pending_model
        if pending is None or pending.step != input.step:
            return
        delay = retry_delay(run.agent.retry, input.error, pending.attempt, run.run_id, input.step)
        if delay is None:
            self.model_failed(input)
            return
        next_attempt_at = self.at + timedelta(seconds=delay)
        self.record(
            ModelAttemptFailed(
                run_id=run.run_id,
                seq=self.seq,
                at=self.at,
                step=input.step,
                attempt=pending.attempt,
                error=input.error,
                next_attempt_at=next_attempt_at,
            )
        )
        self.effects.append(WaitToRetry(input.step, next_attempt_at))

    def retry_due(self, input: RetryDue) -> None:
        """The back-off is over: the same request again (the transcript has not moved)."""
        pending = self.run.pending_model
        if pending is None or pending.step != input.step or pending.retry_at is None:
            return  # answered, or superseded by a resume
        self.effects.append(CallModel(input.step, MessagesSnapshot(self.run.transcript)))

    # -- tools -------------------------------------------------------------------------------

    def start_tools(self, calls: tuple[ToolCall, ...]) -> None:
        for call in calls:
            self.record(
                trusted(
                    ToolStarted,
                    run_id=self.run.run_id,
                    seq=self.seq,
                    at=self.at,
                    call_id=call.id,
                    name=call.name,
                    arguments=call.arguments,
                )
            )
        self.effects.append(StartTools(calls))

    def tool_finished(self, input: ToolCallFinished) -> None:
        run = self.run
        if input.call_id not in run.pending_tools:
            return
        self.record(
            trusted(
                ToolFinished,
                run_id=run.run_id,
                seq=self.seq,
                at=self.at,
                call_id=input.call_id,
                name=input.name,
                result=input.result,
                error=input.error,
                duration=input.duration,
            )
        )
        if self.core.queued_calls:
            self.start_tools((self.core.queued_calls.pop(0),))
        elif not run.pending_tools:
            self.next_step()

    def child_requested(self, input: ChildRunRequested) -> None:
        run = self.run
        pending = run.pending_tools.get(input.call_id)
        if pending is None:
            self.effects.append(StartChild(input.call_id, input.child_run_id, allowed=False))
            return
        self.record(
            ChildRunStarted(
                run_id=run.run_id,
                seq=self.seq,
                at=self.at,
                child_run_id=input.child_run_id,
                call_id=input.call_id,
                tool_name=pending.name,
            )
        )
        self.effects.append(StartChild(input.call_id, input.child_run_id, allowed=True))

    def steer_arrived(self, input: SteerArrived) -> None:
        self.core.mailbox.append(("session", input.message))

    # -- the watchdog ------------------------------------------------------------------------

    def timer_fired(self, input: TimerFired) -> None:
        self.watch()

    def watch(self) -> None:
        """Enforce the deadline, consult the critic, and arm the next check."""
        run = self.run
        if run.deadline is not None and self.at >= run.deadline:
            if run.kill_reason is not None:
                self.cancel("critic_kill", run.kill_reason)
            else:
                self.cancel("timeout", self.timeout_detail())
            return
        critic = self.core.critic
        if critic is not None:
            try:
                decision = critic.decide(run, self.at)
            except Exception as error:
                self.end(Outcome("error", error=ErrorInfo.of(error)))
                return
            if decision is not None:
                self.critic_decided(decision)
                if decision.kind == "kill":
                    self.cancel("critic_kill", decision.reason)
                    return
        waits = [self.at + timedelta(seconds=critic.check_interval)] if critic is not None else []
        if run.deadline is not None:
            waits.append(run.deadline)
        self.effects.append(WakeAt(min(waits) if waits else None))

    def critic_decided(self, decision: CriticDecision) -> None:
        run = self.run
        extend = decision.kind == "extend"
        new_deadline = run.deadline + timedelta(seconds=decision.seconds) if extend and run.deadline else None
        raised = decision.kind == "raise_steps"
        self.record(
            CriticDecided(
                run_id=run.run_id,
                seq=self.seq,
                at=self.at,
                decision=decision.kind,
                reason=decision.reason,
                idle_seconds=(self.at - run.last_activity_at).total_seconds(),
                old_deadline=run.deadline if extend else None,
                new_deadline=new_deadline,
                old_max_steps=run.max_steps if raised else None,
                new_max_steps=run.max_steps + decision.steps if raised else None,
                nudge=(decision.nudge or "") if decision.kind == "nudge" else None,
            )
        )
        if decision.kind == "nudge":
            self.core.mailbox.append(("critic", SteerMessage(text=decision.nudge or "")))

    def timeout_detail(self) -> str:
        run = self.run
        runtime = f"max_runtime {run.agent.max_runtime:g}s" if run.agent.max_runtime else "no max_runtime"
        extended = sum(1 for decision in run.critic_decisions if decision.decision == "extend")
        suffix = f", extended {extended} time(s) by the critic" if extended else ""
        return f"the deadline {run.deadline:%Y-%m-%dT%H:%M:%S}Z passed ({runtime}{suffix})"

    # -- ending ------------------------------------------------------------------------------

    def caller_cancelled(self, input: CallerCancelled) -> None:
        self.cancel("caller", input.detail)

    def shutdown(self, input: ShutdownRequested) -> None:
        self.cancel("shutdown", input.detail)

    def parent_stopped(self, input: ParentStopped) -> None:
        self.cancel("parent_stopped", input.detail)

    def store_failed(self, input: StoreFailed) -> None:
        core = self.core
        if core.run is None or core.run.finished:
            if core.outcome is not None:
                self.effects.append(Finish(core.outcome))
            return
        if core.outcome is None:
            self.end(Outcome("error", error=input.error))
        elif not core.run.post_run_done:
            # The failed decision's effects were dropped: stop what runs, then the hook.
            self.effects.extend((CancelInFlight(), WakeAt(None), RunPostRun(core.outcome)))
        else:
            self.effects.append(Finish(core.outcome))

    def cancel(self, cause: CancelCause, detail: str) -> None:
        run = self.run
        self.record(
            RunCancelled(
                run_id=run.run_id,
                seq=self.seq,
                at=self.at,
                cause=cause,
                detail=detail,
                in_flight=run.in_flight,
            )
        )
        self.end(Outcome(STATUS_OF_CAUSE[cause], error=ErrorInfo(type=cause, message=detail)))

    def end(self, outcome: Outcome) -> None:
        """Decide the outcome: stop everything in flight, then the post-run hook."""
        self.core.outcome = outcome
        self.core.queued_calls = []
        self.core.mailbox = []
        self.core.post_run_requested = True
        self.effects.extend((CancelInFlight(), WakeAt(None), RunPostRun(outcome)))

    def post_run_done(self, input: PostRunDone) -> None:
        run, outcome = self.run, self.core.outcome
        if outcome is None or run.finished:
            return
        if input.ran:
            self.record(
                PostRunFinished(
                    run_id=run.run_id,
                    seq=self.seq,
                    at=self.at,
                    artifacts=input.artifacts,
                    metadata=dict(input.metadata),
                    error=input.error,
                    cleanup_error=input.cleanup_error,
                )
            )
        self.record(
            RunFinished(
                run_id=run.run_id,
                seq=self.seq,
                at=self.at,
                status=outcome.status,
                output=outcome.output,
                error=outcome.error,
                usage=run.usage,
                steps=run.steps,
                duration=(self.at - run.started_at).total_seconds(),
            )
        )
        self.effects.append(Finish(outcome))


def _calls_to_rerun(run: RunState, input: RunResumeRequested) -> list[ToolCall]:
    """The idempotent tool calls in flight that a resume runs again: only when the run carries
    on (no set-up failure, no cancel waiting, no outcome already decided)."""
    idempotent = run.agent.idempotent_tools
    if not idempotent or input.setup_error is not None or input.cancelled is not None:
        return []
    if run.kill_reason is not None or decided_outcome(run) is not None:
        return []
    return [
        call for call in unanswered_calls(run) if call.id in run.pending_tools and call.name in idempotent
    ]


_HANDLERS: Final[dict[type[Any], Callable[[_Decider, Any], None]]] = {
    RunRequested: _Decider.requested,
    RunResumeRequested: _Decider.resumed,
    ModelReplied: _Decider.model_replied,
    ModelChunksArrived: _Decider.chunks_arrived,
    ModelCallFailed: _Decider.model_call_failed,
    RetryDue: _Decider.retry_due,
    ToolCallFinished: _Decider.tool_finished,
    ChildRunRequested: _Decider.child_requested,
    SteerArrived: _Decider.steer_arrived,
    TimerFired: _Decider.timer_fired,
    CallerCancelled: _Decider.caller_cancelled,
    ShutdownRequested: _Decider.shutdown,
    ParentStopped: _Decider.parent_stopped,
    StoreFailed: _Decider.store_failed,
    PostRunDone: _Decider.post_run_done,
}
_AFTER_OUTCOME: Final = frozenset({_Decider.store_failed, _Decider.post_run_done})
"""The only handlers that still act once the outcome is decided."""
