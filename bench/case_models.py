"""Case 7, model adapter overhead: ``OpenAIModel.request`` and ``AnthropicModel.request`` against
calling the same SDK directly, on the same loopback server; and the streamed path (a streamed
reply read by executus as a run reads it, against the SDK streaming directly: see
:mod:`bench._streamed`).

The server (aiohttp, in its own thread and event loop) answers every POST with one fixed reply
(a tool call, usage with cached tokens). Each step sends a mid-run transcript: a system prompt,
the input, four tool calls with their results, and three tool schemas. "SDK directly" is what a
hand-written loop does: the request already in the API's wire format, one ``create`` call, the
reply's first choice read. The adapter does the rest of the work a step needs: translating the
transcript, reading the reply into a :class:`ModelResponse` (usage, finish reason, parsed
arguments). Both are timed in wall time and in this process's CPU time (the server runs in
another process); their difference is the overhead, but on a shared machine it is within the
noise of one HTTP round trip. So the target (< 1 ms a step) is judged on the adapter's own work
measured alone: the same ``request`` with the SDK's ``create`` answering at once with a reply it
already parsed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from bench._config import Config
from bench._pg import Postgres
from bench._report import Report, Row
from bench._streamed import Calls, anthropic_events, canned_streamed_calls, openai_events, streamed_calls
from bench._timing import Measured, interleave
from executus import (
    AssistantMessage,
    ModelRequest,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    ToolSpec,
    UserMessage,
)

__all__ = ["run"]

CASE = "7 model adapters"
KEY = "sk-bench"
TOOLS = [
    ToolSpec(
        name=name,
        description=f"The {name} tool.",
        parameters={"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    )
    for name in ("fetch", "search", "summarize")
]
OPENAI_REPLY = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1767225600,
    "model": "gpt-4.1-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "search", "arguments": '{"query": "otters"}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        }
    ],
    "usage": {
        "prompt_tokens": 900,
        "completion_tokens": 20,
        "total_tokens": 920,
        "prompt_tokens_details": {"cached_tokens": 768},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}
ANTHROPIC_REPLY = {
    "id": "msg_bench",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "tool_use", "id": "toolu_9", "name": "search", "input": {"query": "otters"}}],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 132, "cache_read_input_tokens": 768, "output_tokens": 20},
}


def _request() -> ModelRequest:
    messages: list[Any] = [
        SystemMessage(content="You research questions with the tools you have. " * 8),
        UserMessage(parts=(TextPart(text="What do otters eat, and where do they sleep?"),)),
    ]
    for index in range(4):
        call = ToolCall(id=f"call_{index}", name="search", arguments={"query": f"otters {index}"})
        messages.append(AssistantMessage(tool_calls=(call,)))
        messages.append(ToolMessage(call_id=call.id, name="search", content="Otters eat fish. " * 15))
    return ModelRequest(messages=messages, tools=TOOLS)


class _Server:
    """The loopback API server, in a process of its own (so its CPU time is not ours)."""

    def __enter__(self) -> _Server:
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _SERVE,
                json.dumps(OPENAI_REPLY),
                json.dumps(ANTHROPIC_REPLY),
                json.dumps(openai_events()),
                json.dumps(anthropic_events()),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._process.terminate()
        self._process.wait()
        assert self._process.stdout is not None
        self._process.stdout.close()


_SERVE = """
import asyncio, json, sys
from aiohttp import web

async def main():
    openai_body, anthropic_body = sys.argv[1], sys.argv[2]
    openai_events, anthropic_events = json.loads(sys.argv[3]), json.loads(sys.argv[4])

    async def answer(request):
        anthropic = request.path.endswith("/messages")
        if not json.loads(await request.read()).get("stream"):
            body = anthropic_body if anthropic else openai_body
            return web.Response(text=body, content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in anthropic_events if anthropic else openai_events:
            await response.write(event.encode())
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/{path:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _per_call(
    runner: asyncio.Runner, call: Callable[[], Awaitable[object]], calls: int, timer: Callable[[], float]
) -> Callable[[], float]:
    """One repetition: ``calls`` calls in a row; ms per call on ``timer``."""

    async def repeat() -> float:
        started = timer()
        for _ in range(calls):
            await call()
        return (timer() - started) / calls * 1000

    return lambda: runner.run(repeat())


def _on_both_clocks(
    runner: asyncio.Runner, made: Calls, names: tuple[str, str], calls: int, config: Config
) -> dict[str, Measured]:
    """Warm the SDK's and executus's call up (the first connects), time ``calls`` calls of each,
    interleaved, in wall and CPU time (keys ``"wall:NAME"``, ``"cpu:NAME"``), then close."""
    direct, ours, close = made
    runner.run(direct())
    runner.run(ours())
    results = interleave(
        {
            f"{clock}:{name}": _per_call(runner, call, calls, timer)
            for clock, timer in (("wall", time.perf_counter), ("cpu", time.process_time))
            for name, call in zip(names, (direct, ours), strict=True)
        },
        config.repetitions,
    )
    runner.run(close())
    return results


def run(report: Report, config: Config, postgres: Postgres | None, postgres_reason: str) -> None:
    """Measure case 7 for each adapter whose SDK is installed."""
    missing = [name for name in ("aiohttp", "openai", "anthropic") if importlib.util.find_spec(name) is None]
    if missing:
        note = f"not installed: {', '.join(missing)} (pip install -e '.[test]')"
        report.add(Row(CASE, "adapter overhead", None, "ms/step", note=note))
        return
    calls = config.model_calls
    with _Server() as server, asyncio.Runner() as runner:
        url = f"http://127.0.0.1:{server.port}"
        canned = {"OpenAI": _canned_openai(), "Anthropic": _canned_anthropic()}
        for provider, made in {
            "OpenAI": runner.run(_openai(url)),
            "Anthropic": runner.run(_anthropic(url)),
        }.items():
            results = _on_both_clocks(runner, made, ("direct", "adapter"), calls, config)
            for clock in ("cpu", "wall"):
                _report(
                    report, provider, clock, results[f"{clock}:direct"], results[f"{clock}:adapter"], calls
                )
            alone = interleave(
                {"alone": _per_call(runner, canned[provider], calls * 10, time.perf_counter)},
                config.repetitions,
            )["alone"]
            name = f"{provider} adapter's own work, alone (no HTTP)"
            report.add(Row(CASE, name, alone.median, "ms/step", note=alone.spread()))
            target = f"{provider} adapter adds < 1 ms/step (its own work, alone)"
            report.target(CASE, target, alone.median, alone.median < 1.0, fmt=".3f")
            _streamed(report, config, runner, provider, url, calls)


def _streamed(
    report: Report, config: Config, runner: asyncio.Runner, provider: str, url: str, calls: int
) -> None:
    """The streamed path's overhead per step (see :mod:`bench._streamed`)."""
    made = streamed_calls(provider, url, _request(), KEY)
    results = _on_both_clocks(runner, made, ("direct", "executus"), calls, config)
    for clock in ("cpu", "wall"):
        sdk, executus = results[f"{clock}:direct"], results[f"{clock}:executus"]
        unit = f"ms/step {clock}"
        report.add(Row(CASE, f"{provider} SDK streaming directly", sdk.median, unit, note=sdk.spread()))
        ratio = executus.median / sdk.median
        name = f"executus {provider} streamed step (stream_reply + batching)"
        report.add(Row(CASE, name, executus.median, unit, ratio, "SDK directly", executus.spread()))
        overhead = executus.median - sdk.median
        report.add(Row(CASE, f"{provider} streamed overhead", overhead, unit, note=f"{calls} calls a figure"))
    direct, ours = canned_streamed_calls(provider, _request(), KEY)
    alone = interleave(
        {
            variant: _per_call(runner, call, calls * 4, time.perf_counter)
            for variant, call in (("direct", direct), ("executus", ours))
        },
        config.repetitions,
    )
    note = "150 text deltas a step; SDK's parsed stream, no HTTP"
    sdk_alone, executus_alone = alone["direct"], alone["executus"]
    report.add(Row(CASE, f"{provider} SDK stream loop, alone", sdk_alone.median, "ms/step", note=note))
    name = f"executus {provider} streamed step, alone"
    report.add(Row(CASE, name, executus_alone.median, "ms/step", note=executus_alone.spread()))
    own = executus_alone.median - sdk_alone.median
    report.add(
        Row(CASE, f"{provider} streamed step's own work, alone", own, "ms/step", note="the difference")
    )
    target = f"{provider} streamed path adds < 1 ms/step (its own work, alone)"
    report.target(CASE, target, own, own < 1.0, fmt=".3f")


def _report(report: Report, provider: str, clock: str, sdk: Measured, ours: Measured, calls: int) -> None:
    unit = f"ms/step {clock}"
    report.add(Row(CASE, f"{provider} SDK called directly", sdk.median, unit, note=sdk.spread()))
    ratio = ours.median / sdk.median
    note = ours.spread()
    report.add(Row(CASE, f"executus {provider} adapter", ours.median, unit, ratio, "SDK directly", note))
    overhead = ours.median - sdk.median
    report.add(Row(CASE, f"{provider} adapter overhead", overhead, unit, note=f"{calls} calls a figure"))


async def _openai(url: str) -> Calls:
    import openai

    from executus.models import OpenAIModel
    from executus.models._openai import _arguments

    request = _request()
    model = OpenAIModel("gpt-4.1-mini", api_key=KEY, base_url=url + "/v1", timeout=30)
    client = openai.AsyncOpenAI(api_key=KEY, base_url=url + "/v1", timeout=30, max_retries=0)
    wire = _arguments(model.model, request, model.settings)  # prepared once, as by hand

    async def direct() -> object:
        completion = await client.chat.completions.create(**wire)
        return completion.choices[0].message

    async def close() -> None:
        await model.aclose()
        await client.close()

    return direct, lambda: model.request(request), close


async def _anthropic(url: str) -> Calls:
    import anthropic

    from executus.models import AnthropicModel
    from executus.models._anthropic import _arguments

    request = _request()
    model = AnthropicModel("claude-sonnet-4-5", api_key=KEY, base_url=url, timeout=30)
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=url, timeout=30, max_retries=0)
    wire = _arguments(model.model, request, model.settings)

    async def direct() -> object:
        message = await client.messages.create(**wire)
        return message.content

    async def close() -> None:
        await model.aclose()
        await client.close()

    return direct, lambda: model.request(request), close


class _Canned:
    """An SDK resource whose ``create`` returns a reply the SDK already parsed: what is left of a
    step is the adapter's own work (translating the transcript, reading the reply)."""

    def __init__(self, reply: object) -> None:
        self.reply = reply

    async def create(self, **arguments: object) -> object:
        return self.reply


def _canned_openai() -> Callable[[], Awaitable[object]]:
    from openai.types.chat import ChatCompletion

    from executus.models import OpenAIModel

    model = OpenAIModel("gpt-4.1-mini", api_key=KEY, base_url="http://127.0.0.1:9/v1")
    completions = _Canned(ChatCompletion.model_validate(OPENAI_REPLY))
    model._client = SimpleNamespace(chat=SimpleNamespace(completions=completions))  # type: ignore[assignment]
    request = _request()
    return lambda: model.request(request)


def _canned_anthropic() -> Callable[[], Awaitable[object]]:
    from anthropic.types import Message

    from executus.models import AnthropicModel

    model = AnthropicModel("claude-sonnet-4-5", api_key=KEY, base_url="http://127.0.0.1:9")
    model._client = SimpleNamespace(messages=_Canned(Message.model_validate(ANTHROPIC_REPLY)))  # type: ignore[assignment]
    request = _request()
    return lambda: model.request(request)
