"""What must hold of a database after a process writing to it was SIGKILLed, as data.

:func:`check_runs` reads each run back through the public store API and returns every broken
rule as a :class:`Violation` naming the check, the run and the seq, with an excerpt of the log
around it. Nothing here knows how the executor works inside: the rules are about the log, the
run's summary row, the blob store and the side-effect markers the workload wrote.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from executus import ExecutusError
from executus.events import (
    ChildRunStarted,
    CriticDecided,
    Event,
    ModelRequested,
    ModelResponded,
    PostRunFinished,
    RunCancelled,
    RunFinished,
    RunStarted,
    SteerInjected,
    ToolFinished,
    ToolStarted,
    rebuild,
)
from executus.storage import GENESIS_HASH, RunQuery, RunSummary, chain_hash, event_json, summarize
from store import SqlStore

CONTIGUOUS_SEQ: Final = "contiguous_seq"
HASH_CHAIN: Final = "hash_chain"
FOLDS: Final = "log_folds"
PROJECTION: Final = "projection_equals_fold"
DURABLE_BEFORE_SIDE_EFFECT: Final = "durable_before_side_effect"
TOOL_NEVER_RERUN: Final = "tool_never_rerun"
BLOBS_STORED: Final = "blobs_stored"
CHILD_LINKED: Final = "child_linked"
NOTHING_AFTER_CANCEL: Final = "nothing_starts_after_cancel"
CRITIC_SILENT_AFTER_CANCEL: Final = "critic_silent_after_cancel"
CRITIC_KILL_FINAL: Final = "critic_kill_is_final"
EVERY_CALL_ANSWERED: Final = "every_call_answered_once"
RESUMES_TO_FINISHED: Final = "resumes_to_finished"

CHECKS: Final = {
    CONTIGUOUS_SEQ: "seqs run 1..n with no gap and the runs row names n",
    HASH_CHAIN: "each stored hash is chain_hash(previous hash, the event's stored canonical text)",
    FOLDS: "the log decodes and folds with rebuild() without error",
    PROJECTION: "the runs row equals the fold of the events (summarize)",
    DURABLE_BEFORE_SIDE_EFFECT: "every model call and tool start had its start event durable first",
    TOOL_NEVER_RERUN: "a tool call starts at most once, in the log and in fact, resumes included",
    BLOBS_STORED: "every image and artifact the log names is in the blob store",
    CHILD_LINKED: "a child run's parent logged child_run_started for it",
    NOTHING_AFTER_CANCEL: "after run_cancelled nothing starts and the status fits the cause",
    CRITIC_SILENT_AFTER_CANCEL: "the critic decides nothing once run_cancelled is recorded",
    CRITIC_KILL_FINAL: "after a critic kill nothing starts and the run ends killed",
    EVERY_CALL_ANSWERED: "each tool call is started once, answered once, and before the next model step",
    RESUMES_TO_FINISHED: "every interrupted run resumes to run_finished without raising",
}

_STARTS: Final = (ModelRequested, ToolStarted, ChildRunStarted)
"""Events that precede a side effect: once a run's outcome is decided, none may follow."""
_STATUS_OF_CAUSE: Final = {
    "caller": "cancelled",
    "shutdown": "cancelled",
    "timeout": "timeout",
    "critic_kill": "killed",
}


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: which, in which run at which seq, and the log around it."""

    check: str
    run_id: str
    seq: int | None
    detail: str
    excerpt: str = ""

    def __str__(self) -> str:
        where = f"run {self.run_id}" + (f" seq {self.seq}" if self.seq is not None else "")
        return f"[{self.check}] {where}: {self.detail}" + (f"\n{self.excerpt}" if self.excerpt else "")


def describe(event: Event) -> str:
    """One line saying what an event is about, for excerpts."""
    if isinstance(event, ModelRequested | ModelResponded):
        calls = getattr(event, "tool_calls", ())
        return f"step {event.step}" + (f" calls {[call.id for call in calls]}" if calls else "")
    if isinstance(event, ToolStarted | ToolFinished):
        error = getattr(event, "error", None)
        return f"{event.call_id} {event.name}" + (f" error {error.type}" if error else "")
    if isinstance(event, RunCancelled):
        return f"{event.cause}: {event.detail}"
    if isinstance(event, CriticDecided):
        return event.decision
    if isinstance(event, RunFinished):
        return event.status
    if isinstance(event, ChildRunStarted):
        return f"{event.child_run_id} by {event.call_id}"
    return ""


def excerpt(events: Sequence[Event], seq: int | None, before: int = 5, after: int = 2) -> str:
    """The log's lines from ``before`` lines before ``seq`` to ``after`` after (all, without a seq)."""
    chosen = [event for event in events if seq is None or -before <= event.seq - seq <= after]
    return "\n".join(
        f"    {'>' if event.seq == seq else ' '}{event.seq:>4} {event.kind:<18} {describe(event)}"
        for event in chosen
    )


def _log_rules(events: Sequence[Event]) -> Iterable[tuple[str, int | None, str]]:
    """Rules about the log alone: yields (check, seq, detail) for each one broken."""
    try:
        rebuild(events)
    except ExecutusError as error:
        yield FOLDS, None, f"rebuild() raised {error!r}"
    finished = next((event for event in events if isinstance(event, RunFinished)), None)

    cancelled = next((event for event in events if isinstance(event, RunCancelled)), None)
    if cancelled is not None:
        for event in events:
            if event.seq > cancelled.seq and isinstance(event, _STARTS):
                yield NOTHING_AFTER_CANCEL, event.seq, f"{event.kind} after run_cancelled at {cancelled.seq}"
            if event.seq > cancelled.seq and isinstance(event, CriticDecided):
                yield (
                    CRITIC_SILENT_AFTER_CANCEL,
                    event.seq,
                    f"{event.decision} after run_cancelled at {cancelled.seq}",
                )
        expected = _STATUS_OF_CAUSE[cancelled.cause]
        if finished is not None and finished.status != expected:
            yield NOTHING_AFTER_CANCEL, finished.seq, f"cause {cancelled.cause} but status {finished.status}"

    kill = next((e for e in events if isinstance(e, CriticDecided) and e.decision == "kill"), None)
    if kill is not None and (cancelled is None or cancelled.seq > kill.seq):
        for event in events:
            if event.seq > kill.seq and isinstance(event, _STARTS):
                yield CRITIC_KILL_FINAL, event.seq, f"{event.kind} after the critic's kill at {kill.seq}"
        if finished is not None and finished.status != "killed":
            yield (
                CRITIC_KILL_FINAL,
                finished.seq,
                f"killed by the critic at {kill.seq}, ended {finished.status}",
            )

    calls: dict[str, str] = {}  # call id of the latest reply's calls -> "asked" / "started" / "answered"
    started: Counter[str] = Counter()
    for event in events:
        if isinstance(event, ModelResponded):
            calls = {call.id: "asked" for call in event.tool_calls}
        elif isinstance(event, ToolStarted):
            started[event.call_id] += 1
            if started[event.call_id] > 1:
                yield TOOL_NEVER_RERUN, event.seq, f"{event.call_id} started again"
            elif calls.get(event.call_id) != "asked":
                yield (
                    EVERY_CALL_ANSWERED,
                    event.seq,
                    f"{event.call_id} started but the last reply asked no such call",
                )
            calls[event.call_id] = "started"
        elif isinstance(event, ToolFinished):
            if calls.get(event.call_id) not in ("asked", "started"):
                yield (
                    EVERY_CALL_ANSWERED,
                    event.seq,
                    f"{event.call_id} answered but not open (twice, or unknown)",
                )
            calls[event.call_id] = "answered"
        elif isinstance(event, ModelRequested):
            unanswered = sorted(call for call, where in calls.items() if where != "answered")
            if unanswered:
                yield (
                    EVERY_CALL_ANSWERED,
                    event.seq,
                    f"step {event.step} requested with {unanswered} unanswered",
                )
            calls = {}


def _check_log(
    store: SqlStore, run_id: str, summary: RunSummary, blobs_seen: set[str]
) -> tuple[list[Violation], list[Event]]:
    """The rules on one run's stored rows, summary row and log; also returns the events read."""
    found: list[Violation] = []
    try:
        records = store.records(run_id)
    except ExecutusError as error:
        return [Violation(FOLDS, run_id, None, f"the stored log cannot be read: {error!r}")], []
    events = [stored.event for stored in records]

    def violation(check: str, seq: int | None, detail: str) -> None:
        found.append(Violation(check, run_id, seq, detail, excerpt(events, seq)))

    seqs = [event.seq for event in events]
    if seqs != list(range(1, len(seqs) + 1)):
        gap = next(seq for number, seq in enumerate(seqs, start=1) if seq != number)
        violation(CONTIGUOUS_SEQ, gap, f"seqs are {seqs}")
    if summary.last_seq != len(seqs):
        violation(
            CONTIGUOUS_SEQ, summary.last_seq, f"runs row says last seq {summary.last_seq} of {len(seqs)}"
        )

    head, projection = GENESIS_HASH, None
    for stored in records:
        if stored.payload_json != event_json(stored.event):
            violation(HASH_CHAIN, stored.event.seq, "stored text is not the event's canonical text")
        if stored.prev_hash != head:
            violation(
                HASH_CHAIN, stored.event.seq, f"prev hash {stored.prev_hash[:12]}, expected {head[:12]}"
            )
        head = chain_hash(head, stored.payload_json)
        if stored.hash != head:
            violation(HASH_CHAIN, stored.event.seq, f"hash {stored.hash[:12]}, recomputed {head[:12]}")
        try:
            # With the stored hash: a broken chain is the check above's to report, not this one's.
            projection = summarize(projection, stored.event, stored.hash)
        except ExecutusError as error:
            violation(FOLDS, stored.event.seq, f"summarize() raised {error!r}")
            break
    if summary.head_hash != head:
        violation(HASH_CHAIN, None, f"runs row head {summary.head_hash[:12]}, chain ends {head[:12]}")
    if summary != projection:
        violation(PROJECTION, summary.last_seq, f"runs row {summary}\n  fold of the events {projection}")

    for check, seq, detail in _log_rules(events):
        violation(check, seq, detail)
    for digest, what in _blobs_named(events):
        if digest in blobs_seen:
            continue
        try:
            blob = store.get_blob(digest)
        except ExecutusError:
            violation(BLOBS_STORED, None, f"{what} {digest[:12]} is not in the blob store")
        else:
            if hashlib.sha256(blob.data).hexdigest() != digest:
                violation(BLOBS_STORED, None, f"{what} {digest[:12]} holds other bytes")
            else:
                blobs_seen.add(digest)  # blobs are never deleted or changed
    return found, events


def _blobs_named(events: Iterable[Event]) -> Iterable[tuple[str, str]]:
    for event in events:
        if isinstance(event, SteerInjected):
            for message in event.messages:
                yield from ((image.sha256, "image") for image in message.images)
        elif isinstance(event, PostRunFinished):
            yield from ((artifact.sha256, "artifact") for artifact in event.artifacts)


@dataclass(slots=True)
class Memory:
    """What earlier checks found intact and nothing can change, so later checks skip it: blobs
    (never deleted or rewritten), and finished runs whose row is still the one checked (an
    append to a run changes its row in the same transaction)."""

    blobs: set[str] = field(default_factory=set)
    finished: dict[str, tuple[RunSummary, list[Event]]] = field(default_factory=dict)


def check_runs(
    store: SqlStore, caller_id: str, markers: Sequence[tuple[str, str, str]], memory: Memory
) -> tuple[list[Violation], list[RunSummary]]:
    """Every rule, on every run of ``caller_id`` and on every marker; also returns the runs' rows.

    Call it only while no process writes these runs, so that markers and logs are one moment.
    """
    summaries = store.list_runs(RunQuery(caller_id=caller_id, limit=None))
    found: list[Violation] = []
    logs: dict[str, list[Event]] = {}
    for summary in summaries:
        checked = memory.finished.get(summary.run_id)
        if checked is not None and checked[0] == summary:
            logs[summary.run_id] = checked[1]
            continue
        violations, logs[summary.run_id] = _check_log(store, summary.run_id, summary, memory.blobs)
        found += violations
        if not violations and summary.status != "running":
            memory.finished[summary.run_id] = summary, logs[summary.run_id]
    found += _check_markers(logs, markers)
    found += _check_children(logs)
    return found, summaries


def _check_markers(
    logs: Mapping[str, Sequence[Event]], markers: Sequence[tuple[str, str, str]]
) -> list[Violation]:
    """Each side effect the workload performed against the start events the log holds."""
    found: list[Violation] = []
    durable: Counter[tuple[str, str, str]] = Counter()
    for run_id, events in logs.items():
        for event in events:
            if isinstance(event, ModelRequested):
                durable["model", run_id, str(event.step)] += 1
            elif isinstance(event, ToolStarted):
                durable["tool", run_id, event.call_id] += 1
    for (kind, run_id, key), performed in sorted(Counter(markers).items()):
        events = logs.get(run_id, [])
        what = f"model step {key}" if kind == "model" else f"tool call {key}"
        if performed > durable[kind, run_id, key]:
            found.append(
                Violation(
                    DURABLE_BEFORE_SIDE_EFFECT,
                    run_id,
                    None,
                    f"{what} happened {performed} time(s), its start event is durable "
                    f"{durable[kind, run_id, key]} time(s)",
                    excerpt(events, None) if run_id in logs else "    (the run is not in the database)",
                )
            )
        if kind == "tool" and performed > 1:
            found.append(Violation(TOOL_NEVER_RERUN, run_id, None, f"{what} ran {performed} times"))
    return found


def _check_children(logs: Mapping[str, Sequence[Event]]) -> list[Violation]:
    found = []
    for run_id, events in logs.items():
        first = events[0] if events else None
        if not isinstance(first, RunStarted) or first.parent_run_id is None:
            continue
        parent = logs.get(first.parent_run_id, [])
        if not any(isinstance(e, ChildRunStarted) and e.child_run_id == run_id for e in parent):
            found.append(
                Violation(
                    CHILD_LINKED,
                    run_id,
                    1,
                    f"parent {first.parent_run_id} has no child_run_started for it",
                    excerpt(parent, None),
                )
            )
    return found
