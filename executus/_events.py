"""The v1 event catalogue: every fact a run records, as frozen pydantic models.

Each event is a past-tense fact about one run. The envelope (``run_id``, ``seq``, ``at``,
``kind``, ``schema_version``) is the same for all; the store adds a global position and the
hash chain around it. Events are decoded from storage with :func:`decode_event`, which upcasts
rows written by older schema versions and refuses kinds or versions it does not know. The SQL
store keeps the envelope in columns and only the rest, the *body*, as JSON text;
:func:`decode_event_body` decodes such a row.

An event's ``at`` is always in UTC (other zones are converted on validation), so its JSON text
is a function of the instant alone: :func:`utc_json`. That is what lets a store keep ``at`` as
a timestamp column and still rebuild the event's exact canonical text, which its hash covers.

Adding a field: give it a default that is right for every old row; that is not a new version.
Renaming or re-typing a field: bump that kind's version in ``SCHEMA_VERSIONS`` and register an
upcaster from the old version in ``_UPCASTERS``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from operator import methodcaller
from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    ValidationError,
)

from executus._errors import SchemaVersionError, UnknownEventError
from executus._messages import ImagePart, ModelSettings, ToolCall, ToolSpec, Usage, omitted_when_none
from executus._retry import RetryPolicy

__all__ = [
    "AgentSpec",
    "ArtifactRef",
    "ChildRunStarted",
    "CriticDecided",
    "CriticSpec",
    "ErrorInfo",
    "Event",
    "InFlight",
    "ModelAttemptFailed",
    "ModelChunk",
    "ModelFailed",
    "ModelRequested",
    "ModelResponded",
    "PostRunFinished",
    "RunCancelled",
    "RunFinished",
    "RunResumed",
    "RunStarted",
    "RunStatus",
    "SteerInjected",
    "SteerMessage",
    "ToolCallFragment",
    "ToolFinished",
    "ToolStarted",
    "canonical_json",
    "decode_event",
    "decode_event_body",
    "encode_event",
]

RunStatus: TypeAlias = Literal["ok", "error", "timeout", "cancelled", "killed"]
CancelCause: TypeAlias = Literal["caller", "timeout", "critic_kill", "shutdown", "parent_stopped"]
"""Why a run was cancelled. ``parent_stopped``: its parent run stopped in this process without
ending (its lease was lost to another worker, or it was handed over), so the child run it was
waiting on was ended here. A new value is no new schema version: no stored row changes."""
CriticDecisionKind: TypeAlias = Literal["nudge", "extend", "raise_steps", "kill"]


_CANONICAL: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
)
# One encoder for every call: json.dumps with options builds a new one each time, which cost
# more than the encoding of a small event. Events are trees, so no circular check.
_ENCODE_CHUNKS: Final = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, _CANONICAL.default, encode_basestring, None, ":", ",", True, False, False)
)
# What _CANONICAL.encode itself builds on every call (CPython's C encoder, with the same
# options in the same order), built once: a third of an event's encoding, and appends encode
# each event twice (its full text and its body).


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values always give equal text."""
    if _ENCODE_CHUNKS is None:  # pragma: no cover - Pythons without the C accelerator
        return _CANONICAL.encode(value)
    return "".join(_ENCODE_CHUNKS(value, 0))


def utc_json(at: datetime) -> str:
    """The JSON text of an aware time, in UTC, exactly as pydantic writes it for an event's ``at``.

    ISO 8601 with a ``Z``, and microseconds only when there are any:
    ``2026-01-01T00:00:03Z``, ``2026-01-01T00:00:03.250000Z``.
    """
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    return at.isoformat()[:-6] + "Z"  # in place of the "+00:00" that ends a UTC time


def sha256_hex(text: str) -> str:
    """Hex sha256 of UTF-8 text."""
    return hashlib.sha256(text.encode()).hexdigest()


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorInfo(_Frozen):
    """An exception, reduced to what a log reader needs."""

    type: str
    """The exception's class name, e.g. ``TimeoutError``."""
    message: str
    """``str(exception)``."""
    status: int | None = omitted_when_none()
    """The HTTP error status of a failed model call; None: no response, or not an HTTP error."""
    code: str | None = omitted_when_none()
    """The provider's error code or type (``rate_limit_exceeded``, ``overloaded_error``), or the
    failure's kind (``connection``, ``timeout``, ``stream_interrupted``); None: not said."""
    request_id: str | None = omitted_when_none()
    """The provider's id for the failed request, for its support."""
    retry_after: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = omitted_when_none()
    """Seconds the server asked to wait before trying again; None: it did not say."""
    retryable: bool | None = omitted_when_none()
    """Whether the model adapter judged that trying again may succeed; None: not a model call
    error (nothing judged it)."""

    @classmethod
    def of(cls, error: BaseException) -> ErrorInfo:
        """Describe an exception."""
        return cls(type=type(error).__name__, message=str(error))

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


class CriticSpec(_Frozen):
    """The critic configuration a run started with."""

    name: str
    """The critic's class name."""
    settings: dict[str, JsonValue] = Field(default_factory=dict)
    """Its settings, as it reports them (thresholds, escalation ladder)."""


class AgentSpec(_Frozen):
    """Snapshot of the agent a run started with: enough to audit and to replay it."""

    name: str
    model: str
    """The model's name, as the resolver knows it."""
    system_prompt: str
    tools: tuple[ToolSpec, ...] = ()
    """Every tool the model could call (agent, invocation and session tools), sorted by name."""
    max_iterations: int
    """Model calls allowed before the run ends as an error."""
    max_runtime: float | None = None
    """Seconds the run may take from its start, or None for no limit."""
    parallel_tool_calls: bool = True
    """Whether the tool calls of one model reply run concurrently."""
    critic: CriticSpec | None = None
    model_settings: ModelSettings | None = omitted_when_none()
    """The settings sent with every model request (None: the model's defaults)."""
    retry: RetryPolicy | None = omitted_when_none()
    """How failed model calls were retried; None: never (one attempt per step, as every run
    recorded before retries existed)."""
    idempotent_tools: tuple[str, ...] | None = omitted_when_none()
    """Names of the tools declared idempotent, sorted (None: none): a call of one that was in
    flight when its process stopped is run again on recovery instead of failed as interrupted."""


class _Event(_Frozen):
    run_id: str
    """The run this event belongs to."""
    seq: int = Field(ge=1)
    """1, 2, 3… within the run, with no gaps."""
    at: Annotated[AwareDatetime, AfterValidator(methodcaller("astimezone", UTC))]
    """When it happened, from the executor's injected clock; converted to UTC (the same instant)."""
    schema_version: int = 1
    """Version of this kind's payload shape."""


class RunStarted(_Event):
    """A run began; always seq 1."""

    kind: Literal["run_started"] = "run_started"
    agent: AgentSpec
    input: str
    caller_id: str | None = None
    parent_run_id: str | None = None
    """Set when a tool of another run started this one (delegation)."""
    parent_call_id: str | None = None
    """The parent's tool call that started this run."""
    executor_version: str


class ChildRunStarted(_Event):
    """A tool of this run started a child run (delegation)."""

    kind: Literal["child_run_started"] = "child_run_started"
    child_run_id: str
    call_id: str
    tool_name: str


class ModelRequested(_Event):
    """A model call is about to be made; committed before the call starts."""

    kind: Literal["model_requested"] = "model_requested"
    step: int = Field(ge=1)
    fingerprint: str
    """sha256 over the canonical request (messages, tool schemas): equal requests, equal prints."""
    message_count: int


class ToolCallFragment(_Frozen):
    """Part of one tool call as it streamed in: fragments with the same ``index`` make one call."""

    index: int = Field(ge=0)
    """The call's position in the reply."""
    id: str | None = None
    """The call id (on the call's first fragment)."""
    name: str | None = None
    """The tool's name (on the call's first fragment)."""
    arguments: str = ""
    """More of the arguments' JSON text, as it arrived (not valid JSON on its own)."""


class ModelChunk(_Event):
    """Part of a streamed reply, as it arrived (a batch of the model's deltas).

    Recorded only when the agent streams (``ModelSettings(stream=True)``): what arrived of a
    step's reply, in order, so a cancel, a crash or a cut stream leaves it in the log.
    ``model_responded`` still records the whole reply; the chunks of a step are what led to
    it (or all that is left of it, when it never came).
    """

    kind: Literal["model_chunk"] = "model_chunk"
    step: int = Field(ge=1)
    text: str = ""
    """The reply's text that arrived in this batch."""
    tool_calls: tuple[ToolCallFragment, ...] = ()
    """Tool-call fragments that arrived in this batch, in arrival order."""


class ModelResponded(_Event):
    """The model replied."""

    kind: Literal["model_responded"] = "model_responded"
    step: int = Field(ge=1)
    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    latency: float
    """Seconds from request to reply."""
    finish_reason: str | None = omitted_when_none()
    """Why the model stopped, in the provider's words; None when it did not say."""


class ModelAttemptFailed(_Event):
    """One attempt at a step's model call failed, and the retry policy will try again."""

    kind: Literal["model_attempt_failed"] = "model_attempt_failed"
    step: int = Field(ge=1)
    attempt: int = Field(ge=1)
    """Which attempt at this step failed: 1 for the first call."""
    error: ErrorInfo
    """What failed: HTTP status, provider code, request id and ``retry-after`` where known."""
    next_attempt_at: AwareDatetime
    """When the next attempt is due, on the run's clock (back-off, or the server's retry-after)."""

    @property
    def status(self) -> int | None:
        """The failed attempt's HTTP status, if it had one."""
        return self.error.status


class ModelFailed(_Event):
    """The model call raised and the retry policy gave up (or it was not retryable); the run
    ends as an error. Attempts before the last are the step's ``model_attempt_failed`` events."""

    kind: Literal["model_failed"] = "model_failed"
    step: int = Field(ge=1)
    error: ErrorInfo


class ToolStarted(_Event):
    """A tool call is about to run; committed before the tool starts."""

    kind: Literal["tool_started"] = "tool_started"
    call_id: str
    name: str
    arguments: dict[str, JsonValue] = Field(default_factory=dict)


class ToolFinished(_Event):
    """A tool call returned or failed; exactly one of ``result`` and ``error`` is set."""

    kind: Literal["tool_finished"] = "tool_finished"
    call_id: str
    name: str
    result: str | None = None
    error: ErrorInfo | None = None
    duration: float

    @property
    def content(self) -> str:
        """What the model sees on its next step."""
        return self.result if self.error is None and self.result is not None else f"error: {self.error}"


class SteerMessage(_Frozen):
    """One steer message: text and attached images (by content hash)."""

    text: str
    images: tuple[ImagePart, ...] = ()


class SteerInjected(_Event):
    """Queued steer messages were added to the transcript before the next model step."""

    kind: Literal["steer_injected"] = "steer_injected"
    source: Literal["session", "critic"]
    messages: tuple[SteerMessage, ...]


class CriticDecided(_Event):
    """The critic consulted its escalation policy about an idle run and acted."""

    kind: Literal["critic_decided"] = "critic_decided"
    decision: CriticDecisionKind
    reason: str
    idle_seconds: float
    """How long the run had shown no activity when the critic decided."""
    old_deadline: AwareDatetime | None = None
    new_deadline: AwareDatetime | None = None
    old_max_steps: int | None = None
    new_max_steps: int | None = None
    nudge: str | None = None
    """The text queued for the model, for a nudge."""


class InFlight(_Frozen):
    """Something that had started and not finished when a run was stopped."""

    kind: Literal["model", "tool"]
    name: str
    """The model's or the tool's name."""
    call_id: str | None = None
    arguments: dict[str, JsonValue] = Field(default_factory=dict)
    started_at: AwareDatetime


class RunCancelled(_Event):
    """The run was stopped from outside its own loop; records the cause and what was in flight."""

    kind: Literal["run_cancelled"] = "run_cancelled"
    cause: CancelCause
    detail: str = ""
    in_flight: tuple[InFlight, ...] = ()


class RunResumed(_Event):
    """An interrupted run was picked up again from its log: by ``Executor.resume``, or by a
    worker that claimed it once its owner's lease expired."""

    kind: Literal["run_resumed"] = "run_resumed"
    interrupted: tuple[InFlight, ...] = ()
    """What was in flight when the previous process stopped; tools among them are recorded as
    failed next (they may have had side effects, so they are never re-run behind the model's
    back), except those in ``rerun``."""
    downtime: float
    """Seconds between the last recorded event and the resume."""
    old_deadline: AwareDatetime | None = None
    new_deadline: AwareDatetime | None = None
    """The deadline moves by the downtime: time spent dead does not count against max_runtime."""
    executor_version: str
    worker_id: str | None = omitted_when_none()
    """The worker that took the run over and owns it from here (None: a run without a lease)."""
    previous_owner: str | None = omitted_when_none()
    """The worker that owned the run before (None: never owned, or not known)."""
    lease_expired_at: AwareDatetime | None = omitted_when_none()
    """When the previous owner's lease ran out (None: not known, or taken by force)."""
    forced: bool | None = omitted_when_none()
    """True when the run was taken over while its previous owner's lease was still live."""
    rerun: tuple[str, ...] | None = omitted_when_none()
    """Call ids of the idempotent tool calls in flight that are run again (None: none)."""


class ArtifactRef(_Frozen):
    """An artifact produced by a session's post-run hook; bytes are in the blob store."""

    name: str
    media_type: str
    sha256: str
    size: int


class PostRunFinished(_Event):
    """The session's post-run hook and cleanup ran (their failures are recorded, never raised)."""

    kind: Literal["post_run_finished"] = "post_run_finished"
    artifacts: tuple[ArtifactRef, ...] = ()
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    error: ErrorInfo | None = None
    cleanup_error: ErrorInfo | None = None


class RunFinished(_Event):
    """The run ended; always the last event."""

    kind: Literal["run_finished"] = "run_finished"
    status: RunStatus
    output: str | None = None
    error: ErrorInfo | None = None
    usage: Usage = Usage()
    steps: int
    duration: float
    """Seconds from run_started to this event."""


Event = Annotated[
    RunStarted
    | ChildRunStarted
    | ModelRequested
    | ModelChunk
    | ModelResponded
    | ModelAttemptFailed
    | ModelFailed
    | ToolStarted
    | ToolFinished
    | SteerInjected
    | CriticDecided
    | RunCancelled
    | RunResumed
    | PostRunFinished
    | RunFinished,
    Field(discriminator="kind"),
]

EVENT_ADAPTER: Final[TypeAdapter[Event]] = TypeAdapter(Event)

ENVELOPE_KEYS: Final = ("run_id", "seq", "kind", "schema_version", "at")
"""The keys every event has: the SQL store keeps them as columns, and the rest as the body."""
_ENVELOPE_MARKERS: Final = tuple(f'"{key}":' for key in ENVELOPE_KEYS)
"""How an envelope key starts in canonical JSON: a quote inside a string value is escaped, so
only a key (at any depth) can contain one of these."""

SCHEMA_VERSIONS: Final[Mapping[str, int]] = {
    "run_started": 1,
    "child_run_started": 1,
    "model_requested": 1,
    "model_chunk": 1,
    "model_responded": 1,
    "model_attempt_failed": 1,
    "model_failed": 1,
    "tool_started": 1,
    "tool_finished": 1,
    "steer_injected": 1,
    "critic_decided": 1,
    "run_cancelled": 1,
    "run_resumed": 1,
    "post_run_finished": 1,
    "run_finished": 1,
}


def _model_responded_v0(data: dict[str, Any]) -> dict[str, Any]:
    # Pre-release builds stored latency as integer milliseconds.
    data = dict(data)
    data["latency"] = data.pop("latency_ms", 0) / 1000
    return data


_UPCASTERS: Final[Mapping[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    ("model_responded", 0): _model_responded_v0,
}


def encode_event(event: Event) -> dict[str, Any]:
    """The event as plain JSON-compatible data (what its canonical JSON is made of).

    ``at`` is always :func:`utc_json`'s text, so that a store can rebuild the text it hashed
    from the instant alone: validation puts ``at`` in UTC, which pydantic writes so (a test
    pins the two together), and an event copied with another zone without validation
    (``model_copy``) is converted here.
    """
    # model_dump(mode="json") with every other option at its default, without its wrapper (a
    # fifth of the call, and the store encodes every event it appends).
    data: dict[str, Any] = event.__pydantic_serializer__.to_python(event, mode="json")
    if event.at.tzinfo is not UTC:
        data["at"] = utc_json(event.at)
    return data


def decode_event_body(
    body: str, run_id: str, seq: int, kind: str, schema_version: int, at: datetime | str
) -> Event:
    """Decode an event stored as its envelope's values and its body's JSON (the other keys).

    A row of the current version is validated straight from its JSON, with the envelope
    written in front of the body's keys (the read path's hot loop: parsing the body to a dict
    first would do the work twice); older rows go through :func:`decode_event` and its upcasters.
    This is the only way stored text is decoded (a cassette's full lines go through
    :func:`decode_event`).

    Args:
        body: the event's canonical JSON without the envelope keys.
        run_id, seq, kind, schema_version: the envelope's values.
        at: the event's time, or its ISO 8601 text in UTC (written into the JSON as it is, so a
            store can have its database format it).

    Raises:
        UnknownEventError: unknown kind, or a body that is not a valid event's.
        SchemaVersionError: the row was written by a newer executus.
    """
    at_text = at if isinstance(at, str) else utc_json(at)
    if any(marker in body for marker in _ENVELOPE_MARKERS):
        # Possibly a top-level key repeating the envelope (or only a nested one: parse to tell).
        # Validation would let the body's value win over the column's, changing what a reader
        # sees while the hash, computed with the column's value, stays valid.
        refuse_envelope_keys(body_object(body))
    if SCHEMA_VERSIONS.get(kind) == schema_version:
        # The kind is one of ours, so it needs no escaping.
        text = (
            f'{{"run_id":{encode_basestring(run_id)},"seq":{seq},"kind":"{kind}",'
            f'"schema_version":{schema_version},"at":"{at_text}"{"}" if body == "{}" else "," + body[1:]}'
        )
        try:
            return EVENT_ADAPTER.validate_json(text)
        except ValidationError as error:
            raise UnknownEventError(f"invalid {kind} event: {error.errors()[0]['msg']}") from error
    data = body_object(body)
    refuse_envelope_keys(data)
    data.update(run_id=run_id, seq=seq, kind=kind, schema_version=schema_version, at=at_text)
    return decode_event(data)


def body_object(body: str) -> dict[str, Any]:
    """A stored body's JSON object.

    Raises:
        UnknownEventError: the text is not JSON, or not an object.
    """
    try:
        data = json.loads(body)
    except ValueError as error:
        raise UnknownEventError(f"stored payload is not an event: {error}") from error
    if not isinstance(data, dict):
        raise UnknownEventError("stored payload is not an event: not a JSON object")
    return data


def refuse_envelope_keys(body: Mapping[str, Any]) -> None:
    """Refuse a body that repeats an envelope field: the columns alone say what the envelope is.

    Raises:
        UnknownEventError: the body has a key ``run_id``, ``seq``, ``kind``, ``schema_version``
            or ``at``.
    """
    repeated = [key for key in ENVELOPE_KEYS if key in body]
    if repeated:
        raise UnknownEventError(f"stored body repeats the envelope field {repeated[0]!r}")


def decode_event(data: Mapping[str, Any]) -> Event:
    """Validate stored event data, upcasting rows written by older schema versions.

    Raises:
        UnknownEventError: the kind is not in this version's catalogue, or the data is invalid.
        SchemaVersionError: the row was written by a newer executus.
    """
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in SCHEMA_VERSIONS:
        raise UnknownEventError(f"unknown event kind {kind!r} (known: {', '.join(SCHEMA_VERSIONS)})")
    current = SCHEMA_VERSIONS[kind]
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version > current:
        raise SchemaVersionError(
            f"{kind} event has schema version {version}, but this executus reads up to {current}: "
            "upgrade executus"
        )
    row = dict(data)
    while version < current:
        upcast = _UPCASTERS.get((kind, version))
        if upcast is None:
            raise SchemaVersionError(f"no upcaster for {kind} from schema version {version}")
        row = upcast(row)
        version += 1
        row["schema_version"] = version
    try:
        return EVENT_ADAPTER.validate_python(row)
    except ValidationError as error:
        raise UnknownEventError(f"invalid {kind} event: {error.errors()[0]['msg']}") from error
