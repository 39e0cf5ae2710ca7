"""Case 7's streamed path: a reply read as server-sent events, by the SDK directly and by
executus (the adapter's ``stream`` through the executor's :class:`ChunkBatcher`, as a run with
``ModelSettings(stream=True)`` reads it), on the same loopback server.

The reply is 600 characters of text in 4-character deltas (150 SSE records), then the finish
reason and usage. "SDK directly" is a hand-written streaming loop: ``create(stream=True)`` with
the request already in the API's wire format, each delta's text appended to a list. executus
translates the transcript, turns each record into a typed chunk, assembles the reply
(:class:`ModelResponse`) and batches the deltas into the inputs that become ``model_chunk``
events (here one: the batcher's 2,048-character and 0.5 s limits are not reached, so the end of
the stream flushes it); committing that event is the store's work, measured in the steps case.
Over HTTP the difference drowns in the noise of the SDK's own SSE parsing and validation (tens
of milliseconds of CPU a step on a loaded machine), so, as for the whole replies, the target is
judged on executus's own work measured alone: the same step over a stream the SDK already
parsed (:func:`canned_streamed_calls`), against a hand-written loop over that stream.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from executus import ModelRequest, ModelSettings

__all__ = ["STREAMED_TEXT", "anthropic_events", "canned_streamed_calls", "openai_events", "streamed_calls"]

STREAMED_TEXT: Final = ("Otters eat fish, crabs and sea urchins; they sleep floating, holding paws. " * 8)[
    :600
]

Calls = tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]


def openai_events() -> list[str]:
    """The reply as Chat Completions stream records."""

    def record(choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices}
        return f"data: {json.dumps({**body, **extra})}\n\n"

    def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": content, "finish_reason": finish}]

    events = [record(delta({"role": "assistant", "content": ""}))]
    events += [record(delta({"content": STREAMED_TEXT[i : i + 4]})) for i in range(0, len(STREAMED_TEXT), 4)]
    events.append(record(delta({}, "stop")))
    usage = {"prompt_tokens": 900, "completion_tokens": 150, "total_tokens": 1050}
    events.append(record([], usage=usage))
    return [*events, "data: [DONE]\n\n"]


def anthropic_events() -> list[str]:
    """The reply as Messages stream events."""

    def event(kind: str, **data: Any) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

    message = {
        "id": "msg",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 900, "output_tokens": 1},
    }
    events = [event("message_start", message=message)]
    events.append(event("content_block_start", index=0, content_block={"type": "text", "text": ""}))
    events += [
        event("content_block_delta", index=0, delta={"type": "text_delta", "text": STREAMED_TEXT[i : i + 4]})
        for i in range(0, len(STREAMED_TEXT), 4)
    ]
    events.append(event("content_block_stop", index=0))
    delta = {"stop_reason": "end_turn", "stop_sequence": None}
    events.append(event("message_delta", delta=delta, usage={"output_tokens": 150}))
    return [*events, event("message_stop")]


def streamed_calls(provider: str, url: str, request: ModelRequest, key: str) -> Calls:
    """(SDK directly, executus, close) for one provider, both streaming."""
    from executus._clock import SystemClock
    from executus._streaming import ChunkBatcher, stream_reply

    request = ModelRequest(
        messages=request.messages, tools=request.tools, settings=ModelSettings(stream=True)
    )
    batches: list[object] = []
    if provider == "OpenAI":
        import openai

        from executus.models import OpenAIModel
        from executus.models._openai import _arguments as openai_arguments

        model: Any = OpenAIModel("gpt-4.1-mini", api_key=key, base_url=url + "/v1", timeout=30)
        client: Any = openai.AsyncOpenAI(api_key=key, base_url=url + "/v1", timeout=30, max_retries=0)
        wire = openai_arguments(model.model, request, request.settings)

        async def direct() -> object:
            text: list[str] = []
            stream = await client.chat.completions.create(
                **wire, stream=True, stream_options={"include_usage": True}
            )
            async with stream:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        text.append(chunk.choices[0].delta.content)
            return "".join(text)

    else:
        import anthropic

        from executus.models import AnthropicModel
        from executus.models._anthropic import _arguments as anthropic_arguments

        model = AnthropicModel("claude-sonnet-4-5", api_key=key, base_url=url, timeout=30)
        client = anthropic.AsyncAnthropic(api_key=key, base_url=url, timeout=30, max_retries=0)
        wire = anthropic_arguments(model.model, request, request.settings)

        async def direct() -> object:
            text: list[str] = []
            async with await client.messages.create(**wire, stream=True) as stream:
                async for event in stream:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        text.append(event.delta.text)
            return "".join(text)

    clock = SystemClock()

    async def ours() -> object:
        batches.clear()
        return await stream_reply(model, request, ChunkBatcher(1, clock, batches.append))

    async def close() -> None:
        await model.aclose()
        await client.close()

    return direct, ours, close


class _CannedStream:
    """What an SDK's streaming ``create`` returns, over events it already parsed."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events

    async def __aenter__(self) -> _CannedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def __aiter__(self) -> Any:
        for event in self.events:
            yield event


def canned_streamed_calls(
    provider: str, request: ModelRequest, key: str
) -> tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]]:
    """(SDK directly, executus) over a stream the SDK already parsed: no HTTP, no SSE parsing,
    so what is left of executus's figure is its own work for the streamed step."""
    from types import SimpleNamespace

    from executus._clock import SystemClock
    from executus._streaming import ChunkBatcher, stream_reply

    request = ModelRequest(
        messages=request.messages, tools=request.tools, settings=ModelSettings(stream=True)
    )
    model: Any
    if provider == "OpenAI":
        from openai.types.chat import ChatCompletionChunk

        from executus.models import OpenAIModel

        events: list[Any] = [
            ChatCompletionChunk.model_validate(json.loads(record[6:]))
            for record in openai_events()
            if record.startswith("data: {")
        ]
        model = OpenAIModel("gpt-4.1-mini", api_key=key, base_url="http://127.0.0.1:9/v1")

        async def create(**arguments: object) -> _CannedStream:
            return _CannedStream(events)

        model._client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))

        def text_of(event: Any) -> str | None:
            return event.choices[0].delta.content if event.choices else None

    else:
        from anthropic.types import RawMessageStreamEvent
        from pydantic import TypeAdapter

        from executus.models import AnthropicModel

        adapter: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
        events = [
            adapter.validate_python(json.loads(record.split("data: ", 1)[1])) for record in anthropic_events()
        ]
        model = AnthropicModel("claude-sonnet-4-5", api_key=key, base_url="http://127.0.0.1:9")

        async def create(**arguments: object) -> _CannedStream:
            return _CannedStream(events)

        model._client = SimpleNamespace(messages=SimpleNamespace(create=create))

        def text_of(event: Any) -> str | None:
            delta = getattr(event, "delta", None)
            return getattr(delta, "text", None)

    async def direct() -> object:
        text: list[str] = []
        async with await create() as stream:
            async for event in stream:
                piece = text_of(event)
                if piece:
                    text.append(piece)
        return "".join(text)

    clock = SystemClock()
    batches: list[object] = []

    async def ours() -> object:
        batches.clear()
        return await stream_reply(model, request, ChunkBatcher(1, clock, batches.append))

    return direct, ours
