"""A model reply as it streams: typed chunks, and the assembler that turns them into a reply.

Adapters speak their provider's stream format and yield these chunks; the same assembler
builds the :class:`ModelResponse` from a stream and from a whole reply (which an adapter hands
over as the chunks a stream would have had), so both paths give the same response. A stream
that ends before its :class:`StreamFinished` chunk was cut off: its usage is *unknown* (None),
never zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from executus._messages import ModelResponse, ToolCall, Usage

__all__ = ["ModelChunk", "PartialReply", "ReplyAssembler", "StreamFinished", "TextDelta", "ToolCallDelta"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TextDelta(_Frozen):
    """More of the reply's text."""

    kind: Literal["text"] = "text"
    text: str


class ToolCallDelta(_Frozen):
    """A fragment of one tool call; fragments with the same ``index`` make one call."""

    kind: Literal["tool_call"] = "tool_call"
    index: int = Field(ge=0)
    """The call's position in the reply."""
    id: str | None = None
    """The call id (the call's first fragment carries it)."""
    name: str | None = None
    """The tool's name (the call's first fragment carries it)."""
    arguments: str = ""
    """More of the arguments' JSON text."""


class StreamFinished(_Frozen):
    """The reply is complete."""

    kind: Literal["finished"] = "finished"
    usage: Usage | None = None
    """Token counts, or None when the provider did not report them (a server that ignores
    OpenAI's ``stream_options.include_usage``); the assembled :class:`ModelResponse`, which has
    no unknown usage, then counts zero."""
    finish_reason: str | None = None
    """Why the model stopped, in the provider's words."""


ModelChunk = Annotated[TextDelta | ToolCallDelta | StreamFinished, Field(discriminator="kind")]


@dataclass(frozen=True, slots=True)
class PartialReply:
    """What arrived of a reply that was cut off.

    Attributes:
        text: the text so far (None if none arrived).
        tool_calls: how many tool calls had begun.
        usage: always None: the provider never said how many tokens the cut reply cost.
    """

    text: str | None
    tool_calls: int
    usage: None = None


@dataclass(slots=True)
class _CallFragments:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ReplyAssembler:
    """Collects chunks in arrival order and builds the reply they make."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: dict[int, _CallFragments] = {}
        self._finished: StreamFinished | None = None

    @property
    def started(self) -> bool:
        """Whether any chunk has arrived."""
        return bool(self._text or self._calls or self._finished)

    @property
    def finished(self) -> bool:
        """Whether the reply's :class:`StreamFinished` chunk has arrived."""
        return self._finished is not None

    def add(self, chunk: TextDelta | ToolCallDelta | StreamFinished) -> None:
        """Take one more chunk."""
        # By kind, not isinstance (an ABC check on pydantic classes): this runs for every delta.
        if chunk.kind == "text":
            self._text.append(chunk.text)
        elif chunk.kind == "tool_call":
            call = self._calls.setdefault(chunk.index, _CallFragments())
            call.id = call.id or chunk.id or ""
            call.name = call.name or chunk.name or ""
            call.arguments.append(chunk.arguments)
        else:
            self._finished = chunk

    def partial(self) -> PartialReply:
        """What arrived so far, for a reply that will not finish."""
        return PartialReply(text="".join(self._text) if self._text else None, tool_calls=len(self._calls))

    def response(self) -> ModelResponse:
        """The finished reply.

        Raises:
            ValueError: the reply has not finished, or a tool call's arguments are not a JSON
                object (the message says which call).
        """
        if self._finished is None:
            raise ValueError("the reply has not finished")
        calls = tuple(
            ToolCall(
                id=call.id, name=call.name, arguments=parse_arguments(call.name, "".join(call.arguments))
            )
            for _, call in sorted(self._calls.items())
        )
        return ModelResponse(
            text="".join(self._text) or None,
            tool_calls=calls,
            usage=self._finished.usage or Usage(),
            finish_reason=self._finished.finish_reason,
        )


def parse_arguments(name: str, text: str) -> dict[str, JsonValue]:
    """A tool call's arguments from their JSON text (empty text: no arguments).

    Raises:
        ValueError: the text is not a JSON object.
    """
    if not text.strip():
        return {}
    try:
        arguments = json.loads(text)
    except ValueError as error:
        raise ValueError(f"the arguments of tool call {name!r} are not valid JSON ({error})") from None
    if not isinstance(arguments, dict):
        raise ValueError(f"the arguments of tool call {name!r} are not a JSON object")
    return arguments
