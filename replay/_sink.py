"""Re-applying a recorded run's external inputs, driven by the events the replay records.

:class:`Inputs` holds a plan made from the recording: at which point each caller cancel,
shutdown and session steer message came in, and where each process died. A point is the seq of
the event after which the input arrived (strict replay), or, for what-if replays whose critic
may add or drop events, the count of events that do not come from the critic.

Inputs are re-applied as the executor *records* each event (its ``on_event``), not as it
commits them: the executor commits several events at once where nothing waits between them,
and a steer message that arrived after a tool's result must be in the mailbox before the steer
injection recorded right after it. A process death is the opposite, "the last event this
process committed", so :class:`ReplaySink` commits a batch only up to the recorded crash point
and refuses everything after it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import Any

from executus import (
    Blob,
    Cancellation,
    Event,
    Executor,
    ExecutusError,
    Image,
    MemoryStore,
    RunCancelled,
    RunQuery,
    RunSummary,
    SteerInjected,
    ToolContext,
    VirtualClock,
)
from replay._recording import Recording

__all__ = ["Inputs", "ProcessDied", "ReplaySink"]


class ProcessDied(BaseException):
    """Raised at every append after a recorded crash point until the replay resumes the run.

    A ``BaseException`` so that no ``except Exception`` in the executor turns it into a
    recorded error: the "dead" process records nothing more, exactly like the recorded one.
    """


Attach = Callable[..., None]
_ALL_RUNS = RunQuery()


def _from_critic(event: Event) -> bool:
    return event.kind in ("critic_decided", "run_cancelled", "post_run_finished", "run_finished") or (
        isinstance(event, SteerInjected) and event.source == "critic"
    )


class Inputs:
    """The recorded external inputs, and when to re-apply each during a replay.

    Args:
        recording: the recorded run.
        clock: the replay's clock.
        blobs: reads image bytes by hash.
        strict: anchor inputs on seqs (True) or on the count of non-critic events (what-if).
    """

    def __init__(
        self, recording: Recording, clock: VirtualClock, blobs: Callable[[str], Blob], *, strict: bool
    ) -> None:
        self.cancellation = Cancellation()
        """Fired for a recorded caller cancel, and at the replay's horizon."""
        self.executor: Executor | None = None
        self.problems: list[str] = []
        """Inputs that could not be re-applied (the replay reports the first as an error)."""
        self._clock = clock
        self._blobs = blobs
        self._strict = strict
        self._attach: Attach | None = None
        self._triggers: dict[int, list[Callable[[], None]]] = {}
        self._crash_points: list[int] = []
        """Each process's last committed point, in order; the first is the live process's."""
        self._point = 0
        self._point_of_seq: dict[int, int] = {}
        self._recording = recording
        recording.ordered = strict
        self._tasks: set[asyncio.Task[None]] = set()
        self.crashed = False
        """Whether the replayed "process" has died at a recorded crash point."""
        self.crash = asyncio.Event()
        self._plan(recording)

    def use_attach(self, attach: Attach) -> None:
        """Remember a way to attach steer messages (a session's or a tool's context)."""
        if self._attach is None:
            self._attach = attach

    def use_tool_context(self, context: ToolContext) -> None:
        """Called by every recorded tool as it starts: its context can attach messages."""
        self.use_attach(context.attach_images)

    # -- planning ----------------------------------------------------------------------------

    def _plan(self, recording: Recording) -> None:
        events = recording.events
        points: list[int] = []
        count = 0
        for event in events:
            if self._strict:
                count = event.seq
            elif not _from_critic(event):
                count += 1
            points.append(count)
        for cancel in recording.cancels:
            if cancel.cause in ("caller", "shutdown"):
                self._on(points[cancel.seq - 2], functools.partial(self._schedule_cancel, cancel))
        nudges = [decision for decision in recording.decisions if decision.decision == "nudge"]
        nudges_seen = 0
        group_start = 0
        for index, event in enumerate(events):
            if not isinstance(event, SteerInjected):
                continue
            if index == 0 or not isinstance(events[index - 1], SteerInjected):
                group_start = index
            if event.source == "critic":
                nudges_seen += len(event.messages)
                continue
            following = events[index + 1] if index + 1 < len(events) else None
            point = points[group_start - 1]
            if isinstance(following, SteerInjected) and nudges_seen < len(nudges):
                # The session message arrived before the critic nudge that follows it in the
                # batch: attach it while that decision is recorded, before the nudge is queued.
                point = points[nudges[nudges_seen].seq - 1]
            self._on(point, functools.partial(self._attach_steer, event))

        self._crash_points = [points[crash_seq - 1] for crash_seq in recording.crash_points]

    def revive(self) -> None:
        """A new "process" takes the run over (the replay resumes it)."""
        self._crash_points.pop(0)
        self._attach = None  # the dead process's mailbox is gone with it
        self.cancellation = Cancellation()  # and so is its caller
        self.crashed = False
        self.crash = asyncio.Event()

    def committable(self, events: Sequence[Event]) -> int:
        """How many of ``events`` the "process" commits before it dies (all, if it lives on).

        Raises:
            ProcessDied: the "process" has already died.
        """
        if self.crashed:
            raise ProcessDied
        dies_at = self._crash_points[0] if self._crash_points else None
        for index, event in enumerate(events, start=1):
            if dies_at is not None and self._point_of_seq.pop(event.seq, None) == dies_at:
                self.crashed = True
                self.crash.set()
                return index
        return len(events)

    def _on(self, point: int, action: Callable[[], None]) -> None:
        self._triggers.setdefault(point, []).append(action)

    # -- playing -----------------------------------------------------------------------------

    def recorded(self, event: Event) -> None:
        """The executor's ``on_event``: called for each event as the replay records it."""
        if event.run_id != self._recording.started.run_id:
            return  # a child run's
        counted = self._strict or not _from_critic(event)
        point = event.seq if self._strict else self._point + (1 if counted else 0)
        if self._crash_points and point > self._crash_points[0]:
            return  # recorded by a "process" that dies before committing it: nobody saw it
        self._recording.replayed_seq = event.seq
        if not counted:
            return
        self._point = point
        if self._strict:
            self._catch_up(event)
        self._point_of_seq[event.seq] = point
        for action in self._triggers.pop(self._point, []):
            action()

    def _catch_up(self, event: Event) -> None:
        """Move the clock to where the recorded process stood when it carried on after ``event``.

        A run recorded on the wall clock spent real time between events (appends, commits,
        thread hand-offs) that a virtual replay does not. Where the executor goes on to stamp
        the next event without waiting, or measures a latency or duration from this point,
        the clock is moved to the recorded instant, so stamps and durations come out equal
        however loaded the recording machine was. On virtual-clock recordings this is a no-op.
        """
        target = self._recording.continued_at(event)
        if target is not None:
            ahead = (target - self._clock.now()).total_seconds()
            if ahead > 0:
                self._clock.advance(ahead)

    def _schedule_cancel(self, cancel: RunCancelled) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            if cancel.cause == "caller":
                self.cancellation.cancel(cancel.detail)
            elif self.executor is not None:
                task = loop.create_task(self.executor.shutdown(cancel.detail))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        delay = (cancel.at - self._clock.now()).total_seconds()
        if delay > 0:
            loop.call_later(delay, fire)
        else:
            loop.call_soon(fire)

    def _attach_steer(self, event: SteerInjected) -> None:
        if self._attach is None:
            self.problems.append(
                f"the session steer message at seq {event.seq} cannot be re-attached: "
                "the replay has no session and no tool has run yet"
            )
            return
        for message in event.messages:
            try:
                images = [Image(self._blobs(part.sha256).data, part.media_type) for part in message.images]
            except ExecutusError as error:
                self.problems.append(f"the image of the steer message at seq {event.seq}: {error}")
                return
            self._attach(message.text, *images)


class ReplaySink:
    """An event store that stops committing the replayed run where its process died.

    It also keeps the replayed log at almost no cost in memory: a replayed event equal to the
    recorded one at its seq is stored as the recorded object, so an identical replay of a long
    run holds its log once, not twice.
    """

    def __init__(self, inner: MemoryStore, recorded: Sequence[Event], inputs: Inputs) -> None:
        self._inner = inner
        self._recorded = recorded
        self._run_id = recorded[0].run_id
        self._inputs = inputs

    def append(self, run_id: str, events: Sequence[Event], expected_seq: int) -> None:
        if run_id != self._run_id:
            self._inner.append(run_id, events, expected_seq)
            return
        committed = self._inputs.committable(events)
        self._inner.append(run_id, [self._shared(event) for event in events[:committed]], expected_seq)
        if committed < len(events):
            raise ProcessDied  # the rest was recorded by a process that did not live to commit it

    def _shared(self, event: Event) -> Event:
        index = event.seq - 1
        if index < len(self._recorded) and self._recorded[index] == event:
            return self._recorded[index]
        return event

    def put_blob(self, data: bytes, media_type: str) -> str:
        return self._inner.put_blob(data, media_type)

    def read_run(self, run_id: str, after_seq: int = 0) -> list[Event]:
        return self._inner.read_run(run_id, after_seq)

    def get_run(self, run_id: str) -> RunSummary:
        return self._inner.get_run(run_id)

    def list_runs(self, query: RunQuery = _ALL_RUNS) -> list[RunSummary]:
        return self._inner.list_runs(query)

    def get_blob(self, sha256: str) -> Blob:
        return self._inner.get_blob(sha256)

    def __getattr__(self, name: str) -> Any:  # pragma: no cover - anything else the store offers
        return getattr(self._inner, name)
