"""executus: run LLM agents and record every run as an append-only event log.

The public API is everything in ``__all__`` (what a user writing and running agents needs),
plus public modules for narrower audiences: fake models for tests in :mod:`executus.testing`;
the event catalogue and the state fold, for readers of logs, in :mod:`executus.events`;
``explain`` (how and why a run ended) in :mod:`executus.forensics`; what store implementers
and auditors need in :mod:`executus.storage`; secret redaction in :mod:`executus.redaction`;
and adapters for real models (OpenAI, Anthropic) in :mod:`executus.models`. Modules starting
with ``_`` are internal; ``executus.cli`` is the command line.
"""

import importlib as _importlib
import warnings as _warnings
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any
from typing import Final as _Final

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
    ConfigurationError,
    DatabaseUnavailableError,
    ExecutusError,
    LeaseHeldError,
    LeaseLostError,
    ModelCallError,
    RecordingFailedError,
    RunExistsError,
    RunNotFoundError,
    RunNotResumableError,
    SchemaOutdatedError,
    StoreError,
    StoreUnavailableError,
    UnknownModelError,
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
from executus._retry import RetryPolicy
from executus._tools import InvalidArgumentsError, Tool, tool
from executus._worker import Worker, enqueue

__all__ = [
    "EXECUTOR_VERSION",
    "Agent",
    "Artifact",
    "AssistantMessage",
    "BudgetPort",
    "Cancellation",
    "Clock",
    "ConfigurationError",
    "Critic",
    "CriticDecision",
    "DatabaseUnavailableError",
    "DeliveryPort",
    "EscalationPolicy",
    "Executor",
    "ExecutusError",
    "IdGenerator",
    "IdleCritic",
    "Image",
    "ImagePart",
    "InvalidArgumentsError",
    "Invocation",
    "Ladder",
    "LeaseHeldError",
    "LeaseLostError",
    "Message",
    "Model",
    "ModelCallError",
    "ModelRegistry",
    "ModelRequest",
    "ModelResolver",
    "ModelResponse",
    "ModelSettings",
    "PostRun",
    "RandomIds",
    "RecordingFailedError",
    "Result",
    "RetryPolicy",
    "RunExistsError",
    "RunNotFoundError",
    "RunNotResumableError",
    "SchemaOutdatedError",
    "SequentialIds",
    "Session",
    "SessionContext",
    "SessionFactory",
    "Stall",
    "StoreError",
    "StoreUnavailableError",
    "SystemClock",
    "SystemMessage",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolContext",
    "ToolMessage",
    "ToolSpec",
    "UnknownModelError",
    "Usage",
    "UserMessage",
    "VirtualClock",
    "Worker",
    "enqueue",
    "extend",
    "kill",
    "nudge",
    "raise_steps",
    "tool",
]

__version__: str = EXECUTOR_VERSION
"""The installed distribution's version: pyproject.toml is its one source."""

if _TYPE_CHECKING:  # the deprecated names keep their types for code not yet moved over
    from executus.events import AgentSpec as AgentSpec
    from executus.events import ArtifactRef as ArtifactRef
    from executus.events import ChildRunStarted as ChildRunStarted
    from executus.events import CriticDecided as CriticDecided
    from executus.events import CriticSpec as CriticSpec
    from executus.events import ErrorInfo as ErrorInfo
    from executus.events import Event as Event
    from executus.events import EventLogError as EventLogError
    from executus.events import EventOrderError as EventOrderError
    from executus.events import InFlight as InFlight
    from executus.events import ModelFailed as ModelFailed
    from executus.events import ModelRequested as ModelRequested
    from executus.events import ModelResponded as ModelResponded
    from executus.events import PendingModelCall as PendingModelCall
    from executus.events import PendingTool as PendingTool
    from executus.events import PostRunFinished as PostRunFinished
    from executus.events import RunCancelled as RunCancelled
    from executus.events import RunFinished as RunFinished
    from executus.events import RunResumed as RunResumed
    from executus.events import RunStarted as RunStarted
    from executus.events import RunState as RunState
    from executus.events import RunStatus as RunStatus
    from executus.events import SchemaVersionError as SchemaVersionError
    from executus.events import SteerInjected as SteerInjected
    from executus.events import SteerMessage as SteerMessage
    from executus.events import ToolFinished as ToolFinished
    from executus.events import ToolStarted as ToolStarted
    from executus.events import UnknownEventError as UnknownEventError
    from executus.events import apply as apply
    from executus.events import decode_event as decode_event
    from executus.events import encode_event as encode_event
    from executus.events import rebuild as rebuild
    from executus.redaction import BUILTIN_DETECTORS as BUILTIN_DETECTORS
    from executus.redaction import FieldRule as FieldRule
    from executus.redaction import FunctionRule as FunctionRule
    from executus.redaction import PatternRule as PatternRule
    from executus.redaction import RedactingStore as RedactingStore
    from executus.redaction import RedactingWriter as RedactingWriter
    from executus.redaction import Redaction as Redaction
    from executus.redaction import Redactor as Redactor
    from executus.storage import GENESIS_HASH as GENESIS_HASH
    from executus.storage import Blob as Blob
    from executus.storage import BlobNotFoundError as BlobNotFoundError
    from executus.storage import ConcurrencyError as ConcurrencyError
    from executus.storage import EventSink as EventSink
    from executus.storage import EventStore as EventStore
    from executus.storage import Finding as Finding
    from executus.storage import MemoryStore as MemoryStore
    from executus.storage import Problem as Problem
    from executus.storage import RunQuery as RunQuery
    from executus.storage import RunSummary as RunSummary
    from executus.storage import SealPolicy as SealPolicy
    from executus.storage import VerifyReport as VerifyReport
    from executus.storage import canonical_json as canonical_json
    from executus.storage import chain_hash as chain_hash
    from executus.storage import check_batch as check_batch
    from executus.storage import decode_event_body as decode_event_body
    from executus.storage import event_json as event_json
    from executus.storage import event_json_and_body as event_json_and_body
    from executus.storage import event_json_from_body as event_json_from_body
    from executus.storage import summarize as summarize
    from executus.testing import ScriptExhaustedError as ScriptExhaustedError

_MOVED: _Final[dict[str, tuple[str, ...]]] = {
    "executus.storage": (
        "Blob",
        "BlobNotFoundError",
        "ConcurrencyError",
        "EventSink",
        "EventStore",
        "Finding",
        "GENESIS_HASH",
        "MemoryStore",
        "Problem",
        "RunQuery",
        "RunSummary",
        "SealPolicy",
        "VerifyReport",
        "canonical_json",
        "chain_hash",
        "check_batch",
        "decode_event_body",
        "event_json",
        "event_json_and_body",
        "event_json_from_body",
        "summarize",
    ),
    "executus.events": (
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
        "ToolFinished",
        "ToolStarted",
        "UnknownEventError",
        "apply",
        "decode_event",
        "encode_event",
        "rebuild",
    ),
    "executus.redaction": (
        "BUILTIN_DETECTORS",
        "FieldRule",
        "FunctionRule",
        "PatternRule",
        "RedactingStore",
        "RedactingWriter",
        "Redaction",
        "Redactor",
    ),
    "executus.testing": ("ScriptExhaustedError",),
}
"""Names that left the top level, by the public module they moved to (each still in its ``__all__``)."""
_NEW_HOME: _Final[dict[str, str]] = {name: module for module, names in _MOVED.items() for name in names}


def __getattr__(name: str) -> _Any:
    """Names for narrower audiences moved to their own public modules (:data:`_MOVED`): still
    served here, with a DeprecationWarning, until the next minor release."""
    module = _NEW_HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'executus' has no attribute {name!r}")
    _warnings.warn(
        f"executus.{name} moved to {module}.{name}; import it from there", DeprecationWarning, stacklevel=2
    )
    return getattr(_importlib.import_module(module), name)
