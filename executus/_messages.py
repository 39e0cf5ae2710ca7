"""The model seam's data: messages, tool calls, usage, requests and responses.

Messages are frozen pydantic models in one discriminated union so that a transcript folded
from the log, a request handed to a model and a request rebuilt during replay are the same
values, serialised the same way. Images are carried by content hash: their bytes live once in
the store's blob table, and a :class:`ModelRequest` brings the bytes a model needs alongside.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic_core import PydanticUndefined

__all__ = [
    "AssistantMessage",
    "Image",
    "ImagePart",
    "Message",
    "MessagesSnapshot",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "Part",
    "SystemMessage",
    "TextPart",
    "ToolCall",
    "ToolMessage",
    "ToolSpec",
    "Usage",
    "UserMessage",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_Model = TypeVar("_Model", bound=BaseModel)
_REQUIRED: Any = object()


@dataclass(frozen=True, slots=True)
class _Plan:
    """How :func:`trusted` builds one model from one set of field names, worked out once."""

    template: dict[str, Any]
    """Every field, in order, with its default (``_REQUIRED`` where it has none or a factory)."""
    factories: tuple[tuple[str, Callable[[], Any]], ...]
    """The default factories of the fields not given."""
    fields_set: set[str] | None
    """The ``__pydantic_fields_set__`` every such model shares (frozen models), or None: a set of
    its own each (a mutable model may add to it)."""


@functools.cache
def _plan(cls: type[BaseModel], names: tuple[str, ...]) -> _Plan:
    """The plan for ``cls`` made from ``names``; a missing required field or an unknown name is
    a bug, and raises ``TypeError`` (on every call: a failed call caches nothing)."""
    template: dict[str, Any] = {}
    factories: list[tuple[str, Callable[[], Any]]] = []
    for name, info in cls.model_fields.items():
        template[name] = _REQUIRED if info.default is PydanticUndefined else info.default
        if info.default_factory is not None and name not in names:
            factories.append((name, info.default_factory))  # type: ignore[arg-type]  # no arguments here
    unknown = sorted(set(names) - set(template))
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {unknown}")
    missing = [
        name
        for name, default in template.items()
        if default is _REQUIRED and name not in names and name not in dict(factories)
    ]
    if missing:
        raise TypeError(f"{cls.__name__} needs {missing[0]}")
    frozen = bool(cls.model_config.get("frozen"))
    return _Plan(template, tuple(factories), _shared_fields_set(cls, names) if frozen else None)


@functools.cache
def _shared_fields_set(cls: type[BaseModel], names: tuple[str, ...]) -> set[str]:
    """One ``__pydantic_fields_set__`` for every frozen ``cls`` made from these names: a run's
    transcript keeps two such models a step, and a set each was a fifth of the objects the
    garbage collector walks. Nothing changes it: a frozen model refuses assignment, and
    ``model_copy`` copies the set before it adds to it."""
    return set(names)


def sharing_fields_set(model: _Model) -> _Model:
    """``model`` (frozen, just validated) with the fields-set it shares with its likes, its own
    freed: for models a run keeps for good, such as the tool calls of its transcript."""
    object.__setattr__(
        model,
        "__pydantic_fields_set__",
        _shared_fields_set(type(model), tuple(sorted(model.__pydantic_fields_set__))),
    )
    return model


_set_attribute: Final = object.__setattr__


def trusted(cls: type[_Model], **values: Any) -> _Model:
    """``cls`` made from values that were validated already, without validating them again.

    What ``model_construct`` does, a fraction of its cost: a fold makes a message per reply and
    per tool result, and the core an event per step, and ``model_construct`` (which re-derives
    every field's default on every call) was most of a rebuild. What to fill in is worked out
    once per model and set of names (each call site always gives the same names). Fields not
    given take their defaults; a required field that is missing, or a name that is no field, is
    a bug, and raises ``TypeError``.
    """
    plan = _plan(cls, tuple(values))
    fields = plan.template.copy()
    fields.update(values)
    for name, factory in plan.factories:
        fields[name] = factory()
    instance = cls.__new__(cls)
    _set_attribute(instance, "__dict__", fields)
    _set_attribute(
        instance, "__pydantic_fields_set__", set(values) if plan.fields_set is None else plan.fields_set
    )
    _set_attribute(instance, "__pydantic_extra__", None)
    _set_attribute(instance, "__pydantic_private__", None)
    return instance


class TextPart(_Frozen):
    """Plain text inside a user message."""

    kind: Literal["text"] = "text"
    text: str
    """The text."""


class ImagePart(_Frozen):
    """An image inside a user message, referenced by the sha256 of its bytes."""

    kind: Literal["image"] = "image"
    media_type: str
    """MIME type, e.g. ``image/png``."""
    sha256: str
    """Hex sha256 of the image bytes; the bytes are in the blob store."""
    size: int
    """Size of the image in bytes."""


Part = Annotated[TextPart | ImagePart, Field(discriminator="kind")]


class ToolCall(_Frozen):
    """One tool call the model asked for."""

    id: str
    """The call id the model chose; a tool result answers it by this id."""
    name: str
    """The tool's name as the model spelled it (it may name no tool at all)."""
    arguments: dict[str, JsonValue] = Field(default_factory=dict)
    """The JSON arguments the model gave, not yet validated."""


def _is_none(value: object) -> bool:
    return value is None


def omitted_when_none() -> Any:
    """The default of a field added after 0.1.0: None, and left out of the JSON when None, so
    an event that does not use it has the very bytes (and hash) 0.1.0 wrote for it."""
    return Field(default=None, exclude_if=_is_none)


class Usage(_Frozen):
    """Token counts for one model call, or summed over a run."""

    input_tokens: int = 0
    """Tokens sent to the model (cached and cache-written ones included)."""
    output_tokens: int = 0
    """Tokens the model produced (reasoning tokens included)."""
    cached_input_tokens: int | None = omitted_when_none()
    """Of ``input_tokens``, those read from the provider's prompt cache; None: not reported."""
    cache_write_tokens: int | None = omitted_when_none()
    """Of ``input_tokens``, those written to the provider's prompt cache; None: not reported."""
    reasoning_tokens: int | None = omitted_when_none()
    """Of ``output_tokens``, those spent on hidden reasoning; None: not reported."""

    @property
    def total_tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        # Both sides are validated already; this runs once per model reply in every fold.
        return trusted(
            Usage,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=_add_reported(self.cached_input_tokens, other.cached_input_tokens),
            cache_write_tokens=_add_reported(self.cache_write_tokens, other.cache_write_tokens),
            reasoning_tokens=_add_reported(self.reasoning_tokens, other.reasoning_tokens),
        )


def _add_reported(left: int | None, right: int | None) -> int | None:
    """A sum of optional counts: None only when neither side reported one."""
    if left is None:
        return right
    return left if right is None else left + right


class SystemMessage(_Frozen):
    """The agent's system prompt; always the first message of a transcript."""

    role: Literal["system"] = "system"
    content: str


class UserMessage(_Frozen):
    """The run's input, or a steer message injected before a model step."""

    role: Literal["user"] = "user"
    parts: tuple[Part, ...]
    source: Literal["input", "session", "critic"] = "input"
    """Where the message came from: the run's input, a session tool, or the critic."""

    @property
    def text(self) -> str:
        """The message's text parts joined by newlines."""
        return "\n".join(part.text for part in self.parts if isinstance(part, TextPart))


class AssistantMessage(_Frozen):
    """A model reply: text, tool calls, or both."""

    role: Literal["assistant"] = "assistant"
    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


class ToolMessage(_Frozen):
    """The result of one tool call, as the model sees it on the next step."""

    role: Literal["tool"] = "tool"
    call_id: str
    name: str
    content: str
    is_error: bool = False


Message = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")]


class ToolSpec(_Frozen):
    """What a model is told about a tool: its name, description and JSON schema."""

    name: str
    description: str = ""
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    """JSON schema of the tool's arguments object."""


class ModelResponse(_Frozen):
    """One model reply."""

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    finish_reason: str | None = None
    """Why the model stopped, in the provider's words (``stop``, ``tool_calls``, ``length``,
    ``end_turn``, ``max_tokens``, …); None when the model did not say."""


class ModelSettings(_Frozen):
    """How the model should answer: sampling, length, reasoning; sent with every request.

    Recorded with the run (``AgentSpec.model_settings``) and part of every request's
    fingerprint, so a replay knows them and a changed setting diverges. A setting left None is
    not sent, and the provider's default applies.
    """

    temperature: float | None = None
    """Sampling temperature."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Most tokens the model may produce in one reply."""
    top_p: float | None = None
    """Nucleus sampling: the probability mass sampled from."""
    seed: int | None = None
    """Seed for sampling, where the provider supports one (OpenAI-compatible servers)."""
    stop: tuple[str, ...] = ()
    """Texts that end the reply when the model produces them."""
    reasoning_effort: str | None = None
    """How hard a reasoning model thinks: ``low``, ``medium``, ``high`` (provider-specific)."""
    stream: bool = False
    """Ask for the reply as a stream of chunks (served assembled into one response)."""
    extra: dict[str, JsonValue] = Field(default_factory=dict)
    """Provider-specific request fields, merged into the request body as given."""


class MessagesSnapshot(Sequence[Message]):
    """The first ``length`` messages of an append-only transcript, as an immutable sequence.

    A run's transcript only ever grows (the fold appends to it), so its first N messages never
    change: a model request can hold this view instead of a copy, which would make each step
    cost O(transcript) and a long run O(steps²).
    """

    __slots__ = ("_length", "_messages")

    def __init__(self, messages: list[Message], length: int | None = None) -> None:
        self._messages = messages
        self._length = len(messages) if length is None else length

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Message: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Message, ...]: ...

    def __getitem__(self, index: int | slice) -> Message | tuple[Message, ...]:
        if isinstance(index, slice):
            return tuple(self._messages[: self._length][index])
        if not -self._length <= index < self._length:
            raise IndexError("message index out of range")
        return self._messages[index if index >= 0 else self._length + index]

    def __iter__(self) -> Iterator[Message]:
        return itertools.islice(self._messages, self._length)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(other) == self._length and all(a == b for a, b in zip(self, other, strict=False))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MessagesSnapshot({list(self)!r})"


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """Everything a model needs for one step.

    Attributes:
        messages: the transcript so far, system prompt first; it never changes afterwards.
        tools: the tools the model may call, sorted by name.
        images: the bytes of every image the messages reference, by sha256.
        step: the 1-based index of this model call in the run.
        settings: the agent's model settings, or None for the model's defaults.
    """

    messages: Sequence[Message]
    tools: Sequence[ToolSpec]
    images: Mapping[str, bytes] = field(default_factory=dict)
    step: int = 1
    settings: ModelSettings | None = None


@dataclass(frozen=True, slots=True)
class Image:
    """Image bytes handed to ``attach_images``; stored once by content hash."""

    data: bytes
    media_type: str = "image/png"

    @property
    def sha256(self) -> str:
        """Hex sha256 of the bytes: the image's identity in the blob store."""
        return hashlib.sha256(self.data).hexdigest()

    def part(self) -> ImagePart:
        """The transcript reference for this image."""
        return ImagePart(media_type=self.media_type, sha256=self.sha256, size=len(self.data))
