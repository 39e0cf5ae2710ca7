"""Loopback model servers for the adapters' tests: real HTTP on 127.0.0.1, scripted per test.

A :class:`LoopbackServer` is an aiohttp application on a free port that answers each POST with
the next scripted reply and keeps every request it received. The reply builders below write
each API's real JSON and server-sent-event formats (OpenAI Chat Completions, Anthropic
Messages), from one description of a reply, so a streamed and a whole reply say the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

Reply = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Received:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class LoopbackServer:
    """An HTTP server on 127.0.0.1 that serves scripted replies in order.

    Use as ``async with LoopbackServer() as server:``; ``server.url`` is its base URL.
    """

    script: list[Reply] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    requested: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once a request arrived."""
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a client closed its connection while a reply was still being served."""
    port: int = 0
    _runner: web.AppRunner | None = None

    def serve(self, *replies: Reply) -> LoopbackServer:
        self.script.extend(replies)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> LoopbackServer:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        # Cancel a handler when its client goes away: that is how a test sees the disconnect.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(Received(request.path, dict(request.headers), await request.json()))
        self.requested.set()
        if not self.script:
            return web.json_response({"error": {"message": "the test scripted no more replies"}}, status=500)
        reply = self.script.pop(0)
        try:
            return await reply(request)
        except asyncio.CancelledError:
            self.disconnected.set()
            raise


# -- generic replies ---------------------------------------------------------------------------


def json_reply(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status, headers=headers)

    return reply


def raw_reply(text: str, content_type: str = "application/json", status: int = 200) -> Reply:
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.Response(text=text, status=status, content_type=content_type)

    return reply


def hang() -> Reply:
    """Never answer: wait until the client closes the connection."""

    async def reply(request: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return reply


def sse_reply(events: Sequence[str], *, cut_after: int | None = None, hang_after: int | None = None) -> Reply:
    """Stream ``events`` (whole SSE records); with ``cut_after``, drop the connection after that
    many, without ending the body (what a proxy or a crashing server does); with ``hang_after``,
    stop sending after that many until the client goes away."""

    async def reply(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for index, event in enumerate(events):
            if cut_after is not None and index == cut_after:
                assert request.transport is not None
                request.transport.close()
                return response
            if hang_after is not None and index == hang_after:
                await asyncio.Event().wait()
            await response.write(event.encode())
        await response.write_eof()
        return response

    return reply


# -- replies, described once ---------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Scripted:
    """A model reply, to be written in either API's format."""

    text: str | None = None
    calls: tuple[Call, ...] = ()
    input_tokens: int = 11
    output_tokens: int = 7
    cached_tokens: int = 3
    reasoning_tokens: int = 2


# -- OpenAI Chat Completions ---------------------------------------------------------------------


def _openai_usage(reply: Scripted) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens, "audio_tokens": 0},
    }


def _openai_finish(reply: Scripted) -> str:
    return "tool_calls" if reply.calls else "stop"


def openai_completion(reply: Scripted, model: str = "gpt-4.1-mini") -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in reply.calls
        ]
    return {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": 1767225600,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": _openai_finish(reply), "logprobs": None}
        ],
        "usage": _openai_usage(reply),
        "system_fingerprint": "fp_loopback",
    }


def openai_stream(reply: Scripted, model: str = "gpt-4.1-mini", *, usage: bool = True) -> list[str]:
    """The reply as Chat Completions stream records: text in pieces, each call's arguments in
    two fragments, the finish reason, the usage chunk (``stream_options.include_usage``), [DONE]."""

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {
            "id": "chatcmpl-loopback",
            "object": "chat.completion.chunk",
            "created": 1767225600,
            "model": model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    def delta(content: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": content, "finish_reason": finish_reason, "logprobs": None}]

    events = [chunk(delta({"role": "assistant", "content": ""}))]
    text = reply.text or ""
    for start in range(0, len(text), 4):
        events.append(chunk(delta({"content": text[start : start + 4]})))
    for index, call in enumerate(reply.calls):
        arguments = json.dumps(call.arguments)
        middle = len(arguments) // 2
        first = {"index": index, "id": call.id, "type": "function"}
        first["function"] = {"name": call.name, "arguments": arguments[:middle]}
        events.append(chunk(delta({"tool_calls": [first]})))
        rest = {"index": index, "function": {"arguments": arguments[middle:]}}
        events.append(chunk(delta({"tool_calls": [rest]})))
    events.append(chunk(delta({}, _openai_finish(reply))))
    if usage:
        events.append(chunk([], usage=_openai_usage(reply)))
    events.append("data: [DONE]\n\n")
    return events


def openai_error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"error": {"message": message, "type": "requests", "param": None, "code": code}}
    return json_reply(body, status, {"x-request-id": f"req_{status}", **(headers or {})})


# -- Anthropic Messages --------------------------------------------------------------------------


def _anthropic_usage(reply: Scripted, output_tokens: int | None = None) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens - reply.cached_tokens,
        "cache_read_input_tokens": reply.cached_tokens,
        "cache_creation_input_tokens": 0,
        "output_tokens": reply.output_tokens if output_tokens is None else output_tokens,
    }


def _anthropic_stop(reply: Scripted) -> str:
    return "tool_use" if reply.calls else "end_turn"


def anthropic_message(reply: Scripted, model: str = "claude-sonnet-4-5") -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    content += [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in reply.calls
    ]
    return {
        "id": "msg_loopback",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _anthropic_stop(reply),
        "stop_sequence": None,
        "usage": _anthropic_usage(reply),
    }


def anthropic_stream(reply: Scripted, model: str = "claude-sonnet-4-5") -> list[str]:
    """The reply as Messages stream events, as the API sends them (with a ping)."""

    def event(kind: str, **data: Any) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

    started = {**anthropic_message(Scripted(), model), "content": [], "stop_reason": None}
    started["usage"] = _anthropic_usage(reply, output_tokens=1)
    events = [event("message_start", message=started), event("ping")]
    index = 0
    if reply.text:
        events.append(event("content_block_start", index=index, content_block={"type": "text", "text": ""}))
        for start in range(0, len(reply.text), 4):
            piece = {"type": "text_delta", "text": reply.text[start : start + 4]}
            events.append(event("content_block_delta", index=index, delta=piece))
        events.append(event("content_block_stop", index=index))
        index += 1
    for call in reply.calls:
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        events.append(event("content_block_start", index=index, content_block=block))
        arguments = json.dumps(call.arguments)
        middle = len(arguments) // 2
        for part in (arguments[:middle], arguments[middle:]):
            delta = {"type": "input_json_delta", "partial_json": part}
            events.append(event("content_block_delta", index=index, delta=delta))
        events.append(event("content_block_stop", index=index))
        index += 1
    delta = {"stop_reason": _anthropic_stop(reply), "stop_sequence": None}
    events.append(event("message_delta", delta=delta, usage={"output_tokens": reply.output_tokens}))
    events.append(event("message_stop"))
    return events


def anthropic_error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return json_reply(body, status, {"request-id": f"req_{status}", **(headers or {})})


@contextlib.contextmanager
def serving_in_thread(*replies: Reply) -> Iterator[LoopbackServer]:
    """A loopback server on its own event loop in a thread, for code that runs its own loop
    (a subprocess, ``run_sync``)."""
    ready = threading.Event()
    stop: list[Callable[[], None]] = []
    holder: list[LoopbackServer] = []

    async def serve() -> None:
        async with LoopbackServer() as server:
            server.serve(*replies)
            holder.append(server)
            done = asyncio.Event()
            loop = asyncio.get_running_loop()
            stop.append(lambda: loop.call_soon_threadsafe(done.set))
            ready.set()
            await done.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    ready.wait()
    try:
        yield holder[0]
    finally:
        stop[0]()
        thread.join()


# -- an agent module for ``executus run`` in a subprocess ---------------------------------------

_AGENT_MODULE = """
from executus import Agent, ModelSettings, tool


@tool
def add(a: int, b: int) -> int:
    \"\"\"Add two numbers.\"\"\"
    return a + b


agent = Agent(
    name="calc",
    model={model!r},
    system_prompt="You add.",
    tools=[add],
    model_settings=ModelSettings(stream={stream!r}),
)
"""

MODEL_NAMES = {"openai": "openai:gpt-4.1-mini", "anthropic": "anthropic:claude-sonnet-4-5"}


def write_agent_module(directory: Path, provider: str, *, stream: bool = True) -> None:
    """Write ``calc_agent.py`` (``calc_agent:agent``, one ``add`` tool) into ``directory``."""
    (directory / "calc_agent.py").write_text(_AGENT_MODULE.format(model=MODEL_NAMES[provider], stream=stream))


def provider_environment(provider: str, url: str | None, key: str | None) -> dict[str, str]:
    """This process's environment with only the SDK variables that point ``provider`` at ``url``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    prefix = provider.upper()
    if key is not None:
        environment[f"{prefix}_API_KEY"] = key
    if url is not None:
        environment[f"{prefix}_BASE_URL"] = url + "/v1" if provider == "openai" else url
    return environment


def executus_command() -> list[str]:
    """The ``executus`` command line of this interpreter."""
    return [sys.executable, "-m", "executus.cli"]
