"""Comparing a replay with its recording: the first divergence, agent changes, what-if."""

from __future__ import annotations

from typing import Literal

from executus.events import CriticSpec, Event, RunCancelled, RunFinished, RunStarted
from replay._diff import FieldDifference, diff_events, diff_values, request_differences
from replay._play import HORIZON_DETAIL
from replay._recording import Recording
from replay._result import CriticAction, ReplayDivergence, ReplayResult, WhatIfReport

__all__ = ["HORIZON_DETAIL", "compare"]


def compare(
    recording: Recording,
    replayed: tuple[Event, ...],
    *,
    agent_under_test: bool,
    what_if_critic: CriticSpec | Literal[False] | None,
    tolerance: float,
) -> ReplayResult:
    """Compare a replay's events with the recording: first divergence, agent changes, notes.

    Args:
        recording: the recorded run.
        replayed: the events the replay produced.
        agent_under_test: whether the agent was given (its spec changes are then the change
            under test, reported apart, not as a divergence).
        what_if_critic: the what-if critic's spec (None: no critic at all), or False when the
            replay was not a what-if.
        tolerance: seconds by which times may differ.
    """
    recorded = recording.events
    ignore = frozenset({"executor_version", *(["agent"] if agent_under_test else [])})
    # executor_version is compared on neither run_started nor run_resumed (see notes).
    notes: list[str] = []
    agent_changes: tuple[FieldDifference, ...] = ()
    first = replayed[0] if replayed else None
    if isinstance(first, RunStarted):
        if first.executor_version != recording.started.executor_version:
            notes.append(
                f"recorded by executor {recording.started.executor_version}, "
                f"replayed by {first.executor_version}"
            )
        if agent_under_test:
            agent_changes = tuple(
                FieldDifference(f"agent.{d.path}".replace(".[", "["), d.expected, d.actual)
                for d in diff_values(
                    recording.started.agent.model_dump(mode="json"), first.agent.model_dump(mode="json")
                )
            )
    divergence = _divergence(recording, replayed, ignore, tolerance)
    what_if = _what_if(recording, replayed, what_if_critic) if what_if_critic is not False else None
    return ReplayResult(
        run_id=recording.started.run_id,
        recorded=recorded,
        replayed=replayed,
        divergence=divergence,
        agent_changes=agent_changes,
        notes=tuple(notes),
        what_if=what_if,
    )


def _divergence(
    recording: Recording, replayed: tuple[Event, ...], ignore: frozenset[str], tolerance: float
) -> ReplayDivergence | None:
    recorded = recording.events
    for index in range(max(len(recorded), len(replayed))):
        expected = recorded[index] if index < len(recorded) else None
        actual = replayed[index] if index < len(replayed) else None
        if actual is expected:
            continue  # the replay's store keeps the recorded object for an equal event: no diff
        if expected is None or actual is None:
            differences: list[FieldDifference] = []
        elif expected.kind != actual.kind:
            differences = [FieldDifference("kind", expected.kind, actual.kind)]
        else:
            skip = ignore if expected.kind == "run_started" else frozenset()
            if expected.kind == "run_resumed":
                skip = frozenset({"executor_version"})
            differences = diff_events(expected, actual, tolerance=tolerance, ignore=skip)
            if not differences:
                continue
        request: list[FieldDifference] = []
        if (
            expected is not None
            and actual is not None
            and expected.kind == actual.kind == "model_requested"
            and any(d.path == "fingerprint" for d in differences)
        ):
            request = request_differences(recorded[:index], replayed[:index])
        return ReplayDivergence(
            run_id=recording.started.run_id,
            seq=index + 1,
            expected=expected,
            actual=actual,
            differences=tuple(differences),
            request_differences=tuple(request),
        )
    return None


def _what_if(recording: Recording, replayed: tuple[Event, ...], critic: CriticSpec | None) -> WhatIfReport:
    start = recording.started.at
    recorded_end = recording.events[-1]
    replayed_end = replayed[-1] if replayed else None
    recorded_status = recorded_end.status if isinstance(recorded_end, RunFinished) else "unfinished"
    replayed_status = replayed_end.status if isinstance(replayed_end, RunFinished) else "unfinished"
    if any(isinstance(e, RunCancelled) and e.detail.startswith(HORIZON_DETAIL) for e in replayed):
        replayed_status = "unfinished"
    return WhatIfReport(
        critic=critic,
        recorded_status=recorded_status,
        replayed_status=replayed_status,
        recorded_decisions=tuple(CriticAction.of(event, start) for event in recording.decisions),
        replayed_decisions=tuple(
            CriticAction.of(event, start) for event in replayed if event.kind == "critic_decided"
        ),
        recorded_duration=(recorded_end.at - start).total_seconds(),
        replayed_duration=(replayed_end.at - start).total_seconds() if replayed_end else 0.0,
    )
