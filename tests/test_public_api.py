"""The public surface is what __all__ says, and it all imports."""

from __future__ import annotations

import ast
from pathlib import Path

import executus
import executus.testing


def test_every_public_name_is_importable() -> None:
    for name in executus.__all__:
        assert hasattr(executus, name), name


def test_the_public_api_is_pinned() -> None:
    # Adding or removing a public name is an API decision: update this list on purpose.
    assert sorted(executus.__all__) == [
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
        "EXECUTOR_VERSION",
        "ErrorInfo",
        "EscalationPolicy",
        "Event",
        "EventLogError",
        "EventOrderError",
        "EventSink",
        "EventStore",
        "EventWriter",
        "Executor",
        "ExecutusError",
        "GENESIS_HASH",
        "IdGenerator",
        "IdleCritic",
        "Image",
        "ImagePart",
        "InFlight",
        "InlineWriter",
        "InvalidArgumentsError",
        "Invocation",
        "Ladder",
        "MemoryStore",
        "Message",
        "Model",
        "ModelFailed",
        "ModelRegistry",
        "ModelRequest",
        "ModelRequested",
        "ModelResolver",
        "ModelResponded",
        "ModelResponse",
        "PendingModelCall",
        "PendingTool",
        "PostRun",
        "PostRunFinished",
        "RandomIds",
        "RecordingFailedError",
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
        "SequentialIds",
        "Session",
        "SessionContext",
        "SessionFactory",
        "Stall",
        "SteerInjected",
        "SteerMessage",
        "StoreError",
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
        "VirtualClock",
        "apply",
        "canonical_json",
        "chain_hash",
        "check_batch",
        "decode_event",
        "decode_event_body",
        "encode_event",
        "event_json",
        "event_json_and_body",
        "event_json_from_body",
        "extend",
        "kill",
        "nudge",
        "raise_steps",
        "rebuild",
        "summarize",
        "tool",
    ]
    assert set(executus.testing.__all__) == {
        "FunctionModel",
        "Hang",
        "ScriptItem",
        "ScriptedModel",
        "call",
        "estimate_usage",
        "hang",
        "reply",
    }


def test_tools_do_not_import_the_agent_types_that_import_them() -> None:
    """executus._agent imports executus._tools (an agent has tools), never the other way round."""
    source = Path(executus.__file__).parent / "_tools.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    top_level = [node for node in tree.body if isinstance(node, ast.ImportFrom | ast.If)]
    modules = {
        node.module
        for statement in top_level
        for node in ast.walk(statement)
        if isinstance(node, ast.ImportFrom)
    }
    assert "executus._agent" not in modules
