"""A recorded run, indexed for playback.

A run that was resumed after its process died has one *segment* per process: seq 1 up to
the event before the first ``run_resumed``, then from there to the next, and so on. Model
replies, tool results and post-run outcomes are served only within the segment they were
recorded in: what was in flight when a process died never answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from executus.events import (
    ChildRunStarted,
    CriticDecided,
    Event,
    ModelAttemptFailed,
    ModelChunk,
    ModelFailed,
    ModelRequested,
    ModelResponded,
    PostRunFinished,
    RunCancelled,
    RunResumed,
    RunStarted,
    SteerInjected,
    ToolFinished,
    ToolStarted,
)

__all__ = ["Recording"]


@dataclass(slots=True)
class Recording:
    """A recorded run's events, indexed by what the replay looks up."""

    started: RunStarted
    events: tuple[Event, ...]
    requests: dict[tuple[int, int], ModelRequested] = field(default_factory=dict)
    """``model_requested`` by (segment, step)."""
    replies: dict[tuple[int, int], ModelResponded | ModelFailed] = field(default_factory=dict)
    """The model's reply or failure by (segment, step)."""
    chunks: dict[tuple[int, int], list[ModelChunk]] = field(default_factory=dict)
    """What arrived of a streamed reply, by (segment, step), in order."""
    attempts: dict[tuple[int, int], list[ModelAttemptFailed]] = field(default_factory=dict)
    """The failed attempts the retry policy retried, in order, by (segment, step)."""
    resumes: list[RunResumed] = field(default_factory=list)
    tool_starts: dict[str, ToolStarted] = field(default_factory=dict)
    tool_ends: dict[tuple[int, str], ToolFinished] = field(default_factory=dict)
    """``tool_finished`` by (segment, call id), for calls that ran (not those a resume answered)."""
    children: dict[tuple[int, str], list[ChildRunStarted]] = field(default_factory=dict)
    decisions: list[CriticDecided] = field(default_factory=list)
    cancels: list[RunCancelled] = field(default_factory=list)
    steers: list[SteerInjected] = field(default_factory=list)
    post_runs: dict[int, PostRunFinished] = field(default_factory=dict)
    """The post-run hook's outcome, by segment."""

    @classmethod
    def of(cls, events: Sequence[Event]) -> Recording:
        """Index a run's events (seq 1 must be ``run_started``)."""
        first = events[0]
        assert isinstance(first, RunStarted)
        recording = cls(started=first, events=tuple(events))
        answered_by_resume: set[int] = set()
        # Dispatch on kinds: isinstance on a pydantic model class is an ABC check, and costs.
        for event in events:
            if event.kind == "run_resumed":
                recording.resumes.append(event)
                # The resume's own tool results (Interrupted, NotStarted) follow it directly.
                for later in events[event.seq :]:
                    if later.kind != "tool_finished" or later.duration != 0.0 or later.error is None:
                        break
                    answered_by_resume.add(later.seq)
            segment = len(recording.resumes)
            if event.kind == "model_requested":
                recording.requests[segment, event.step] = event
            elif event.kind == "model_chunk":
                recording.chunks.setdefault((segment, event.step), []).append(event)
            elif event.kind == "model_responded" or event.kind == "model_failed":
                recording.replies[segment, event.step] = event
            elif event.kind == "model_attempt_failed":
                recording.attempts.setdefault((segment, event.step), []).append(event)
            elif event.kind == "tool_started":
                recording.tool_starts[event.call_id] = event
            elif event.kind == "tool_finished":
                if event.seq not in answered_by_resume:
                    recording.tool_ends[segment, event.call_id] = event
            elif event.kind == "child_run_started":
                recording.children.setdefault((segment, event.call_id), []).append(event)
            elif event.kind == "critic_decided":
                recording.decisions.append(event)
            elif event.kind == "run_cancelled":
                recording.cancels.append(event)
            elif event.kind == "steer_injected":
                recording.steers.append(event)
            elif event.kind == "post_run_finished":
                recording.post_runs[segment] = event
        return recording

    @property
    def crash_points(self) -> list[int]:
        """The seqs after which a recorded process died: before each resume, and at the end of
        a log with no ``run_finished``."""
        points = [resumed.seq - 1 for resumed in self.resumes]
        if self.events[-1].kind != "run_finished":
            points.append(self.events[-1].seq)
        return points

    @property
    def end(self) -> datetime:
        """The time of the last recorded event."""
        return self.events[-1].at
