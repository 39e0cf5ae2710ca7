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
        "ModelCallError",
        "ModelFailed",
        "ModelRegistry",
        "ModelRequest",
        "ModelRequested",
        "ModelResolver",
        "ModelResponded",
        "ModelResponse",
        "ModelSettings",
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


def test_the_models_api_is_pinned() -> None:
    import executus.models

    assert sorted(executus.models.__all__) == [
        "AnthropicModel",
        "ChatAdapter",
        "ModelChunk",
        "OpenAIModel",
        "PROVIDERS",
        "PartialReply",
        "ReplyAssembler",
        "StreamFinished",
        "TextDelta",
        "ToolCallDelta",
        "model_from_name",
    ]
    for name in executus.models.__all__:
        assert getattr(executus.models, name) is not None, name


def test_an_adapter_without_its_sdk_names_the_extra_to_install() -> None:
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['openai'] = None\n"  # what a missing package looks like to import
        "from executus import ConfigurationError\n"
        "try:\n"
        "    from executus.models import OpenAIModel\n"
        "except ConfigurationError as error:\n"
        "    print(error)\n"
    )
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout

    assert shown == "the OpenAI adapter needs the openai SDK: pip install 'executus[openai]'\n"
