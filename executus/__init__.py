"""executus: run LLM agents and record every run as an append-only event log.

The public API is everything in ``__all__``, plus three public modules: fake models for tests
in :mod:`executus.testing`, ``explain`` (how and why a run ended) in :mod:`executus.forensics`,
what store implementers need in :mod:`executus.storage`, and adapters for real models
(OpenAI, Anthropic) in :mod:`executus.models`. Modules starting with ``_`` are
internal; ``executus.cli`` is the command line.
"""

import importlib.metadata as _metadata
import warnings as _warnings
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

# The adapters' layer registers the openai: and anthropic: model names with every
# ModelRegistry; their SDKs are imported only when such a model is made.
from executus import models as _models  # noqa: F401
from executus._agent import (
    Agent,
    Artifact,
    BudgetPort,
    Cancellation,
    DeliveryPort,
    Invocation,
    PostRun,
    Result,
    Session,
    SessionContext,
    SessionFactory,
    ToolContext,
)
from executus._audit import Finding, Problem, SealPolicy, VerifyReport
from executus._clock import Clock, IdGenerator, RandomIds, SequentialIds, SystemClock, VirtualClock
from executus._critic import (
    Critic,
    CriticDecision,
    EscalationPolicy,
    IdleCritic,
    Ladder,
    Stall,
    extend,
    kill,
    nudge,
    raise_steps,
)
from executus._errors import (
    BlobNotFoundError,
    ConcurrencyError,
    ConfigurationError,
    DatabaseUnavailableError,
    EventLogError,
    EventOrderError,
    ExecutusError,
    ModelCallError,
    RecordingFailedError,
    RunNotFoundError,
    RunNotResumableError,
    SchemaOutdatedError,
    SchemaVersionError,
    ScriptExhaustedError,
    StoreError,
    StoreUnavailableError,
    UnknownEventError,
    UnknownModelError,
)
from executus._events import (
    AgentSpec,
    ArtifactRef,
    ChildRunStarted,
    CriticDecided,
    CriticSpec,
    ErrorInfo,
    Event,
    InFlight,
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
    ToolFinished,
    ToolStarted,
    decode_event,
    encode_event,
)
from executus._executor import EXECUTOR_VERSION, Executor
from executus._messages import (
    AssistantMessage,
    Image,
    ImagePart,
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    ToolSpec,
    Usage,
    UserMessage,
)
from executus._model import Model, ModelRegistry, ModelResolver
from executus._redact import BUILTIN_DETECTORS, FieldRule, FunctionRule, PatternRule, Redaction, Redactor
from executus._redacting import RedactingStore, RedactingWriter
from executus._state import PendingModelCall, PendingTool, RunState, apply, rebuild
from executus._store import Blob, EventStore, MemoryStore, RunQuery, RunSummary
from executus._tools import InvalidArgumentsError, Tool, tool

__all__ = [
    "BUILTIN_DETECTORS",
    "EXECUTOR_VERSION",
    "Agent",
    "AgentSpec",
    "Artifact",
    "ArtifactRef",
    "AssistantMessage",
    "Blob",
    "BlobNotFoundError",
    "BudgetPort",
    "Cancellation",
    "ChildRunStarted",
    "Clock",
    "ConcurrencyError",
    "ConfigurationError",
    "Critic",
    "CriticDecided",
    "CriticDecision",
    "CriticSpec",
    "DatabaseUnavailableError",
    "DeliveryPort",
    "ErrorInfo",
    "EscalationPolicy",
    "Event",
    "EventLogError",
    "EventOrderError",
    "EventStore",
    "Executor",
    "ExecutusError",
    "FieldRule",
    "Finding",
    "FunctionRule",
    "IdGenerator",
    "IdleCritic",
    "Image",
    "ImagePart",
    "InFlight",
    "InvalidArgumentsError",
    "Invocation",
    "Ladder",
    "MemoryStore",
    "Message",
    "Model",
    "ModelCallError",
    "ModelFailed",
    "ModelRegistry",
    "ModelRequest",
    "ModelRequested",
    "ModelResolver",
    "ModelResponded",
    "ModelResponse",
    "ModelSettings",
    "PatternRule",
    "PendingModelCall",
    "PendingTool",
    "PostRun",
    "PostRunFinished",
    "Problem",
    "RandomIds",
    "RecordingFailedError",
    "RedactingStore",
    "RedactingWriter",
    "Redaction",
    "Redactor",
    "Result",
    "RunCancelled",
    "RunFinished",
    "RunNotFoundError",
    "RunNotResumableError",
    "RunQuery",
    "RunResumed",
    "RunStarted",
    "RunState",
    "RunStatus",
    "RunSummary",
    "SchemaOutdatedError",
    "SchemaVersionError",
    "ScriptExhaustedError",
    "SealPolicy",
    "SequentialIds",
    "Session",
    "SessionContext",
    "SessionFactory",
    "Stall",
    "SteerInjected",
    "SteerMessage",
    "StoreError",
    "StoreUnavailableError",
    "SystemClock",
    "SystemMessage",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolContext",
    "ToolFinished",
    "ToolMessage",
    "ToolSpec",
    "ToolStarted",
    "UnknownEventError",
    "UnknownModelError",
    "Usage",
    "UserMessage",
    "VerifyReport",
    "VirtualClock",
    "apply",
    "decode_event",
    "encode_event",
    "extend",
    "kill",
    "nudge",
    "raise_steps",
    "rebuild",
    "tool",
]

__version__: str = _metadata.version("executus")
"""The installed distribution's version: pyproject.toml is its one source."""

if _TYPE_CHECKING:  # the deprecated names keep their types for code not yet moved over
    from executus.storage import GENESIS_HASH as GENESIS_HASH
    from executus.storage import EventSink as EventSink
    from executus.storage import canonical_json as canonical_json
    from executus.storage import chain_hash as chain_hash
    from executus.storage import check_batch as check_batch
    from executus.storage import decode_event_body as decode_event_body
    from executus.storage import event_json as event_json
    from executus.storage import event_json_and_body as event_json_and_body
    from executus.storage import event_json_from_body as event_json_from_body
    from executus.storage import summarize as summarize

_MOVED_TO_STORAGE = frozenset(
    {
        "GENESIS_HASH",
        "EventSink",
        "canonical_json",
        "chain_hash",
        "check_batch",
        "decode_event_body",
        "event_json",
        "event_json_and_body",
        "event_json_from_body",
        "summarize",
    }
)


def __getattr__(name: str) -> _Any:
    """Names only store implementers need moved to :mod:`executus.storage`: still served here,
    with a DeprecationWarning, until the next minor release."""
    if name in _MOVED_TO_STORAGE:
        _warnings.warn(
            f"executus.{name} moved to executus.storage.{name}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        from executus import storage

        return getattr(storage, name)
    raise AttributeError(f"module 'executus' has no attribute {name!r}")
