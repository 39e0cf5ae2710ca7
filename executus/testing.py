"""Fake models for testing agents without calling a real one.

:class:`ScriptedModel` serves queued replies in order (and raises
:class:`ScriptExhaustedError` when asked for more than its script holds); :class:`FunctionModel`
lets a function decide each reply. Both are deterministic, so runs that use them replay identically.

Example:
    >>> model = ScriptedModel([call("search", query="otters"), "Otters hold hands."])
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeAlias

from pydantic import JsonValue

from executus._chunks import ModelChunk, StreamFinished, TextDelta, ToolCallDelta
from executus._errors import ScriptExhaustedError
from executus._messages import ModelRequest, ModelResponse, ToolCall, Usage

__all__ = [
    "FunctionModel",
    "Hang",
    "ScriptExhaustedError",
    "ScriptItem",
    "ScriptedModel",
    "call",
    "estimate_usage",
    "hang",
    "reply",
]


@dataclass(frozen=True, slots=True)
class Hang:
    """A script item: wait ``seconds`` on the run's clock, then serve the next item."""

    seconds: float


ScriptItem: TypeAlias = str | ModelResponse | ToolCall | list[ToolCall] | BaseException | Hang
"""Text, a full response, one or several tool calls, an exception to raise, or a hang."""


def call(name: str, *, id: str = "", **arguments: JsonValue) -> ToolCall:
    """A tool call for a script; an empty id is filled in as ``call-N`` by the model."""
    return ToolCall(id=id, name=name, arguments=arguments)


def reply(text: str | None = None, *calls: ToolCall, usage: Usage | None = None) -> ModelResponse:
    """A response with text and/or tool calls (usage is estimated when not given)."""
    return ModelResponse(text=text, tool_calls=calls, usage=usage or Usage())


def hang(seconds: float) -> Hang:
    """Make the model take ``seconds`` (on the run's clock) before its next reply."""
    return Hang(seconds)


def estimate_usage(request: ModelRequest, response: ModelResponse) -> Usage:
    """A deterministic stand-in for token counts: about four characters a token."""
    sent = sum(len(message.model_dump_json()) for message in request.messages)
    produced = len(response.model_dump_json(include={"text", "tool_calls"}))
    return Usage(input_tokens=sent // 4, output_tokens=produced // 4)


class ScriptedModel:
    """A fake model that serves a script of replies in order.

    It streams too (an agent with ``ModelSettings(stream=True)`` gets each reply as chunks: its
    text ``chunk_size`` characters at a time, ``chunk_delay`` seconds apart, then each tool call
    in two fragments), so streamed runs can be tested without a server.

    Args:
        script: the replies, one item per model call (a :class:`Hang` delays the next item).
        name: the model name recorded in the run.
        chunk_size: characters of text per streamed delta.
        chunk_delay: seconds between streamed deltas (on the event loop's clock).

    Raises:
        ScriptExhaustedError: from :meth:`request`, when asked for more replies than scripted.
    """

    def __init__(
        self,
        script: Iterable[ScriptItem],
        *,
        name: str = "scripted",
        chunk_size: int = 4,
        chunk_delay: float = 0.0,
    ) -> None:
        self.chunk_size = chunk_size
        self.chunk_delay = chunk_delay
        self._script = list(script)
        self._position = 0
        self._call_ids = itertools.count(1)
        self._name = name
        self.requests: list[ModelRequest] = []
        """Every request received, for assertions."""

    @property
    def name(self) -> str:
        return self._name

    @property
    def remaining(self) -> int:
        """Script items not served yet."""
        return len(self._script) - self._position

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        while True:
            if self._position >= len(self._script):
                raise ScriptExhaustedError(
                    f"{self._name}: the script has {len(self._script)} items and all were served "
                    f"(asked for step {request.step}); add replies to the script"
                )
            item = self._script[self._position]
            self._position += 1
            if isinstance(item, Hang):
                await asyncio.sleep(item.seconds)
                continue
            if isinstance(item, BaseException):
                raise item
            return self._response(item, request)

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]:
        """The next reply as chunks (see the class); raises what :meth:`request` raises."""
        response = await self.request(request)
        text = response.text or ""
        for start in range(0, len(text), self.chunk_size):
            if start and self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            yield TextDelta(text=text[start : start + self.chunk_size])
        for index, call in enumerate(response.tool_calls):
            arguments = json.dumps(call.arguments)
            middle = len(arguments) // 2
            yield ToolCallDelta(index=index, id=call.id, name=call.name, arguments=arguments[:middle])
            yield ToolCallDelta(index=index, arguments=arguments[middle:])
        yield StreamFinished(usage=response.usage, finish_reason=response.finish_reason)

    def _response(
        self, item: str | ModelResponse | ToolCall | list[ToolCall], request: ModelRequest
    ) -> ModelResponse:
        if isinstance(item, str):
            response = ModelResponse(text=item)
        elif isinstance(item, ToolCall):
            response = ModelResponse(tool_calls=(item,))
        elif isinstance(item, list):
            response = ModelResponse(tool_calls=tuple(item))
        else:
            response = item
        calls = tuple(
            call if call.id else call.model_copy(update={"id": f"call-{next(self._call_ids)}"})
            for call in response.tool_calls
        )
        usage = response.usage if response.usage != Usage() else None
        response = response.model_copy(update={"tool_calls": calls})
        return response.model_copy(update={"usage": usage or estimate_usage(request, response)})


ReplyFunction: TypeAlias = Callable[[ModelRequest], "ModelResponse | str | Awaitable[ModelResponse | str]"]


class FunctionModel:
    """A fake model whose replies a function decides, from the whole request.

    The function may be sync or async and may return a :class:`ModelResponse` or plain text.
    """

    def __init__(self, function: ReplyFunction, *, name: str = "function") -> None:
        self._function = function
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def request(self, request: ModelRequest) -> ModelResponse:
        outcome = self._function(request)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        response = ModelResponse(text=outcome) if isinstance(outcome, str) else outcome
        if response.usage == Usage():
            response = response.model_copy(update={"usage": estimate_usage(request, response)})
        return response
