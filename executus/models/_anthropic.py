"""The Anthropic Messages API adapter. Needs the ``anthropic`` extra."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from executus._chunks import ModelChunk, StreamFinished, TextDelta, ToolCallDelta
from executus._errors import ConfigurationError
from executus._messages import (
    AssistantMessage,
    ImagePart,
    ModelRequest,
    ModelSettings,
    SystemMessage,
    ToolMessage,
    Usage,
    UserMessage,
)
from executus.models._base import ChatAdapter, SdkErrors

try:
    import anthropic
except ImportError as missing:  # pragma: no cover - exercised without the extra installed
    raise ConfigurationError(
        "the Anthropic adapter needs the anthropic SDK: pip install 'executus[anthropic]'"
    ) from missing

__all__ = ["AnthropicModel"]

DEFAULT_MAX_TOKENS = 4096
"""The Messages API requires a reply length limit; this one applies when the settings set none."""


class AnthropicModel(ChatAdapter):
    """A model behind the Anthropic Messages API.

    ``ModelSettings.seed`` is not sent (the API has none); ``reasoning_effort`` is sent as
    ``output_config.effort``.

    Takes the arguments of :class:`~executus.models.ChatAdapter`.
    """

    provider = "anthropic"
    key_variable = "ANTHROPIC_API_KEY"
    reply_kind = "Messages API reply"
    _sdk_errors = SdkErrors.of(anthropic)
    _client: anthropic.AsyncAnthropic

    def _connect(self, api_key: str, base_url: str | None, timeout: float) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)

    async def _whole(self, request: ModelRequest, settings: ModelSettings) -> AsyncIterator[ModelChunk]:
        message = await self._client.messages.create(**_arguments(self.model, request, settings))
        for index, block in enumerate(message.content):
            if block.type == "text":
                yield TextDelta(text=block.text)
            elif block.type == "tool_use":
                yield ToolCallDelta(
                    index=index, id=block.id, name=block.name, arguments=json.dumps(block.input)
                )
        yield StreamFinished(usage=_usage(message.usage), finish_reason=message.stop_reason)

    async def _streamed(self, request: ModelRequest, settings: ModelSettings) -> AsyncIterator[ModelChunk]:
        stream = await self._client.messages.create(**_arguments(self.model, request, settings), stream=True)
        started: Any = None
        finish_reason: str | None = None
        output_tokens: int | None = None
        async with stream:
            async for event in stream:
                if event.type == "message_start":
                    started = event.message.usage
                elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                    block = event.content_block
                    yield ToolCallDelta(index=event.index, id=block.id, name=block.name)
                elif event.type == "content_block_delta":
                    if event.delta.type == "text_delta":
                        yield TextDelta(text=event.delta.text)
                    elif event.delta.type == "input_json_delta":
                        yield ToolCallDelta(index=event.index, arguments=event.delta.partial_json)
                elif event.type == "message_delta":
                    finish_reason = event.delta.stop_reason
                    output_tokens = event.usage.output_tokens  # cumulative, so the last one counts
                elif event.type == "message_stop":
                    usage = None
                    if started is not None and output_tokens is not None:
                        usage = _usage(started, output_tokens=output_tokens)
                    yield StreamFinished(usage=usage, finish_reason=finish_reason)


def _arguments(model: str, request: ModelRequest, settings: ModelSettings) -> dict[str, Any]:
    """The Messages request body's fields, as the SDK's ``create`` takes them."""
    system = "\n\n".join(m.content for m in request.messages if isinstance(m, SystemMessage) and m.content)
    arguments: dict[str, Any] = {
        "model": model,
        "max_tokens": settings.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": _messages(request),
    }
    if system:
        arguments["system"] = system
    if request.tools:
        arguments["tools"] = [
            {
                "name": tool.name,
                "description": tool.description,
                "input_schema": tool.parameters or {"type": "object", "properties": {}},
            }
            for tool in request.tools
        ]
    optional = {
        "stop_sequences": list(settings.stop) or None,
        "output_config": {"effort": settings.reasoning_effort} if settings.reasoning_effort else None,
    }
    arguments.update((key, value) for key, value in optional.items() if value is not None)
    # Newer SDKs no longer name the sampling fields that some models still accept: send them
    # in the body as they are.
    sampling = {"temperature": settings.temperature, "top_p": settings.top_p}
    extra_body = {key: value for key, value in sampling.items() if value is not None} | settings.extra
    if extra_body:
        arguments["extra_body"] = extra_body
    return arguments


def _messages(request: ModelRequest) -> list[dict[str, Any]]:
    """The transcript as Messages API turns: tool results travel in user turns, and turns of
    the same role are merged (the API wants user and assistant turns to alternate)."""
    turns: list[dict[str, Any]] = []
    for message in request.messages:
        if isinstance(message, SystemMessage):
            continue
        role = "assistant" if isinstance(message, AssistantMessage) else "user"
        blocks = _blocks(message, request)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks(
    message: UserMessage | AssistantMessage | ToolMessage, request: ModelRequest
) -> list[dict[str, Any]]:
    if isinstance(message, ToolMessage):
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.call_id,
                "content": message.content,
                "is_error": message.is_error,
            }
        ]
    if isinstance(message, AssistantMessage):
        blocks: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text else []
        blocks.extend(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
            for call in message.tool_calls
        )
        return blocks
    return [
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": part.media_type,
                "data": base64.b64encode(request.images[part.sha256]).decode("ascii"),
            },
        }
        if isinstance(part, ImagePart)
        else {"type": "text", "text": part.text}
        for part in message.parts
    ]


def _usage(usage: Any, *, output_tokens: int | None = None) -> Usage:
    """Usage from the API's: its ``input_tokens`` leave out the cache's reads and writes, ours
    count every token sent."""
    cache_read = usage.cache_read_input_tokens
    cache_write = usage.cache_creation_input_tokens
    details = getattr(usage, "output_tokens_details", None)
    return Usage(
        input_tokens=(usage.input_tokens or 0) + (cache_read or 0) + (cache_write or 0),
        output_tokens=usage.output_tokens if output_tokens is None else output_tokens,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=details.thinking_tokens if details is not None else None,
    )
