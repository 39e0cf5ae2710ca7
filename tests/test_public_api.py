"""The public surface: each package's ``__all__`` is exactly its public names (httpx's
test_exported_members), is pinned here, and all of it imports; moved names still work, with a
DeprecationWarning; importing the library never imports pytest."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import subprocess
import sys
import types
from pathlib import Path

import pytest

import executus
import executus.testing

FACADES = [
    "executus",
    "executus.events",
    "executus.storage",
    "executus.forensics",
    "executus.redaction",
    "executus.cli",
    "store",
    "replay",
]
"""Modules that only gather a public surface from private modules."""


@pytest.mark.parametrize("name", FACADES)
def test_all_is_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        member
        for member, value in vars(module).items()
        if not member.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(module.__all__) == sorted(public)


@pytest.mark.parametrize(
    "name", [*FACADES, "executus.testing", "replay.cassette", "executus.otel", "executus.report"]
)
def test_every_public_name_is_importable(name: str) -> None:
    module = importlib.import_module(name)
    for member in module.__all__:
        assert hasattr(module, member), member


MOVED = {
    "Blob": "executus.storage",
    "BlobNotFoundError": "executus.storage",
    "ConcurrencyError": "executus.storage",
    "EventSink": "executus.storage",
    "EventStore": "executus.storage",
    "Finding": "executus.storage",
    "GENESIS_HASH": "executus.storage",
    "MemoryStore": "executus.storage",
    "Problem": "executus.storage",
    "RunQuery": "executus.storage",
    "RunSummary": "executus.storage",
    "SealPolicy": "executus.storage",
    "VerifyReport": "executus.storage",
    "canonical_json": "executus.storage",
    "chain_hash": "executus.storage",
    "check_batch": "executus.storage",
    "decode_event_body": "executus.storage",
    "event_json": "executus.storage",
    "event_json_and_body": "executus.storage",
    "event_json_from_body": "executus.storage",
    "summarize": "executus.storage",
    "AgentSpec": "executus.events",
    "ArtifactRef": "executus.events",
    "ChildRunStarted": "executus.events",
    "CriticDecided": "executus.events",
    "CriticSpec": "executus.events",
    "ErrorInfo": "executus.events",
    "Event": "executus.events",
    "EventLogError": "executus.events",
    "EventOrderError": "executus.events",
    "InFlight": "executus.events",
    "ModelFailed": "executus.events",
    "ModelRequested": "executus.events",
    "ModelResponded": "executus.events",
    "PendingModelCall": "executus.events",
    "PendingTool": "executus.events",
    "PostRunFinished": "executus.events",
    "RunCancelled": "executus.events",
    "RunFinished": "executus.events",
    "RunResumed": "executus.events",
    "RunStarted": "executus.events",
    "RunState": "executus.events",
    "RunStatus": "executus.events",
    "SchemaVersionError": "executus.events",
    "SteerInjected": "executus.events",
    "SteerMessage": "executus.events",
    "ToolFinished": "executus.events",
    "ToolStarted": "executus.events",
    "UnknownEventError": "executus.events",
    "apply": "executus.events",
    "decode_event": "executus.events",
    "encode_event": "executus.events",
    "rebuild": "executus.events",
    "BUILTIN_DETECTORS": "executus.redaction",
    "FieldRule": "executus.redaction",
    "FunctionRule": "executus.redaction",
    "PatternRule": "executus.redaction",
    "RedactingStore": "executus.redaction",
    "RedactingWriter": "executus.redaction",
    "Redaction": "executus.redaction",
    "Redactor": "executus.redaction",
    "ScriptExhaustedError": "executus.testing",
}
"""Names that left the top level, and the public module each moved to."""


@pytest.mark.parametrize(("name", "module"), sorted(MOVED.items()))
def test_names_moved_off_the_top_level_still_work_with_a_warning(name: str, module: str) -> None:
    with pytest.warns(DeprecationWarning, match=f"executus.{name} moved to {module}.{name}"):
        value = getattr(executus, name)
    assert value is getattr(importlib.import_module(module), name)
    assert name in importlib.import_module(module).__all__
    assert name not in executus.__all__


def test_moved_names_keep_their_types_for_type_checkers() -> None:
    """``if TYPE_CHECKING:`` re-imports every moved name from its new module, so mypy still
    types code that has not moved over yet."""
    tree = ast.parse(Path(executus.__file__).read_text(encoding="utf-8"))
    guarded = next(node for node in tree.body if isinstance(node, ast.If))
    typed = {
        alias.name: node.module
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name
    }
    assert typed == MOVED


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        executus.nonsense  # noqa: B018


def test_the_version_has_one_source() -> None:
    assert executus.__version__ == importlib.metadata.version("executus")


def test_the_library_does_not_import_pytest() -> None:
    code = (
        "import sys, executus, executus.events, executus.storage, executus.forensics, executus.redaction, "
        "executus.testing, executus.cli, "
        "store, replay, replay.cassette; print('pytest' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "False\n"


def test_the_narrower_modules_are_pinned() -> None:
    import executus.events
    import executus.forensics
    import executus.redaction
    import executus.storage

    assert sorted(executus.events.__all__) == [
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
    assert sorted(executus.redaction.__all__) == [
        "BUILTIN_DETECTORS",
        "FieldRule",
        "FunctionRule",
        "PatternRule",
        "RedactingStore",
        "RedactingWriter",
        "Redaction",
        "Redactor",
    ]

    assert sorted(executus.storage.__all__) == [
        "Blob",
        "BlobNotFoundError",
        "Claim",
        "ConcurrencyError",
        "EventSink",
        "EventStore",
        "EventWriter",
        "Finding",
        "GENESIS_HASH",
        "InlineWriter",
        "Lease",
        "LeaseHeldError",
        "LeaseInfo",
        "LeaseLostError",
        "LeaseWriter",
        "MemoryStore",
        "Problem",
        "QueuedRun",
        "Renewal",
        "RunExistsError",
        "RunLeases",
        "RunQuery",
        "RunSummary",
        "Seal",
        "SealPolicy",
        "StoredRow",
        "VerifyReport",
        "canonical_json",
        "chain_hash",
        "check_batch",
        "check_run",
        "decode_event_body",
        "event_json",
        "event_json_and_body",
        "event_json_from_body",
        "seal_due",
        "summarize",
    ]
    assert sorted(executus.forensics.__all__) == [
        "Explanation",
        "SECTION_TITLES",
        "Section",
        "Statement",
        "explain",
        "terminal_text",
    ]


def test_the_public_api_is_pinned() -> None:
    # Adding or removing a public name is an API decision: update this list on purpose.
    assert sorted(executus.__all__) == [
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
        "EXECUTOR_VERSION",
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
    assert set(executus.testing.__all__) == {
        "FunctionModel",
        "Hang",
        "ScriptExhaustedError",
        "ScriptItem",
        "ScriptedModel",
        "call",
        "estimate_usage",
        "hang",
        "reply",
    }


def test_the_other_packages_are_pinned() -> None:
    import executus.cli
    import replay
    import store

    assert sorted(executus.cli.__all__) == ["cli", "main"]
    assert sorted(store.__all__) == [
        "ENV_DB",
        "RunEvidence",
        "SqlStore",
        "StoredEvent",
        "WriterSettings",
        "current_revision",
        "default_url",
        "display_url",
        "head_revision",
        "hide_passwords",
        "is_known_revision",
        "make_default_directory",
        "open_store",
        "run_evidence",
        "signed_checkpoint",
        "upgrade",
        "verify_all",
        "verify_checkpoint",
        "verify_run",
    ]
    assert sorted(replay.__all__) == [
        "BlobSource",
        "Cassette",
        "CassetteConflictError",
        "CassetteError",
        "CassetteHeader",
        "CriticAction",
        "DivergenceError",
        "FieldDifference",
        "ReplayDivergence",
        "ReplayError",
        "ReplayResult",
        "ReplayRunsResult",
        "Replayer",
        "WhatIfReport",
        "dump_cassette",
        "import_cassette",
        "load_cassette",
        "read_cassette",
        "save_cassette",
        "write_cassette",
    ]


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
        "default_resource",
        "export_runs",
        "readable_spans",
        "span_id_for",
        "trace_id_for",
    ]


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
        "StreamingModel",
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
