"""The timeline ``executus show`` prints: one line per event (:func:`describe_event`, shared with
the HTML report) and the idle gaps between them, free of any terminal code."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from executus._describe import describe_event
from executus._events import Event
from executus._forensics import format_duration

__all__ = ["IdleGap", "TimelineEntry", "describe_event", "relative_time", "timeline"]

DEFAULT_GAP_SECONDS = 30.0
"""Idle gaps at least this long are called out between timeline entries."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One event on a run's timeline.

    Attributes:
        event: the event.
        offset: seconds since the run started.
        summary: what happened, in one line.
        tone: how to colour it: ``plain``, ``good``, ``bad``, ``warn`` or ``quiet``.
    """

    event: Event
    offset: float
    summary: str
    tone: str


@dataclass(frozen=True, slots=True)
class IdleGap:
    """A stretch of time with no events, long enough to call out.

    Attributes:
        seconds: how long nothing was recorded.
        after_seq: the event the gap follows.
    """

    seconds: float
    after_seq: int


def relative_time(seconds: float) -> str:
    """An offset from the run's start, like ``+6m29s``."""
    return "+" + format_duration(seconds)


def timeline(
    events: Iterable[Event], started_at: datetime, previous_at: datetime | None, gap_seconds: float
) -> Iterator[TimelineEntry | IdleGap]:
    """The timeline entries of ``events``, with idle gaps of ``gap_seconds`` or more called out.

    Args:
        events: events of one run, in seq order (any slice of its log).
        started_at: when the run started (offsets are measured from it).
        previous_at: the time of the event just before ``events``, or None at the start.
        gap_seconds: the shortest gap worth calling out.
    """
    for event in events:
        if previous_at is not None:
            gap = (event.at - previous_at).total_seconds()
            if gap >= gap_seconds:
                yield IdleGap(gap, event.seq - 1)
        previous_at = event.at
        summary, tone = describe_event(event)
        yield TimelineEntry(event, (event.at - started_at).total_seconds(), summary, tone)
