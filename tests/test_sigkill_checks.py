"""The SIGKILL harness's checks catch what they claim to: each planted fault is reported by name.

A harness whose checks cannot fail proves nothing, so every check of ``sigkill_checks`` gets a
database (or a marker list) broken in exactly its way, next to a clean one that passes them all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Literal

import pytest
from sigkill_checks import (
    BLOBS_STORED,
    CHILD_LINKED,
    CONTIGUOUS_SEQ,
    CRITIC_KILL_FINAL,
    CRITIC_SILENT_AFTER_CANCEL,
    DURABLE_BEFORE_SIDE_EFFECT,
    EVERY_CALL_ANSWERED,
    HASH_CHAIN,
    NOTHING_AFTER_CANCEL,
    PROJECTION,
    TOOL_NEVER_RERUN,
    Memory,
    check_runs,
)
from sqlalchemy import text
from store_events import T0, cancelled, record, run_events, started, step

from executus import ImagePart, ToolCall
from executus.events import CriticDecided, Event, ModelRequested, ModelResponded, SteerInjected, SteerMessage
from store import SqlStore

CLEAN_MARKERS = [("model", "run-1", "1"), ("tool", "run-1", "call-1"), ("model", "run-1", "2")]
"""The side effects of ``run_events("run-1")``: both model steps and the one tool call."""


def _requested(run_id: str, seq: int, step_number: int) -> ModelRequested:
    return ModelRequested(
        run_id=run_id,
        seq=seq,
        at=T0 + timedelta(seconds=seq),
        step=step_number,
        fingerprint="f",
        message_count=1,
    )


def _critic(run_id: str, seq: int, decision: Literal["nudge", "kill"]) -> CriticDecided:
    at = T0 + timedelta(seconds=seq)
    return CriticDecided(run_id=run_id, seq=seq, at=at, decision=decision, reason="idle", idle_seconds=1.0)


def _unanswered_call() -> list[Event]:
    """A reply asks for two calls; only the first is answered before the next model step."""
    first = step("run-1", 2, 1, T0, call=True)
    asked = first[1]
    assert isinstance(asked, ModelResponded)
    reply = asked.model_copy(update={"tool_calls": (*asked.tool_calls, ToolCall(id="call-9", name="search"))})
    return [started("run-1"), first[0], reply, first[2], first[3], _requested("run-1", 6, 2)]


def _steer_with_missing_image() -> list[Event]:
    image = ImagePart(media_type="image/png", sha256="ab" * 32, size=3)
    steer = SteerInjected(
        run_id="run-1", seq=2, at=T0, source="session", messages=(SteerMessage(text="look", images=(image,)),)
    )
    return [started("run-1"), steer]


def _orphan_child() -> list[Event]:
    return [started("run-1"), started("run-2").model_copy(update={"parent_run_id": "run-1"})]


CASES: dict[str, tuple[Callable[[], list[Event]], list[tuple[str, str, str]], str, str]] = {
    # name: (events, markers, SQL to tamper with the stored rows, the check that must report it)
    "a model call with no model_requested": (
        lambda: run_events("run-1"),
        [*CLEAN_MARKERS, ("model", "run-1", "3")],
        "",
        DURABLE_BEFORE_SIDE_EFFECT,
    ),
    "a side effect of a run that is not stored": (
        lambda: run_events("run-1"),
        [*CLEAN_MARKERS, ("tool", "run-1-lost", "call-1")],
        "",
        DURABLE_BEFORE_SIDE_EFFECT,
    ),
    "a tool that ran twice": (
        lambda: run_events("run-1"),
        [*CLEAN_MARKERS, CLEAN_MARKERS[1]],
        "",
        TOOL_NEVER_RERUN,
    ),
    "an edited event": (
        lambda: run_events("run-1"),
        CLEAN_MARKERS,
        "UPDATE events SET payload = replace(payload, 'otters', 'beavers') WHERE seq = 3",
        HASH_CHAIN,
    ),
    "an edited runs row": (
        lambda: run_events("run-1"),
        CLEAN_MARKERS,
        "UPDATE runs SET steps = 7",
        PROJECTION,
    ),
    "a lost event": (
        lambda: run_events("run-1"),
        CLEAN_MARKERS,
        "DELETE FROM events WHERE seq = 4",
        CONTIGUOUS_SEQ,
    ),
    "a tool call left unanswered": (_unanswered_call, [], "", EVERY_CALL_ANSWERED),
    "a model call after run_cancelled": (
        lambda: [started("run-1"), cancelled("run-1", 2, T0), _requested("run-1", 3, 1)],
        [],
        "",
        NOTHING_AFTER_CANCEL,
    ),
    "a critic decision after run_cancelled": (
        lambda: [started("run-1"), cancelled("run-1", 2, T0), _critic("run-1", 3, "nudge")],
        [],
        "",
        CRITIC_SILENT_AFTER_CANCEL,
    ),
    "a model call after the critic's kill": (
        lambda: [started("run-1"), _critic("run-1", 2, "kill"), _requested("run-1", 3, 1)],
        [],
        "",
        CRITIC_KILL_FINAL,
    ),
    "an image missing from the blob store": (_steer_with_missing_image, [], "", BLOBS_STORED),
    "a child run its parent never started": (_orphan_child, [], "", CHILD_LINKED),
}


def _store_and_check(
    store: SqlStore, events: list[Event], markers: list[tuple[str, str, str]], tamper: str
) -> set[str]:
    record(store, events)
    if tamper:
        with store.engine.begin() as connection:
            connection.execute(text(tamper))
    violations, _ = check_runs(store, "alice", markers, Memory())
    return {violation.check for violation in violations}


def test_a_clean_log_passes_every_check(sql_store: SqlStore) -> None:
    assert _store_and_check(sql_store, run_events("run-1"), CLEAN_MARKERS, "") == set()


@pytest.mark.parametrize("case", list(CASES))
def test_a_planted_fault_is_reported_by_its_check(sql_store: SqlStore, case: str) -> None:
    events, markers, tamper, check = CASES[case]
    assert check in _store_and_check(sql_store, events(), markers, tamper)


def test_a_violation_names_the_run_and_seq_and_shows_the_log(sql_store: SqlStore) -> None:
    record(sql_store, [started("run-1"), cancelled("run-1", 2, T0), _requested("run-1", 3, 1)])
    violations, _ = check_runs(sql_store, "alice", [], Memory())
    assert [str(violation) for violation in violations] == [
        "[nothing_starts_after_cancel] run run-1 seq 3: model_requested after run_cancelled at 2\n"
        "        1 run_started        \n"
        "        2 run_cancelled      caller: the user pressed ^C\n"
        "    >   3 model_requested    step 1"
    ]
