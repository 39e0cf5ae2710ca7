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

FACADES = ["executus", "executus.storage", "executus.forensics", "executus.cli", "store", "replay"]
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


@pytest.mark.parametrize(
    "name",
    [
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
    ],
)
def test_names_moved_to_storage_still_work_with_a_warning(name: str) -> None:
    import executus.storage

    with pytest.warns(DeprecationWarning, match=f"executus.{name} moved to executus.storage.{name}"):
        value = getattr(executus, name)
    assert value is getattr(executus.storage, name)
    assert name not in executus.__all__


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        executus.nonsense  # noqa: B018


def test_the_version_has_one_source() -> None:
    assert executus.__version__ == importlib.metadata.version("executus")


def test_the_library_does_not_import_pytest() -> None:
    code = (
        "import sys, executus, executus.storage, executus.forensics, executus.testing, executus.cli, "
        "store, replay, replay.cassette; print('pytest' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "False\n"


def test_storage_and_forensics_are_pinned() -> None:
    import executus.forensics
    import executus.storage

    assert sorted(executus.storage.__all__) == [
        "Blob",
        "EventSink",
        "EventStore",
        "EventWriter",
        "GENESIS_HASH",
        "InlineWriter",
        "MemoryStore",
        "RunQuery",
        "RunSummary",
        "Seal",
        "StoredRow",
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
        "AgentSpec",
        "Artifact",
        "ArtifactRef",
        "AssistantMessage",
        "BUILTIN_DETECTORS",
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
