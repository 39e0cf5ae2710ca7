"""The OpenAI and Anthropic adapters, end to end: the real executor on the system clock and a
real SQLite store, the real SDKs, and a loopback HTTP server speaking each API's wire format."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from _loopback import (
    Call,
    LoopbackServer,
    Reply,
    Scripted,
    anthropic_stream,
    hang,
    json_reply,
    openai_completion,
    openai_stream,
    raw_reply,
    sse_reply,
)
from _providers import ANTHROPIC, KEY, OPENAI, Provider

from executus import (
    Agent,
    Cancellation,
    Executor,
    Image,
    Invocation,
    ModelCallError,
    ModelRequest,
    ModelSettings,
    Result,
    Session,
    SessionContext,
    SessionFactory,
    SystemClock,
    TextPart,
    Usage,
    UserMessage,
    tool,
)
from executus.models import StreamFinished, TextDelta
from store import SqlStore

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def mul(x: int, y: int) -> int:
    """Multiply two numbers."""
    return x * y


@pytest.fixture(params=[False, True], ids=["whole", "streamed"])
def streamed(request: pytest.FixtureRequest) -> bool:
    return request.param  # type: ignore[no-any-return]


def reply(provider: Provider, scripted: Scripted, streamed: bool) -> Reply:
    return sse_reply(provider.stream(scripted)) if streamed else json_reply(provider.whole(scripted))


def run_against(
    provider: Provider,
    store: SqlStore,
    replies: list[Reply],
    *,
    streamed: bool = False,
    during: Callable[[LoopbackServer, Cancellation], Awaitable[None]] | None = None,
    session: SessionFactory | None = None,
    **agent_options: Any,
) -> tuple[Result, LoopbackServer]:
    """Run an agent against a loopback server scripted with ``replies``, recorded in ``store``."""

    async def scenario() -> tuple[Result, LoopbackServer]:
        async with LoopbackServer() as server, contextlib.AsyncExitStack() as stack:
            server.serve(*replies)
            model = provider.make(server.url)
            model.settings = ModelSettings(stream=streamed)
            stack.push_async_callback(model.aclose)
            agent_options.setdefault("tools", [add, mul])
            agent = Agent(name="calc", model=model, system_prompt="You add and multiply.", **agent_options)
            cancellation = Cancellation()
            run = asyncio.ensure_future(
                Executor(store, clock=SystemClock()).run(
                    agent, Invocation(cancellation=cancellation, session=session), "1+2?"
                )
            )
            if during is not None:
                await during(server, cancellation)
            return await run, server

    return asyncio.run(scenario())


def test_a_text_reply_is_recorded_with_its_usage(provider: Provider, streamed: bool, db: SqlStore) -> None:
    result, server = run_against(
        provider, db, [reply(provider, Scripted(text="It is 3."), streamed)], streamed=streamed
    )

    assert result.status == "ok", result.error
    assert result.output == "It is 3."
    assert result.usage.input_tokens == 11
    assert result.usage.output_tokens == 7
    assert result.usage.cached_input_tokens == 3
    (received,) = server.received
    assert received.path == provider.path
    assert received.body.get("stream", False) is streamed
    sent = json.dumps(received.body)
    assert "You add and multiply." in sent
    assert "1+2?" in sent
    assert {"add", "mul"} <= {tool.get("name") or tool["function"]["name"] for tool in received.body["tools"]}


def test_parallel_tool_calls_run_and_their_results_go_back(
    provider: Provider, streamed: bool, db: SqlStore
) -> None:
    calls = (Call("call_a", "add", {"a": 1, "b": 2}), Call("call_m", "mul", {"x": 3, "y": 4}))
    replies = [
        reply(provider, Scripted(calls=calls), streamed),
        reply(provider, Scripted(text="3 and 12"), streamed),
    ]

    result, server = run_against(provider, db, replies, streamed=streamed)

    assert result.status == "ok", result.error
    assert result.output == "3 and 12"
    events = db.read_run(result.run_id)
    responded = [event for event in events if event.kind == "model_responded"]
    assert [call.name for call in responded[0].tool_calls] == ["add", "mul"]
    assert responded[0].tool_calls[1].arguments == {"x": 3, "y": 4}
    finished = {event.call_id: event.result for event in events if event.kind == "tool_finished"}
    assert finished == {"call_a": "3", "call_m": "12"}
    second = server.received[1].body["messages"]
    if provider is OPENAI:
        assistant, *results = second[-3:]
        assert [call["id"] for call in assistant["tool_calls"]] == ["call_a", "call_m"]
        assert [(r["role"], r["tool_call_id"], r["content"]) for r in results] == [
            ("tool", "call_a", "3"),
            ("tool", "call_m", "12"),
        ]
    else:
        assistant, results = second[-2:]
        assert [block["id"] for block in assistant["content"]] == ["call_a", "call_m"]
        assert results["role"] == "user"  # both results in one turn
        assert [(b["tool_use_id"], b["content"]) for b in results["content"]] == [
            ("call_a", "3"),
            ("call_m", "12"),
        ]


def test_an_image_part_is_sent_as_the_api_expects(provider: Provider, db: SqlStore) -> None:
    def session(context: SessionContext) -> Session:
        context.attach_images("What is in this picture?", Image(PNG))
        return Session()

    result, server = run_against(
        provider, db, [reply(provider, Scripted(text="A pixel."), False)], session=session
    )

    assert result.status == "ok", result.error
    encoded = base64.b64encode(PNG).decode()
    last = server.received[0].body["messages"][-1]
    if provider is OPENAI:
        assert {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}} in last[
            "content"
        ]
    else:
        source = {"type": "base64", "media_type": "image/png", "data": encoded}
        assert {"type": "image", "source": source} in last["content"]
    assert {"type": "text", "text": "What is in this picture?"} in last["content"]


def test_without_a_retry_policy_a_429_ends_the_run_with_its_status_and_retry_after(
    provider: Provider, db: SqlStore
) -> None:
    rate_limited = provider.error(429, "Slow down.", provider.rate_limit_type, {"retry-after": "2"})

    result, _ = run_against(provider, db, [rate_limited], retry=None)

    assert result.status == "error"
    assert result.error is not None
    assert result.error.type == "ModelCallError"
    assert f"HTTP 429 {provider.rate_limit_type}: Slow down." in result.error.message
    assert "request req_429, retry after 2 s, retryable" in result.error.message
    error = result.error
    assert (error.status, error.code, error.request_id, error.retry_after, error.retryable) == (
        429,
        provider.rate_limit_type,
        "req_429",
        2.0,
        True,
    )
    assert KEY not in json.dumps([event.model_dump(mode="json") for event in db.read_run(result.run_id)])


@pytest.mark.parametrize("status", [500, 503, 529])
def test_server_errors_are_retryable_failures(provider: Provider, status: int) -> None:
    error = asyncio.run(_failure(provider, provider.error(status, "Overloaded.", "overloaded_error")))

    assert (error.status, error.error_type, error.retryable) == (status, "overloaded_error", True)
    assert error.request_id == f"req_{status}"
    assert error.retry_after is None


def test_a_bad_request_is_not_retryable(provider: Provider) -> None:
    error = asyncio.run(_failure(provider, provider.error(400, "No such tool.", "invalid_request_error")))

    assert (error.status, error.retryable) == (400, False)
    assert str(error).endswith(
        "HTTP 400 invalid_request_error: No such tool. (request req_400, not retryable)"
    )


@pytest.mark.parametrize(
    "body", ["{not json", '{"choices": "none", "content": 7}', "[]"], ids=["not-json", "wrong-shape", "array"]
)
def test_a_malformed_body_is_one_clear_error(provider: Provider, body: str, db: SqlStore) -> None:
    result, _ = run_against(provider, db, [raw_reply(body)])

    assert result.status == "error"
    assert result.error is not None
    assert result.error.type == "ModelCallError"
    assert "malformed_response: the reply is not " in result.error.message
    assert "not retryable" in result.error.message


def test_a_hang_is_cut_by_the_run_deadline_and_the_connection_closed(
    provider: Provider, db: SqlStore
) -> None:
    async def wait_for_disconnect(server: LoopbackServer, cancellation: Cancellation) -> None:
        await server.disconnected.wait()

    result, server = run_against(provider, db, [hang()], during=wait_for_disconnect, max_runtime=0.3)

    assert result.status == "timeout"
    assert server.disconnected.is_set()
    cancelled = [event for event in db.read_run(result.run_id) if event.kind == "run_cancelled"]
    assert [item.kind for item in cancelled[0].in_flight] == ["model"]


def test_a_cancel_during_a_request_closes_the_connection(
    provider: Provider, streamed: bool, db: SqlStore
) -> None:
    async def cancel_once_received(server: LoopbackServer, cancellation: Cancellation) -> None:
        await server.requested.wait()
        cancellation.cancel("the user pressed stop")
        await server.disconnected.wait()

    result, server = run_against(provider, db, [hang()], during=cancel_once_received, streamed=streamed)

    assert result.status == "cancelled"
    assert server.disconnected.is_set()


def test_a_stream_cut_off_mid_reply_fails_with_usage_unknown(provider: Provider, db: SqlStore) -> None:
    events = provider.stream(Scripted(text="The answer is three."))
    cut = sse_reply(events, cut_after=4)

    result, _ = run_against(provider, db, [cut], streamed=True, retry=None)

    assert result.status == "error"
    assert result.error is not None
    assert "stream_interrupted" in result.error.message
    assert "usage unknown" in result.error.message
    assert "(retryable)" in result.error.message


def test_the_stream_primitive_yields_what_arrived_before_a_cut(provider: Provider) -> None:
    async def scenario() -> tuple[list[Any], ModelCallError]:
        async with LoopbackServer() as server:
            server.serve(sse_reply(provider.stream(Scripted(text="The answer is three.")), cut_after=4))
            chunks: list[Any] = []

            async def collect() -> None:
                async with provider.make(server.url) as model:
                    async for chunk in model.stream(_request()):
                        chunks.append(chunk)  # one by one: the stream fails part-way

            with pytest.raises(ModelCallError) as caught:
                await collect()
            return chunks, caught.value

    chunks, error = asyncio.run(scenario())

    assert chunks
    assert all(isinstance(chunk, TextDelta) for chunk in chunks)
    assert not any(isinstance(chunk, StreamFinished) for chunk in chunks)
    assert error.error_type == "stream_interrupted"


def test_streamed_and_whole_replies_assemble_to_the_same_response(provider: Provider) -> None:
    scripted = Scripted(text="Both at once.", calls=(Call("c1", "add", {"a": 1, "b": 2}),))

    async def scenario() -> tuple[Any, Any, list[Any]]:
        async with LoopbackServer() as server:
            server.serve(reply(provider, scripted, False), reply(provider, scripted, True))
            server.serve(reply(provider, scripted, True))
            async with provider.make(server.url) as model:
                whole = await model.request(_request())
                streamed = await model.request(_request(ModelSettings(stream=True)))
                chunks = [chunk async for chunk in model.stream(_request())]
                return whole, streamed, chunks

    whole, streamed, chunks = asyncio.run(scenario())

    assert whole == streamed
    assert whole.finish_reason == provider.finish_reasons[1]
    assert isinstance(chunks[-1], StreamFinished)
    assert chunks[-1].usage == whole.usage


def test_settings_are_sent_on_the_wire(provider: Provider) -> None:
    settings = ModelSettings(
        temperature=0.2,
        max_tokens=300,
        top_p=0.9,
        seed=7,
        stop=("END",),
        reasoning_effort="low",
        extra={"service_tier": "flex"},
    )

    async def scenario() -> dict[str, Any]:
        async with LoopbackServer() as server:
            server.serve(reply(provider, Scripted(text="ok"), False))
            async with provider.make(server.url) as model:
                await model.request(_request(settings))
            return server.received[0].body

    body = asyncio.run(scenario())

    assert (body["temperature"], body["top_p"], body["service_tier"]) == (0.2, 0.9, "flex")
    if provider is OPENAI:
        assert (body["max_completion_tokens"], body["seed"], body["stop"]) == (300, 7, ["END"])
        assert body["reasoning_effort"] == "low"
    else:
        assert (body["max_tokens"], body["stop_sequences"]) == (300, ["END"])
        assert body["output_config"] == {"effort": "low"}
        assert "seed" not in body


def test_an_unreachable_endpoint_is_a_retryable_connection_error(provider: Provider, db: SqlStore) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    error = asyncio.run(_call(provider, f"http://127.0.0.1:{port}"))

    assert (error.error_type, error.retryable, error.status) == ("connection", True, None)
    assert f"127.0.0.1:{port}" in str(error)


def test_the_api_key_is_never_shown_or_recorded(provider: Provider, db: SqlStore) -> None:
    result, server = run_against(provider, db, [provider.error(401, "Bad key.", "authentication_error")])

    model = provider.make("http://127.0.0.1:9")
    assert KEY not in repr(model)
    assert KEY not in repr(vars(model))
    assert KEY not in str(result.error)
    stored = json.dumps([event.model_dump(mode="json") for event in db.read_run(result.run_id)])
    assert KEY not in stored
    assert KEY in json.dumps(server.received[0].headers)  # it was sent, to the server only


async def _failure(provider: Provider, served: Reply) -> ModelCallError:
    async with LoopbackServer() as server:
        server.serve(served)
        return await _call(provider, server.url)


async def _call(provider: Provider, url: str) -> ModelCallError:
    async with provider.make(url) as model:
        with pytest.raises(ModelCallError) as caught:
            await model.request(_request())
        return caught.value


def _request(settings: ModelSettings | None = None) -> ModelRequest:
    return ModelRequest(messages=[UserMessage(parts=(TextPart(text="hi"),))], tools=[], settings=settings)


def test_usage_is_summed_over_the_run(db: SqlStore) -> None:
    calls = (Call("call_a", "add", {"a": 1, "b": 2}),)
    replies = [
        json_reply(openai_completion(Scripted(calls=calls))),
        json_reply(openai_completion(Scripted(text="3"))),
    ]

    result, _ = run_against(OPENAI, db, replies)

    assert result.usage == Usage(input_tokens=22, output_tokens=14, cached_input_tokens=6, reasoning_tokens=4)


def test_an_error_event_inside_a_stream_says_what_the_server_said() -> None:
    events = anthropic_stream(Scripted(text="The answer is three."))
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    failing = [*events[:4], f"event: error\ndata: {json.dumps(overloaded)}\n\n"]

    async def scenario() -> ModelCallError:
        async with LoopbackServer() as server:
            server.serve(sse_reply(failing))
            async with ANTHROPIC.make(server.url) as model:
                with pytest.raises(ModelCallError) as caught:
                    await model.request(_request(ModelSettings(stream=True)))
                return caught.value

    error = asyncio.run(scenario())

    assert (error.error_type, error.detail, error.retryable, error.status) == (
        "overloaded_error",
        "Overloaded",
        True,
        None,
    )


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_tool_arguments_that_are_not_json_are_a_malformed_reply(streamed: bool) -> None:
    completion = openai_completion(Scripted(calls=(Call("c1", "add", {"a": 1}),)))
    completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = '{"a": 1'
    events = openai_stream(Scripted(calls=(Call("c1", "add", {"a": 1}),)))
    events[2] = events[2].replace('"arguments": ": 1}"', '"arguments": ": 1"')  # the closing brace lost
    served = sse_reply(events) if streamed else json_reply(completion)

    async def scenario() -> ModelCallError:
        async with LoopbackServer() as server:
            server.serve(served)
            async with OPENAI.make(server.url) as model:
                with pytest.raises(ModelCallError) as caught:
                    await model.request(_request(ModelSettings(stream=streamed)))
                return caught.value

    error = asyncio.run(scenario())

    assert error.error_type == "malformed_response"
    assert "the arguments of tool call 'add' are not valid JSON" in error.detail


def test_cancelling_the_awaiting_task_closes_the_connection(provider: Provider, streamed: bool) -> None:
    async def scenario() -> bool:
        async with LoopbackServer() as server:
            server.serve(hang())
            async with provider.make(server.url) as model:
                call = asyncio.ensure_future(model.request(_request(ModelSettings(stream=streamed))))
                await server.requested.wait()
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
                await server.disconnected.wait()
                return server.disconnected.is_set()

    assert asyncio.run(scenario())


def test_the_adapter_timeout_ends_a_hung_call_as_a_retryable_error(provider: Provider) -> None:
    async def scenario() -> ModelCallError:
        async with LoopbackServer() as server:
            server.serve(hang())
            model = provider.make(server.url)
            async with type(model)(model.model, api_key=KEY, base_url=model.base_url, timeout=0.2) as hasty:
                with pytest.raises(ModelCallError) as caught:
                    await hasty.request(_request())
                await server.disconnected.wait()
                return caught.value

    error = asyncio.run(scenario())

    assert (error.error_type, error.retryable, error.status) == ("timeout", True, None)


def test_an_image_without_its_bytes_is_refused_before_anything_is_sent(provider: Provider) -> None:
    image = Image(PNG)
    request = ModelRequest(messages=[UserMessage(parts=(TextPart(text="see"), image.part()))], tools=[])

    async def scenario() -> tuple[ModelCallError, int]:
        async with LoopbackServer() as server, provider.make(server.url) as model:
            with pytest.raises(ModelCallError) as caught:
                await model.request(request)
            return caught.value, len(server.received)

    error, sent = asyncio.run(scenario())

    assert error.error_type == "missing_image"
    assert image.sha256 in error.detail
    assert sent == 0


def test_without_a_retry_policy_a_5xx_ends_the_run_as_an_error_that_a_retry_may_pass(
    provider: Provider, db: SqlStore
) -> None:
    result, _ = run_against(provider, db, [provider.error(503, "Try later.", "overloaded_error")], retry=None)

    assert result.status == "error"
    assert result.error is not None
    assert result.error.type == "ModelCallError"
    assert result.error.message.endswith("HTTP 503 overloaded_error: Try later. (request req_503, retryable)")
    failed = [event for event in db.read_run(result.run_id) if event.kind == "model_failed"]
    assert [event.error for event in failed] == [result.error]


def test_an_unreachable_endpoint_ends_the_run_with_one_clear_error(provider: Provider, db: SqlStore) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> Result:
        async with provider.make(f"http://127.0.0.1:{port}") as model:
            agent = Agent(name="calc", model=model)
            return await Executor(db, clock=SystemClock()).run(agent, None, "1+2?")

    result = asyncio.run(scenario())

    assert result.status == "error"
    assert result.error is not None
    assert result.error.type == "ModelCallError"
    assert f"connection: the connection to http://127.0.0.1:{port}" in result.error.message
    assert "\n" not in result.error.message


def test_a_cancel_in_the_middle_of_a_stream_closes_the_connection(provider: Provider) -> None:
    events = provider.stream(Scripted(text="A long answer, slowly."))

    async def scenario() -> list[Any]:
        async with LoopbackServer() as server, provider.make(server.url) as model:
            server.serve(sse_reply(events, hang_after=4))
            chunks: list[Any] = []
            first_text = asyncio.Event()

            async def consume() -> None:
                async for chunk in model.stream(_request()):
                    chunks.append(chunk)
                    first_text.set()

            consuming = asyncio.ensure_future(consume())
            await first_text.wait()  # the server stalls after it
            consuming.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consuming
            await server.disconnected.wait()
            return chunks

    chunks = asyncio.run(scenario())

    assert chunks
    assert not any(isinstance(chunk, StreamFinished) for chunk in chunks)
