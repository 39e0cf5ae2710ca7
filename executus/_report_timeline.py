"""The report's timeline: a run's model steps and tool calls as bars on one time axis, in SVG.

Model steps share one lane; tool calls get as many lanes as ran at once, so parallel calls sit
side by side. Stretches with no activity are shaded and labelled; steer injections, critic
decisions and the stop (cancel, timeout, kill) are markers; the deadline is a dashed line that
moves when the critic extends it or a resume gives back the downtime. Every bar and marker
links to its event's panel (``#seq-N``).

Everything taken from the log is escaped with :func:`html.escape` (``quote=True``) before it is
written, in text and in attributes alike; positions are numbers this module computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from itertools import pairwise
from typing import Final

from executus._events import (
    CriticDecided,
    Event,
    ModelFailed,
    ModelRequested,
    ModelResponded,
    RunCancelled,
    RunResumed,
    RunStarted,
    SteerInjected,
    ToolFinished,
    ToolStarted,
)
from executus._forensics import format_duration

__all__ = ["render_timeline"]

_WIDTH: Final = 1000
_LEFT: Final = 150
_RIGHT: Final = 960
_LANE: Final = 30
_BAR: Final = 20
_TOP: Final = 34
_LABEL_LIMIT: Final = 48
_RETRY_KINDS: Final = frozenset({"model_attempt_failed"})
"""The executor's retry events (one per failed model attempt), marked as retries when recorded."""
_MIN_IDLE: Final = 10.0
"""Seconds without activity worth shading (and at least 5% of the axis)."""
_STOP_LABELS: Final = {
    "critic_kill": "killed",
    "timeout": "timed out",
    "caller": "cancelled",
    "shutdown": "shut down",
    "parent_stopped": "parent stopped",
}


def _e(text: object) -> str:
    return escape(str(text), quote=True)


@dataclass(frozen=True, slots=True)
class _Bar:
    seq: int
    start: float
    end: float
    label: str
    title: str
    tone: str
    """``model``, ``tool``, ``error`` or ``cut`` (ended by the stop, never finished)."""


@dataclass(frozen=True, slots=True)
class _Marker:
    seq: int
    at: float
    label: str
    title: str
    tone: str


class _Axis:
    def __init__(self, end: float) -> None:
        self.end = max(end, 1e-3)

    def x(self, seconds: float) -> float:
        return _LEFT + (_RIGHT - _LEFT) * min(max(seconds, 0.0), self.end) / self.end


def _offset(start: datetime, at: datetime) -> float:
    return (at - start).total_seconds()


def _bars(events: Sequence[Event], start: datetime, stop: float) -> tuple[list[_Bar], list[list[_Bar]]]:
    """Model bars, and tool bars packed into lanes (a call takes the first lane free at its start)."""
    model: list[_Bar] = []
    requested: dict[int, ModelRequested] = {}
    tools: dict[str, ToolStarted] = {}
    tool_bars: list[_Bar] = []
    for event in events:
        if isinstance(event, ModelRequested):
            requested[event.step] = event
        elif isinstance(event, ModelResponded | ModelFailed) and event.step in requested:
            began = requested.pop(event.step)
            failed = event.error if isinstance(event, ModelFailed) else None
            took = format_duration(_offset(began.at, event.at))
            model.append(
                _Bar(
                    began.seq,
                    _offset(start, began.at),
                    _offset(start, event.at),
                    f"step {event.step} · {took}",
                    f"model step {event.step}: {took}" + (f", failed: {failed}" if failed else ""),
                    "error" if failed else "model",
                )
            )
        elif isinstance(event, RunResumed):
            # The process stopped while these steps waited; each is requested again.
            for step, began in requested.items():
                end = _offset(start, event.at)
                model.append(
                    _Bar(began.seq, _offset(start, began.at), end, f"step {step} · interrupted", "", "cut")
                )
            requested.clear()
        elif isinstance(event, ToolStarted):
            tools[event.call_id] = event
        elif isinstance(event, ToolFinished) and event.call_id in tools:
            began_tool = tools.pop(event.call_id)
            took = format_duration(event.duration)
            tool_bars.append(
                _Bar(
                    began_tool.seq,
                    _offset(start, began_tool.at),
                    _offset(start, event.at),
                    f"{event.name} · {took}",
                    f"{event.name} [{event.call_id}]: {took}"
                    + (f", failed: {event.error}" if event.error else ""),
                    "error" if event.error else "tool",
                )
            )
    for step, began in requested.items():
        model.append(
            _Bar(began.seq, _offset(start, began.at), stop, f"step {step} · never answered", "", "cut")
        )
    for call_id, began_tool in tools.items():
        title = f"{began_tool.name} [{call_id}]: never finished"
        tool_bars.append(
            _Bar(
                began_tool.seq,
                _offset(start, began_tool.at),
                stop,
                f"{began_tool.name} · never finished",
                title,
                "cut",
            )
        )
    lanes: list[list[_Bar]] = []
    for bar in sorted(tool_bars, key=lambda b: (b.start, b.seq)):
        # Calls that start together ran in parallel, however short: never in the same lane.
        lane = next(
            (lane for lane in lanes if lane[-1].end <= bar.start and lane[-1].start < bar.start), None
        )
        if lane is None:
            lanes.append([bar])
        else:
            lane.append(bar)
    return model, lanes


def _markers(events: Sequence[Event], start: datetime) -> list[_Marker]:
    markers = []
    for event in events:
        at = _offset(start, event.at)
        if isinstance(event, SteerInjected):
            texts = "; ".join(message.text for message in event.messages)
            markers.append(_Marker(event.seq, at, f"steer ({event.source})", texts, "steer"))
        elif isinstance(event, CriticDecided):
            label: str = event.decision
            if event.decision == "extend" and event.old_deadline and event.new_deadline:
                label += " +" + format_duration((event.new_deadline - event.old_deadline).total_seconds())
            markers.append(
                _Marker(event.seq, at, label, f"critic {event.decision}: {event.reason}", "critic")
            )
        elif isinstance(event, RunResumed):
            markers.append(
                _Marker(event.seq, at, "resumed", f"after {format_duration(event.downtime)} down", "steer")
            )
        elif event.kind in _RETRY_KINDS:
            error = getattr(event, "error", None)
            markers.append(_Marker(event.seq, at, "retry", f"a model attempt failed: {error}", "critic"))
    return markers


def _deadlines(events: Sequence[Event], start: datetime) -> list[tuple[float, float, int]]:
    """Each deadline the run had: (seconds from start, from when it held, seq that set it)."""
    first = events[0]
    if not isinstance(first, RunStarted) or first.agent.max_runtime is None:
        return []
    deadlines = [(first.agent.max_runtime, 0.0, first.seq)]
    for event in events:
        moved_to = None
        if (isinstance(event, CriticDecided) and event.decision == "extend") or isinstance(event, RunResumed):
            moved_to = event.new_deadline
        if moved_to is not None:
            deadlines.append((_offset(start, moved_to), _offset(start, event.at), event.seq))
    return deadlines


def _idle_gaps(events: Sequence[Event], start: datetime, minimum: float) -> list[tuple[float, float]]:
    """Stretches between consecutive activities (critic decisions are not activity) of ``minimum`` or more."""
    times = [_offset(start, e.at) for e in events if not isinstance(e, CriticDecided)]
    stop = next((e for e in events if isinstance(e, RunCancelled)), None)
    if stop is not None:
        times.append(_offset(start, stop.at))
    times.sort()
    return [(a, b) for a, b in pairwise(times) if b - a >= minimum]


def render_timeline(events: Sequence[Event]) -> str:
    """The SVG timeline of a run's log (an empty string for a log without events)."""
    if not events:
        return ""
    start = events[0].at
    end = _offset(start, events[-1].at)
    stop_event = next((e for e in events if isinstance(e, RunCancelled)), None)
    stop = _offset(start, stop_event.at) if stop_event else end
    deadlines = _deadlines(events, start)
    # A deadline far beyond the run would squash it: show those as a note at the right edge.
    near = [d for d, _, _ in deadlines if d <= max(end, 1e-3) * 1.25]
    axis = _Axis(max([end, *near]) * (1.02 if near else 1.0))
    model, lanes = _bars(events, start, stop)
    markers = _markers(events, start)
    rows = ["model", *(f"tools {i + 1}" if len(lanes) > 1 else "tools" for i in range(max(len(lanes), 1)))]
    marker_row = len(rows)
    plot_bottom = _TOP + (len(rows) + 1) * _LANE
    height = plot_bottom + 44
    out = [
        f'<svg class="timeline" viewBox="0 0 {_WIDTH} {height}" width="100%" role="img" '
        f'aria-label="timeline of the run" xmlns="http://www.w3.org/2000/svg">',
        '<defs><pattern id="idle-hatch" width="8" height="8" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><line class="hatch" x1="0" y1="0" x2="0" y2="8"/></pattern></defs>',
    ]
    for index, name in enumerate([*rows, "events"]):
        y = _TOP + index * _LANE
        out.append(f'<rect class="lane" x="{_LEFT}" y="{y}" width="{_RIGHT - _LEFT}" height="{_LANE - 4}"/>')
        out.append(
            f'<text class="lane-label" x="{_LEFT - 10}" y="{y + 17}" text-anchor="end">{_e(name)}</text>'
        )
    minimum = max(_MIN_IDLE, axis.end * 0.05)
    for begin, finish in _idle_gaps(events, start, minimum):
        x0, x1 = axis.x(begin), axis.x(finish)
        out.append(
            f'<g class="idle"><title>{_e(f"no activity for {format_duration(finish - begin)}")}</title>'
            f'<rect x="{x0:.1f}" y="{_TOP - 4}" width="{x1 - x0:.1f}" height="{plot_bottom - _TOP + 4}"/>'
            f'<text x="{(x0 + x1) / 2:.1f}" y="{_TOP - 10}" text-anchor="middle">'
            f"idle {_e(format_duration(finish - begin))}</text></g>"
        )
    for row, bars in [(0, model), *((index + 1, lane) for index, lane in enumerate(lanes))]:
        for bar in bars:
            out.append(_bar(bar, axis, _TOP + row * _LANE + 3))
    for marker in markers:
        out.append(_marker(marker, axis, _TOP + marker_row * _LANE))
    out += _deadline_lines(deadlines, axis, plot_bottom)
    if stop_event is not None:
        x = axis.x(stop)
        label = _STOP_LABELS.get(stop_event.cause, stop_event.cause)
        title = f"{label}: {stop_event.detail}"
        out.append(
            f'<a href="#seq-{stop_event.seq}" class="stop"><title>{_e(title)}</title>'
            f'<line x1="{x:.1f}" y1="{_TOP - 4}" x2="{x:.1f}" y2="{plot_bottom}"/>'
            f'<text x="{x - 4:.1f}" y="{plot_bottom + 14}" text-anchor="end">{_e(label)} at '
            f"+{_e(format_duration(stop))}</text></a>"
        )
    out += _ticks(axis, plot_bottom)
    out.append("</svg>")
    return "".join(out)


def _bar(bar: _Bar, axis: _Axis, y: float) -> str:
    x0, x1 = axis.x(bar.start), axis.x(bar.end)
    width = max(x1 - x0, 2.0)
    # A long name (the model may name any tool) is cut on the bar; its title has it whole.
    label = bar.label if len(bar.label) <= _LABEL_LIMIT else bar.label[: _LABEL_LIMIT - 1] + "…"
    # The label goes inside a bar wide enough for it, else to its right.
    inside = width >= 7 * len(label)
    text_x = x0 + 4 if inside else x0 + width + 4
    anchor_class = "bar-label" if inside else "bar-label outside"
    return (
        f'<a href="#seq-{bar.seq}" class="bar {bar.tone}"><title>{_e(bar.title or bar.label)}</title>'
        f'<rect x="{x0:.1f}" y="{y:.1f}" width="{width:.1f}" height="{_BAR}" rx="3"/>'
        f'<text class="{anchor_class}" x="{text_x:.1f}" y="{y + 14:.1f}">{_e(label)}</text></a>'
    )


def _marker(marker: _Marker, axis: _Axis, y: float) -> str:
    x = axis.x(marker.at)
    return (
        f'<a href="#seq-{marker.seq}" class="marker {marker.tone}"><title>{_e(marker.title)}</title>'
        f'<path d="M{x:.1f},{y + 2:.1f} l6,8 l-6,8 l-6,-8 z"/>'
        f'<text x="{x + 8:.1f}" y="{y + 14:.1f}">{_e(marker.label)}</text></a>'
    )


def _deadline_lines(deadlines: list[tuple[float, float, int]], axis: _Axis, bottom: float) -> list[str]:
    out = []
    for index, (deadline, since, seq) in enumerate(deadlines):
        current = index == len(deadlines) - 1
        tone = "deadline" if current else "deadline moved"
        label = "deadline" if current else "earlier deadline"
        if since > 0:
            moved_from = deadlines[index - 1][0]
            label += f" (moved from +{format_duration(moved_from)} at +{format_duration(since)})"
        if deadline > axis.end:
            if current:
                out.append(
                    f'<a href="#seq-{seq}" class="{tone}">'
                    f'<text x="{_RIGHT}" y="{_TOP - 10}" text-anchor="end">'
                    f"{_e(label)}: +{_e(format_duration(deadline))} →</text></a>"
                )
            continue
        x = axis.x(deadline)
        out.append(
            f'<a href="#seq-{seq}" class="{tone}"><title>{_e(label)}</title>'
            f'<line x1="{x:.1f}" y1="{_TOP - 4}" x2="{x:.1f}" y2="{bottom}"/>'
            f'<text x="{x + 4:.1f}" y="{bottom + 14 + (0 if current else 14)}">{_e(label)}</text></a>'
        )
    return out


def _ticks(axis: _Axis, bottom: float) -> list[str]:
    step = _nice_step(axis.end / 6)
    out = []
    value = 0.0
    while value <= axis.end + 1e-9:
        x = axis.x(value)
        out.append(f'<line class="tick" x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{bottom + 30}" text-anchor="middle">'
            f"+{_e(format_duration(value))}</text>"
        )
        value += step
    return out


def _nice_step(raw: float) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400):
        if step >= raw:
            return float(step)
    return float(timedelta(days=1).total_seconds())
