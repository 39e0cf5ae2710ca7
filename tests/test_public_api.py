"""The public surface is what __all__ says, and it all imports."""

from __future__ import annotations

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
        "Executor",
        "ExecutusError",
        "GENESIS_HASH",
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


def test_the_observability_modules_are_pinned() -> None:
    import executus.otel
    import executus.report

    for module in (executus.otel, executus.report):
        public = {name for name, value in vars(module).items() if not name.startswith("_")}
        assert set(module.__all__) <= public
    assert sorted(executus.report.__all__) == [
        "CONTENT_SECURITY_POLICY",
        "DivergenceView",
        "FieldChange",
        "Integrity",
        "blob_hashes",
        "render_index",
        "render_report",
    ]
    assert sorted(executus.otel.__all__) == [
        "CAPTURE_CONTENT_ENV",
        "ContentCapture",
        "OtelExporter",
        "OtlpJsonFileExporter",
        "RunLookup",
        "content_capture_from_env",
        "export_runs",
        "readable_spans",
        "span_id_for",
        "trace_id_for",
    ]
