"""Forensics: why a run ended, in plain words, from its event log alone.

:func:`explain` folds a run's events and returns an :class:`Explanation`: a list of
:class:`Statement` objects, each a sentence that cites the seq numbers of the events it rests
on, grouped in sections (outcome, what was in flight, idleness, critic decisions, deadline
arithmetic, failure, recoveries, post-run). It reads no clock and does no IO, so the same log
always gives the same explanation; the CLI's ``why`` renders it and a report can reuse it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, TypeAlias

from pydantic import JsonValue

from executus._attempts import retry_statements
from executus._events import (
    CriticDecided,
    Event,
    ModelChunk,
    ModelFailed,
    ModelRequested,
    ModelResponded,
    PostRunFinished,
    RunCancelled,
    RunFinished,
    RunResumed,
    SteerInjected,
    ToolFinished,
    ToolStarted,
)
from executus._state import RunState, rebuild
from executus._text import terminal_text

__all__ = [
    "SECTION_TITLES",
    "Explanation",
    "Section",
    "Statement",
    "explain",
    "format_call",
    "format_clock",
    "format_duration",
    "quote",
]

Section: TypeAlias = Literal[
    "outcome", "failure", "in_flight", "idle", "critic", "deadline", "recoveries", "post_run"
]
SECTION_TITLES: Final[dict[Section, str]] = {
    "outcome": "Outcome",
    "failure": "Failure",
    "in_flight": "In flight",
    "idle": "Idle time",
    "critic": "Critic decisions",
    "deadline": "Deadline",
    "recoveries": "Along the way",
    "post_run": "After the run",
}
"""Section headings, in the order they are shown."""
_STOPPED: Final = frozenset({"killed", "timeout", "cancelled", "running"})


@dataclass(frozen=True, slots=True)
class Statement:
    """One sentence of an explanation and the events it rests on.

    Attributes:
        section: which part of the explanation it belongs to.
        text: the sentence.
        seqs: the seq numbers of the events it cites, ascending.
    """

    section: Section
    text: str
    seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Explanation:
    """How and why one run ended.

    Attributes:
        run_id: the run.
        agent: the agent's name.
        status: the run's final status, or ``running`` when its log has no ``run_finished``.
        headline: one line: the status and how long the run took.
        statements: the evidence, in section order.
    """

    run_id: str
    agent: str
    status: str
    headline: str
    statements: tuple[Statement, ...]

    def section(self, section: Section) -> list[Statement]:
        """The statements of one section, in order."""
        return [statement for statement in self.statements if statement.section == section]


def format_duration(seconds: float) -> str:
    """A duration for people: ``0.8s``, ``24.3s``, ``6m28s``, ``1h02m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def format_clock(at: datetime, *, date: bool = False) -> str:
    """A time of day (and the date, if asked) to the nearest second, rounded like durations."""
    return f"{at + timedelta(microseconds=500_000):{'%Y-%m-%d %H:%M:%S' if date else '%H:%M:%S'}}"


def format_call(name: str, arguments: dict[str, JsonValue]) -> str:
    """A tool call as ``name(key=value, …)``, arguments sorted."""
    shown = ", ".join(f"{key}={value!r}" for key, value in sorted(arguments.items()))
    return f"{name}({shown})"


def quote(text: str, limit: int = 90) -> str:
    """Untrusted text on one line in curly quotes, made inert and cut at ``limit`` characters."""
    return f"“{terminal_text(' '.join(text.split()), limit)}”"


class _Log:
    """A run's events with the look-ups the analysis needs."""

    def __init__(self, events: Sequence[Event]) -> None:
        self.events = list(events)
        self.state: RunState = rebuild(self.events)
        self.start = self.state.started_at
        self.finished = next((e for e in self.events if isinstance(e, RunFinished)), None)
        self.cancelled = next((e for e in self.events if isinstance(e, RunCancelled)), None)
        self.decisions = [e for e in self.events if isinstance(e, CriticDecided)]
        self.tool_started = {e.call_id: e for e in self.events if isinstance(e, ToolStarted)}
        self.requested = {e.step: e for e in self.events if isinstance(e, ModelRequested)}

    @property
    def last(self) -> Event:
        return self.events[-1]

    def since_start(self, at: datetime) -> str:
        return "+" + format_duration((at - self.start).total_seconds())

    def stop_event(self) -> Event:
        """The event that stopped the run: the cancellation, or else the last one."""
        return self.cancelled or self.finished or self.last


def explain(events: Sequence[Event], *, now: datetime | None = None) -> Explanation:
    """Explain how and why a run ended, citing the seq of every event relied on.

    Args:
        events: the run's whole log, in seq order.
        now: the current time, for a run that has not finished: the headline then says how
            long ago its last event was recorded (the log alone cannot tell an interrupted run
            from one still going).

    Raises:
        EventOrderError: the log is empty or out of order.
    """
    log = _Log(events)
    state = log.state
    statements = [
        *_outcome(log),
        *_failure(log),
        *(_in_flight(log) if state.status in _STOPPED else []),
        *(_idle(log) if state.status in _STOPPED else []),
        *_critic(log),
        *(_deadline(log) if state.status in _STOPPED or state.critic_decisions else []),
        *_recoveries(log),
        *(Statement(*statement) for statement in retry_statements(log.events, log.since_start)),
        *_post_run(log),
    ]
    order = list(SECTION_TITLES)
    statements.sort(key=lambda statement: order.index(statement.section))
    duration = (log.last.at - log.start).total_seconds() if log.finished is None else log.finished.duration
    verb = {
        "ok": "ended ok",
        "error": "ended with an error",
        "timeout": "timed out",
        "cancelled": "was cancelled",
        "killed": "was killed",
    }.get(state.status, "has not finished")
    headline = f"Run {state.run_id} ({state.agent.name}) {verb} after {format_duration(duration)}."
    if log.finished is None:
        last = log.last
        headline = (
            f"Run {state.run_id} ({state.agent.name}) has not finished: its log ends at seq {last.seq} "
            f"({last.kind}, {format_clock(last.at, date=True)} UTC"
        )
        if now is not None:
            silent = format_duration(max(0.0, (now - last.at).total_seconds()))
            headline += f", {silent} ago); it is interrupted, unless it is still running"
        headline += ")." if now is None else "."
    return Explanation(state.run_id, state.agent.name, state.status, headline, tuple(statements))


def _outcome(log: _Log) -> list[Statement]:
    state, finished, cancelled = log.state, log.finished, log.cancelled
    started = f"It started at {format_clock(log.start, date=True)} UTC with input {quote(state.input)}"
    first = [
        Statement("outcome", started + (f", for caller {state.caller_id}." if state.caller_id else "."), (1,))
    ]
    if finished is None:
        text = (
            f"The log ends at seq {log.last.seq} ({log.last.kind}, {log.since_start(log.last.at)}) without "
            "run_finished: the run is still going, or the process running it stopped (a worker recovers "
            "it, or resume it: `executus resume RUN --agent MODULE:ATTR`, or Executor.resume)."
        )
        return [*first, Statement("outcome", text, (log.last.seq,))]
    end = finished.seq
    if state.status == "ok":
        answer = next(e for e in reversed(log.events) if isinstance(e, ModelResponded))
        text = f"The model gave its final answer at step {answer.step}: {quote(state.output or '')}."
        return [*first, Statement("outcome", text, (answer.seq, end))]
    if cancelled is not None:
        ended = {
            "critic_kill": "The critic killed the run",
            "timeout": "The run's deadline passed",
            "caller": "The caller cancelled the run",
            "shutdown": "The executor shut down and cancelled the run",
            "parent_stopped": "The run's parent stopped in this process without ending, which cancelled it",
        }[cancelled.cause]
        when = log.since_start(cancelled.at)
        detail = f": {cancelled.detail}" if cancelled.detail and cancelled.cause != "timeout" else ""
        text = f"{ended} at {format_clock(cancelled.at)} ({when}){detail}; it ended as {state.status}."
        kill = [d.seq for d in log.decisions if d.decision == "kill"]
        return [*first, Statement("outcome", text, (*kill, cancelled.seq, end))]
    return [*first, Statement("outcome", f"The run ended as {state.status}: {state.error}.", (end,))]


def _failure(log: _Log) -> list[Statement]:
    state = log.state
    if state.status != "error" or log.finished is None:
        return []
    failed = next((e for e in log.events if isinstance(e, ModelFailed)), None)
    if failed is not None:
        requested = log.requested[failed.step]
        streamed, chunk_seqs = _streamed(log, failed.step, requested.seq)
        text = (
            f"The model call of step {failed.step} (requested at seq {requested.seq}) failed at "
            f"{log.since_start(failed.at)}{streamed}: {failed.error}."
        )
        return [Statement("failure", text, (requested.seq, *chunk_seqs, failed.seq))]
    error = state.error
    if error is not None and error.type == "MaxIterationsExceeded":
        calls = [e.seq for e in log.events if isinstance(e, ModelRequested)]
        raised = [d for d in log.decisions if d.decision == "raise_steps"]
        limit = f"max_iterations={state.agent.max_iterations}"
        if raised:
            limit += f", raised to {state.max_steps} by the critic"
        statements = [
            Statement(
                "failure",
                f"The agent made {state.steps} model calls ({limit}) and none gave a final answer.",
                (1, *calls, *(d.seq for d in raised)),
            )
        ]
        last_reply = next((e for e in reversed(log.events) if isinstance(e, ModelResponded)), None)
        if last_reply is not None and last_reply.tool_calls:
            wanted = ", ".join(format_call(c.name, c.arguments) for c in last_reply.tool_calls)
            statements.append(
                Statement(
                    "failure",
                    f"Its last reply (step {last_reply.step}) still asked for {wanted}.",
                    (last_reply.seq,),
                )
            )
        return statements
    if state.steps == 0:
        return [Statement("failure", f"The run could not be set up: {error}.", (log.finished.seq,))]
    return [Statement("failure", f"The run failed: {error}.", (log.finished.seq,))]


def _streamed(log: _Log, step: int, requested_seq: int) -> tuple[str, tuple[int, ...]]:
    """What a model call that never answered had streamed: words for a statement, and the
    ``model_chunk`` events to cite (the first and the last)."""
    # The last attempt's chunks: a retried attempt's partial reply was not the one that counted.
    since = max(
        [requested_seq] + [e.seq for e in log.events if e.kind == "model_attempt_failed" and e.step == step]
    )
    chunks = [e for e in log.events if isinstance(e, ModelChunk) and e.step == step and e.seq > since]
    if not chunks:
        return "", ()
    text = "".join(chunk.text for chunk in chunks)
    calls = len({fragment.index for chunk in chunks for fragment in chunk.tool_calls})
    parts = [f"{len(text)} characters of text"] if text else []
    parts += [f"{calls} tool call{'s' if calls != 1 else ''}"] if calls else []
    ending = f", ending {quote(text[-60:], 60)}" if text else ""
    return f", after {' and '.join(parts)} had streamed{ending}", (chunks[0].seq, chunks[-1].seq)


def _in_flight(log: _Log) -> list[Statement]:
    stop = log.stop_event()
    state = log.state
    # Without a recorded cancel the run is live or its process died: the fold knows what is pending.
    in_flight = log.cancelled.in_flight if log.cancelled is not None else state.in_flight
    if not in_flight:
        return [
            Statement("in_flight", "Nothing was in flight: no model or tool call was running.", (stop.seq,))
        ]
    until = "when the run stopped" if log.finished or log.cancelled else "at the last recorded event"
    statements = []
    for item in in_flight:
        ran = format_duration((stop.at - item.started_at).total_seconds())
        since = f"{format_clock(item.started_at)} ({log.since_start(item.started_at)})"
        if item.kind == "tool":
            started = log.tool_started.get(item.call_id or "")
            cited = (started.seq, stop.seq) if started else (stop.seq,)
            text = (
                f"Tool call {format_call(item.name, item.arguments)} [{item.call_id}] started at {since} "
                f"and never finished: it had been running for {ran} {until}."
            )
        else:
            step = next((s for s, e in log.requested.items() if e.at == item.started_at), state.steps)
            requested = log.requested.get(step)
            cited = (requested.seq, stop.seq) if requested else (stop.seq,)
            text = (
                f"The model call of step {step} ({item.name}) was requested at {since} and never answered: "
                f"it had been waiting {ran} {until}"
            )
            streamed, chunk_seqs = _streamed(log, step, requested.seq if requested else 0)
            text += f"{streamed}."
            cited = (*cited, *chunk_seqs)
        statements.append(Statement("in_flight", text, tuple(sorted(set(cited)))))
    return statements


def _idle(log: _Log) -> list[Statement]:
    stopped = log.cancelled is not None or log.finished is not None
    stop = log.stop_event() if stopped else log.last
    activities = [
        e for e in log.events if (e.seq < stop.seq or not stopped) and not isinstance(e, CriticDecided)
    ]
    activity = activities[-1]
    described = f"{activity.kind} {activity.name}" if isinstance(activity, ToolStarted) else activity.kind
    text = (
        f"The last activity was {described} at {format_clock(activity.at)} ({log.since_start(activity.at)})"
    )
    between = [
        d.seq for d in log.decisions if activity.seq < d.seq < stop.seq or d.seq == stop.seq != activity.seq
    ]
    if stop.seq == activity.seq:
        return [Statement("idle", f"{text}; it is the last event of the log.", (activity.seq,))]
    idle = format_duration((stop.at - activity.at).total_seconds())
    ending = (
        f"until it stopped at {format_clock(stop.at)}"
        if stopped
        else f"up to the last event at {format_clock(stop.at)}"
    )
    text += f"; the run then showed no activity for {idle} {ending}."
    if between:
        count = f"{len(between)} critic decisions were" if len(between) > 1 else "1 critic decision was"
        text += f" In between, only {count} recorded."
    return [Statement("idle", text, tuple(sorted({activity.seq, *between, stop.seq})))]


def _critic(log: _Log) -> list[Statement]:
    critic = log.state.agent.critic
    if critic is None or (not log.decisions and log.state.status not in _STOPPED):
        return []
    settings = ", ".join(f"{key} {_setting(value)}" for key, value in sorted(critic.settings.items()))
    statements = [Statement("critic", f"The run was watched by {critic.name} ({settings}).", (1,))]
    for decision in log.decisions:
        statements.append(Statement("critic", _describe_decision(log, decision), (decision.seq,)))
    if not log.decisions:
        statements.append(Statement("critic", "The critic made no decision during this run.", (1,)))
    return statements


def _setting(value: JsonValue) -> str:
    if isinstance(value, list):
        return " → ".join(_setting(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _describe_decision(log: _Log, decision: CriticDecided) -> str:
    prefix = (
        f"At {format_clock(decision.at)} ({log.since_start(decision.at)}), after "
        f"{format_duration(decision.idle_seconds)} idle, the critic"
    )
    if decision.decision == "nudge":
        delivered = next(
            (
                e
                for e in log.events
                if isinstance(e, SteerInjected) and e.source == "critic" and e.seq > decision.seq
            ),
            None,
        )
        fate = (
            f"delivered before the next model step (seq {delivered.seq})"
            if delivered
            else "never delivered: the model was not called again"
        )
        return f"{prefix} nudged the model with {quote(decision.nudge or '')}; {fate}."
    if decision.decision == "extend" and decision.old_deadline and decision.new_deadline:
        added = format_duration((decision.new_deadline - decision.old_deadline).total_seconds())
        return (
            f"{prefix} extended the deadline {format_clock(decision.old_deadline)} → "
            f"{format_clock(decision.new_deadline)} (+{added}): {decision.reason}."
        )
    if decision.decision == "raise_steps":
        return (
            f"{prefix} raised the step limit {decision.old_max_steps} → {decision.new_max_steps}: "
            f"{decision.reason}."
        )
    if decision.decision == "kill":
        return f"{prefix} decided to kill the run: {decision.reason}."
    return f"{prefix} decided {decision.decision}: {decision.reason}."


def _deadline(log: _Log) -> list[Statement]:
    runtime = log.state.agent.max_runtime
    if runtime is None:
        return [Statement("deadline", "The agent had no max_runtime, so the run had no deadline.", (1,))]
    first = log.start + timedelta(seconds=runtime)
    terms = [format_duration(runtime)]
    statements = [
        Statement(
            "deadline",
            f"Started at {format_clock(log.start)} with max_runtime {format_duration(runtime)}: "
            f"deadline {format_clock(log.start)} + {format_duration(runtime)} = {format_clock(first)}.",
            (1,),
        )
    ]
    for event in log.events:
        moved: tuple[datetime, datetime, str] | None = None
        if isinstance(event, CriticDecided) and event.decision == "extend":
            if event.old_deadline and event.new_deadline:
                moved = (event.old_deadline, event.new_deadline, "by the critic")
        elif isinstance(event, RunResumed) and event.old_deadline and event.new_deadline:
            moved = (event.old_deadline, event.new_deadline, "for the downtime before a resume")
        if moved is not None:
            old, new, why = moved
            added = format_duration((new - old).total_seconds())
            terms.append(added)
            moved_text = f"{format_clock(old)} → {format_clock(new)}"
            text = f"Moved +{added} {why} at {format_clock(event.at)}: {moved_text}."
            statements.append(Statement("deadline", text, (event.seq,)))
    final, stop = log.state.deadline, log.stop_event()
    if final is None:
        return statements
    arithmetic = f"{format_clock(log.start)} + {' + '.join(terms)} = {format_clock(final)}"
    margin = (final - stop.at).total_seconds()
    if log.cancelled is not None and log.cancelled.cause == "timeout":
        text = (
            f"The final deadline ({arithmetic}) passed at {format_clock(stop.at)}, and the run was stopped."
        )
    elif margin > 0:
        text = (
            f"The final deadline was {arithmetic}; the run stopped at {format_clock(stop.at)}, "
            f"{format_duration(margin)} before it, so the deadline did not end it."
        )
    else:
        text = (
            f"The final deadline ({arithmetic}) had passed {format_duration(-margin)} before the run "
            f"stopped at {format_clock(stop.at)}."
        )
    statements.append(Statement("deadline", text, (stop.seq,)))
    return statements


def _recoveries(log: _Log) -> list[Statement]:
    statements = []
    for event in log.events:
        if isinstance(event, ToolFinished) and event.error is not None:
            after = next((e for e in log.events if isinstance(e, ModelRequested) and e.seq > event.seq), None)
            carried_on = f"; the model carried on at step {after.step}" if after else ""
            started = log.tool_started.get(event.call_id)
            took = format_duration(event.duration)
            text = f"Tool {event.name} [{event.call_id}] failed after {took}: {event.error}{carried_on}."
            cited = (*((started.seq,) if started else ()), event.seq, *((after.seq,) if after else ()))
            statements.append(Statement("recoveries", text, cited))
        elif isinstance(event, SteerInjected) and event.source == "session":
            images = sum(len(message.images) for message in event.messages)
            attached = f" and {images} image{'s' if images != 1 else ''}" if images else ""
            text = f"A session tool queued {quote(event.messages[0].text, 40)}{attached} for the model."
            statements.append(Statement("recoveries", text, (event.seq,)))
    return statements


def _post_run(log: _Log) -> list[Statement]:
    event = next((e for e in log.events if isinstance(e, PostRunFinished)), None)
    if event is None:
        return []
    made = ", ".join(f"{a.name} ({a.media_type}, {a.size} bytes)" for a in event.artifacts) or "no artifacts"
    hook = f"failed: {event.error}" if event.error is not None else f"produced {made}"
    cleanup = f"; the session's cleanup failed: {event.cleanup_error}" if event.cleanup_error else ""
    return [Statement("post_run", f"The post-run hook {hook}{cleanup}.", (event.seq,))]
