"""The OpenAI Chat Completions adapter: OpenAI, and every server that speaks its API (vLLM,
Ollama, llama.cpp, LiteLLM, OpenRouter). Needs the ``openai`` extra."""

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
    import openai
except ImportError as missing:  # pragma: no cover - exercised without the extra installed
    raise ConfigurationError(
        "the OpenAI adapter needs the openai SDK: pip install 'executus[openai]'"
    ) from missing

__all__ = ["OpenAIModel"]


class OpenAIModel(ChatAdapter):
    """A model behind the OpenAI Chat Completions API.

    Takes the arguments of :class:`~executus.models.ChatAdapter`.
    """

    provider = "openai"
    key_variable = "OPENAI_API_KEY"
    reply_kind = "Chat Completions reply"
    _sdk_errors = SdkErrors.of(openai)
    _client: openai.AsyncOpenAI

    def _connect(self, api_key: str, base_url: str | None, timeout: float) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)

    async def _whole(self, request: ModelRequest, settings: ModelSettings) -> AsyncIterator[ModelChunk]:
        completion = await self._client.chat.completions.create(**_arguments(self.model, request, settings))
        choice = completion.choices[0]
        if choice.message.content:
            yield TextDelta(text=choice.message.content)
        for index, call in enumerate(choice.message.tool_calls or ()):
            function = call.function
            yield ToolCallDelta(index=index, id=call.id, name=function.name, arguments=function.arguments)
        yield StreamFinished(usage=_usage(completion.usage), finish_reason=choice.finish_reason)

    async def _streamed(self, request: ModelRequest, settings: ModelSettings) -> AsyncIterator[ModelChunk]:
        stream = await self._client.chat.completions.create(
            **_arguments(self.model, request, settings),
            stream=True,
            stream_options={"include_usage": True},
        )
        finish_reason: str | None = None
        usage: Usage | None = None
        async with stream:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices[:1]:
                    delta = choice.delta
                    if delta.content:
                        yield TextDelta(text=delta.content)
                    for call in delta.tool_calls or ():
                        function = call.function
                        yield ToolCallDelta(
                            index=call.index,
                            id=call.id,
                            name=function.name if function else None,
                            arguments=(function.arguments or "") if function else "",
                        )
                    finish_reason = choice.finish_reason or finish_reason
        # The stream ended with its [DONE] line, or was cut off; only a finish reason says which.
        if finish_reason is not None:
            yield StreamFinished(usage=usage, finish_reason=finish_reason)


def _arguments(model: str, request: ModelRequest, settings: ModelSettings) -> dict[str, Any]:
    """The Chat Completions request body's fields, as the SDK's ``create`` takes them."""
    arguments: dict[str, Any] = {"model": model, "messages": _messages(request)}
    if request.tools:
        arguments["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters or {"type": "object", "properties": {}},
                },
            }
            for tool in request.tools
        ]
    optional = {
        "temperature": settings.temperature,
        "max_completion_tokens": settings.max_tokens,
        "top_p": settings.top_p,
        "seed": settings.seed,
        "stop": list(settings.stop) or None,
        "reasoning_effort": settings.reasoning_effort,
    }
    arguments.update((key, value) for key, value in optional.items() if value is not None)
    if settings.extra:
        arguments["extra_body"] = settings.extra
    return arguments


def _messages(request: ModelRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        if isinstance(message, SystemMessage):
            if message.content:
                messages.append({"role": "system", "content": message.content})
        elif isinstance(message, UserMessage):
            messages.append({"role": "user", "content": _user_content(message, request)})
        elif isinstance(message, AssistantMessage):
            assistant: dict[str, Any] = {"role": "assistant", "content": message.text}
            if message.tool_calls:
                assistant["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                    }
                    for call in message.tool_calls
                ]
            messages.append(assistant)
        elif isinstance(message, ToolMessage):
            messages.append({"role": "tool", "tool_call_id": message.call_id, "content": message.content})
    return messages


def _user_content(message: UserMessage, request: ModelRequest) -> str | list[dict[str, Any]]:
    if not any(isinstance(part, ImagePart) for part in message.parts):
        return message.text
    return [
        {"type": "image_url", "image_url": {"url": _data_url(part, request)}}
        if isinstance(part, ImagePart)
        else {"type": "text", "text": part.text}
        for part in message.parts
    ]


def _data_url(part: ImagePart, request: ModelRequest) -> str:
    data = base64.b64encode(request.images[part.sha256]).decode("ascii")
    return f"data:{part.media_type};base64,{data}"


def _usage(usage: Any) -> Usage | None:
    """Usage from a ``CompletionUsage``; None when the server sent none."""
    if usage is None:
        return None
    prompt_details = usage.prompt_tokens_details
    completion_details = usage.completion_tokens_details
    return Usage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        cached_input_tokens=prompt_details.cached_tokens if prompt_details else None,
        reasoning_tokens=completion_details.reasoning_tokens if completion_details else None,
    )
