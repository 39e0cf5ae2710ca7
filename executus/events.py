"""For readers of logs: the event catalogue, and the fold that turns a run's events into its state.

The catalogue is the audit contract. Every run is recorded as these events and nothing else,
in order (``seq`` 1, 2, 3… with no gaps), each a frozen pydantic model with ``run_id``,
``seq``, ``at``, ``kind`` and ``schema_version``: :class:`RunStarted` (with the
:class:`AgentSpec` and :class:`CriticSpec` snapshot), :class:`ChildRunStarted`,
:class:`ModelRequested`, :class:`ModelChunk` (part of a streamed reply), :class:`ModelResponded`,
:class:`ModelAttemptFailed` (a failed attempt the retry policy retries), :class:`ModelFailed`,
:class:`ToolStarted`,
:class:`ToolFinished`, :class:`SteerInjected`, :class:`CriticDecided`, :class:`RunCancelled`,
:class:`RunResumed`, :class:`PostRunFinished` and :class:`RunFinished`. :data:`Event` is their
union. What a log once recorded stays readable: a kind's shape changes only with a new
``schema_version``, and :func:`decode_event` reads every version ever written.

- :func:`encode_event` / :func:`decode_event` convert an event to and from its JSON object;
  decoding refuses what this version cannot read (:class:`UnknownEventError`,
  :class:`SchemaVersionError`).
- :func:`rebuild` folds a run's events into its :class:`RunState` (transcript, usage, what was
  in flight, critic decisions, outcome) and :func:`apply` folds one more; the executor keeps its
  state by the same fold, so the log and the run cannot disagree. Events out of order raise
  :class:`EventOrderError` (an :class:`EventLogError`).

Example::

    from executus.events import ToolFinished, rebuild

    events = store.read_run(run_id)
    state = rebuild(events)
    failed = [e for e in events if isinstance(e, ToolFinished) and e.error is not None]

Text in a log is untrusted (model output, tool results): print it through
:func:`executus.forensics.terminal_text`.
"""

from executus._errors import EventLogError, EventOrderError, SchemaVersionError, UnknownEventError
from executus._events import (
    AgentSpec,
    ArtifactRef,
    ChildRunStarted,
    CriticDecided,
    CriticSpec,
    ErrorInfo,
    Event,
    InFlight,
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
    RunStatus,
    SteerInjected,
    SteerMessage,
    ToolCallFragment,
    ToolFinished,
    ToolStarted,
    decode_event,
    encode_event,
)
from executus._state import PendingModelCall, PendingTool, RunState, apply, rebuild

__all__ = [
    "AgentSpec",
    "ArtifactRef",
    "ChildRunStarted",
    "CriticDecided",
    "CriticSpec",
    "ErrorInfo",
    "Event",
    "EventLogError",
    "EventOrderError",
    "InFlight",
    "ModelAttemptFailed",
    "ModelChunk",
    "ModelFailed",
    "ModelRequested",
    "ModelResponded",
    "PendingModelCall",
    "PendingTool",
    "PostRunFinished",
    "RunCancelled",
    "RunFinished",
    "RunResumed",
    "RunStarted",
    "RunState",
    "RunStatus",
    "SchemaVersionError",
    "SteerInjected",
    "SteerMessage",
    "ToolCallFragment",
    "ToolFinished",
    "ToolStarted",
    "UnknownEventError",
    "apply",
    "decode_event",
    "encode_event",
    "rebuild",
]
