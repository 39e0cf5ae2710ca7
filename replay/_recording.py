"""A recorded run indexed for playback, and where the replay stands in it.

A run that was resumed after its process died has one *segment* per process: seq 1 up to
the event before the first ``run_resumed``, then from there to the next, and so on. Model
replies and tool results are served only within the segment they were recorded in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from executus import (
    ChildRunStarted,
    CriticDecided,
    Event,
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

__all__ = ["SETTLE_YIELDS", "Recording"]

SETTLE_YIELDS: Final = 50
"""How many times the replay yields to let events due at the same instant go first."""
_STAMPED_WITHOUT_WAITING: Final = frozenset(
    {"steer_injected", "model_requested", "tool_started", "run_finished"}
)


@dataclass(slots=True)
class Recording:
    """A recorded run, indexed for playback.

    A run that was resumed after its process died has one *segment* per process: seq 1 up
    to the event before the first ``run_resumed``, then from there to the next, and so on.
    Model replies and tool results are served only within the segment they were recorded
    in: what was in flight when a process died hangs until the replay "kills" it too.
    """

    started: RunStarted
    events: tuple[Event, ...]
    requests: dict[tuple[int, int], ModelRequested] = field(default_factory=dict)
    replies: dict[tuple[int, int], ModelResponded | ModelFailed] = field(default_factory=dict)
    resumes: list[RunResumed] = field(default_factory=list)
    segment: int = 0
    """The segment (process) being replayed now."""
    replayed_seq: int = 0
    """The last seq the replay has recorded (kept up to date by ``Inputs.recorded``)."""
    ordered: bool = True
    """Whether events at the same instant are put in their recorded order (strict replay)."""
    tool_starts: dict[str, ToolStarted] = field(default_factory=dict)
    tool_ends: dict[str, ToolFinished] = field(default_factory=dict)
    children: dict[str, list[ChildRunStarted]] = field(default_factory=dict)
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
        for event in events:
            if isinstance(event, RunResumed):
                recording.resumes.append(event)
            segment = len(recording.resumes)
            if isinstance(event, ModelRequested):
                recording.requests[segment, event.step] = event
            elif isinstance(event, ModelResponded | ModelFailed):
                recording.replies[segment, event.step] = event
            elif isinstance(event, ToolStarted):
                recording.tool_starts[event.call_id] = event
            elif isinstance(event, ToolFinished):
                recording.tool_ends[event.call_id] = event
            elif isinstance(event, ChildRunStarted):
                recording.children.setdefault(event.call_id, []).append(event)
            elif isinstance(event, CriticDecided):
                recording.decisions.append(event)
            elif isinstance(event, RunCancelled):
                recording.cancels.append(event)
            elif isinstance(event, SteerInjected):
                recording.steers.append(event)
            elif isinstance(event, PostRunFinished):
                recording.post_runs[segment] = event
        return recording

    async def settle(self, seq: int) -> None:
        """Let whatever else is due at this instant run first, until ``seq`` has been recorded.

        Virtual time makes ties common (a reply and a critic check both due at 2.0 s); their
        order in the recording is the order of their seqs. This yields to the event loop a
        bounded number of times, so a replay that has diverged (``seq`` never comes) moves on.
        """
        if not self.ordered:
            return
        for _ in range(SETTLE_YIELDS):
            if self.replayed_seq >= seq:
                return
            await asyncio.sleep(0)

    def continued_at(self, replayed: Event) -> datetime | None:
        """When the recorded process carried on after the event at ``replayed.seq``, if known.

        Known for a ``model_requested`` that got a reply (reply time minus latency), for the
        last ``tool_started`` of a batch whose tools all finished (the batch's end minus the
        longest duration), and before an event the executor stamps without waiting.
        """
        index = replayed.seq - 1
        if index >= len(self.events) or self.events[index].kind != replayed.kind:
            return None
        recorded = self.events[index]
        following = self.events[index + 1] if index + 1 < len(self.events) else None
        if following is None or following.kind == "run_resumed":
            return None
        if isinstance(recorded, ModelRequested):
            reply = self.replies.get((self.segment_of(recorded.seq), recorded.step))
            return reply.at - timedelta(seconds=reply.latency) if isinstance(reply, ModelResponded) else None
        if isinstance(recorded, ToolStarted):
            if following.kind == "tool_started":
                return None
            batch = [recorded]
            while batch[0].seq > 1 and isinstance(self.events[batch[0].seq - 2], ToolStarted):
                batch.insert(0, self.events[batch[0].seq - 2])  # type: ignore[arg-type]
            ends = [self.tool_ends.get(started.call_id) for started in batch]
            if any(end is None or self.segment_of(end.seq) != self.segment_of(recorded.seq) for end in ends):
                return None
            last = max(end.at for end in ends if end is not None)
            return last - timedelta(seconds=max(end.duration for end in ends if end is not None))
        if following.kind in _STAMPED_WITHOUT_WAITING:
            return following.at
        return None

    def batch_start(self, seq: int) -> int:
        """The first seq of the ``tool_finished`` batch that holds ``seq`` (parallel tools)."""
        while (
            seq > 1
            and self.events[seq - 2].kind == "tool_finished"
            and self.events[seq - 2].at == self.events[seq - 1].at
        ):
            seq -= 1
        return seq

    def segment_of(self, seq: int) -> int:
        """The segment (process) the event with ``seq`` was recorded in."""
        return sum(1 for resumed in self.resumes if resumed.seq <= seq)

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
