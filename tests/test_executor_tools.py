"""Tool calls, steer injection, sessions, ports, delegation and determinism."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from _support import START, new_executor, offsets, record

from executus import (
    Agent,
    Artifact,
    IdleCritic,
    Image,
    Invocation,
    Ladder,
    Message,
    PostRun,
    Result,
    Session,
    SessionContext,
    ToolContext,
    ToolMessage,
    UserMessage,
    VirtualClock,
    nudge,
    raise_steps,
    tool,
)
from executus.events import ErrorInfo, encode_event
from executus.testing import ScriptedModel, call, hang, reply


@tool
async def slow_echo(text: str, seconds: float) -> str:
    """Echo text after a while.

    Args:
        text: what to echo.
        seconds: how long to take.
    """
    await asyncio.sleep(seconds)
    return text


def test_parallel_tool_calls_run_together_and_each_is_recorded_when_it_ends() -> None:
    calls = [call("slow_echo", text="first", seconds=20), call("slow_echo", text="second", seconds=5)]
    agent = Agent("parallel", ScriptedModel([calls, "done"]), tools=[slow_echo])
    recorded = record(agent)

    assert offsets(recorded)[3:7] == [
        (0.0, "tool_started"),
        (0.0, "tool_started"),
        (5.0, "tool_finished"),
        (20.0, "tool_finished"),
    ]
    finished = recorded.of_kind("tool_finished")
    assert [(event.result, event.duration) for event in finished] == [("second", 5.0), ("first", 20.0)]
    transcript = recorded.result.state.transcript
    assert [message.content for message in transcript if isinstance(message, ToolMessage)] == [
        "second",
        "first",
    ]


def test_sequential_tool_calls_run_one_after_another() -> None:
    calls = [call("slow_echo", text="first", seconds=20), call("slow_echo", text="second", seconds=5)]
    agent = Agent("sequential", ScriptedModel([calls, "done"]), tools=[slow_echo], parallel_tool_calls=False)
    recorded = record(agent)

    assert offsets(recorded)[3:7] == [
        (0.0, "tool_started"),
        (20.0, "tool_finished"),
        (20.0, "tool_started"),
        (25.0, "tool_finished"),
    ]


def test_tool_failures_become_error_results_the_model_sees() -> None:
    @tool
    def divide(a: int, b: int) -> float:
        """Divide a by b.

        Args:
            a: dividend.
            b: divisor.
        """
        return a / b

    model = ScriptedModel(
        [
            [call("multiply", a=1), call("divide", a="ten", b=2), call("divide", a=1, b=0)],
            "I could not compute it.",
        ]
    )
    recorded = record(Agent("calc", model, tools=[divide]))

    assert recorded.result.status == "ok"
    errors = [event.error for event in recorded.of_kind("tool_finished")]
    assert [error.type for error in errors] == ["UnknownTool", "InvalidArguments", "ZeroDivisionError"]
    assert errors[0].message == "no tool named 'multiply' (available: divide)"
    assert "a: Input should be a valid integer" in errors[1].message
    seen_by_model = [m for m in model.requests[1].messages if isinstance(m, ToolMessage)]
    assert [(m.is_error, m.content.split(":")[0]) for m in seen_by_model] == [
        (True, "error"),
        (True, "error"),
        (True, "error"),
    ]
    assert "ZeroDivisionError: division by zero" in seen_by_model[2].content


def test_session_images_and_critic_nudges_are_injected_in_arrival_order_before_the_next_step() -> None:
    screenshot = Image(b"\x89PNG fake screenshot", "image/png")

    @tool
    async def take_screenshot(ctx: ToolContext) -> str:
        """Take a screenshot of the page and show it to the model."""
        ctx.attach_images("Here is the page.", screenshot)
        await asyncio.sleep(45)  # long enough for the critic to nudge meanwhile
        return "screenshot attached"

    model = ScriptedModel([call("take_screenshot"), "I see the page."])
    critic = IdleCritic(idle_after=30, policy=Ladder([nudge("Still working?")]), check_interval=10)
    recorded = record(Agent("browser", model, tools=[take_screenshot], critic=critic))

    assert recorded.kinds[4:10] == [
        "critic_decided",
        "tool_finished",
        "steer_injected",
        "steer_injected",
        "model_requested",
        "model_responded",
    ]
    session_steer, critic_steer = recorded.of_kind("steer_injected")
    assert session_steer.source == "session"
    assert session_steer.messages[0].images[0].sha256 == screenshot.sha256
    assert (critic_steer.source, critic_steer.messages[0].text) == ("critic", "Still working?")
    second_request = model.requests[1]
    user_messages = [m for m in second_request.messages if isinstance(m, UserMessage)]
    assert [(m.source, m.text) for m in user_messages] == [
        ("input", "go"),
        ("session", "Here is the page."),
        ("critic", "Still working?"),
    ]
    assert second_request.images == {screenshot.sha256: screenshot.data}
    assert recorded.executor.store.get_blob(screenshot.sha256).data == screenshot.data


def test_raise_steps_lets_a_run_go_past_its_max_iterations() -> None:
    @tool
    async def think(seconds: float) -> str:
        """Think for a while.

        Args:
            seconds: how long.
        """
        await asyncio.sleep(seconds)
        return "thought"

    critic = IdleCritic(
        idle_after=30, policy=Ladder([raise_steps(2, "slow but progressing")]), check_interval=30
    )
    model = ScriptedModel([call("think", seconds=40), call("think", seconds=1), "conclusion"])
    recorded = record(Agent("thinker", model, tools=[think], max_iterations=2, critic=critic))

    assert (recorded.result.status, recorded.result.steps) == ("ok", 3)
    decision = recorded.of_kind("critic_decided")[0]
    assert (decision.decision, decision.old_max_steps, decision.new_max_steps) == ("raise_steps", 2, 4)


class _Archiving(Session):
    """A session that turns the transcript into an artifact; optionally fails."""

    def __init__(self, fail_post_run: bool = False, fail_cleanup: bool = False) -> None:
        self.fail_post_run = fail_post_run
        self.fail_cleanup = fail_cleanup
        self.cleaned_up = False

    async def post_run(
        self, transcript: Sequence[Message], output: str | None, error: ErrorInfo | None
    ) -> PostRun:
        if self.fail_post_run:
            raise OSError("disk full")
        text = "\n".join(message.model_dump_json() for message in transcript).encode()
        return PostRun(
            [Artifact("transcript.jsonl", "application/jsonl", text)], {"messages": len(transcript)}
        )

    async def cleanup(self) -> None:
        self.cleaned_up = True
        if self.fail_cleanup:
            raise RuntimeError("browser already closed")


def test_post_run_artifacts_are_stored_recorded_and_delivered() -> None:
    delivered: list[Result] = []
    charged: list[tuple[str | None, float]] = []

    class Delivery:
        async def deliver(self, result: Result) -> None:
            delivered.append(result)

    class Budget:
        async def commit(self, caller_id: str | None, seconds: float) -> None:
            charged.append((caller_id, seconds))

    session = _Archiving()
    executor = new_executor(delivery=Delivery(), budget=Budget())
    agent = Agent("archivist", ScriptedModel([hang(12), "archived"]))
    recorded = record(
        agent, invocation=Invocation(caller_id="alice", session=lambda _: session), executor=executor
    )

    post_run = recorded.of_kind("post_run_finished")[0]
    assert (post_run.metadata, post_run.error, post_run.cleanup_error) == ({"messages": 3}, None, None)
    artifact = recorded.result.artifacts[0]
    assert post_run.artifacts[0].sha256 == executor.store.put_blob(artifact.data, artifact.media_type)
    assert executor.store.get_blob(post_run.artifacts[0].sha256).data == artifact.data
    assert session.cleaned_up
    assert delivered == [recorded.result]
    assert charged == [("alice", 12.0)]


@pytest.mark.parametrize(("fail_post_run", "fail_cleanup"), [(True, False), (False, True), (True, True)])
def test_post_run_and_cleanup_failures_are_recorded_and_never_fail_the_run(
    fail_post_run: bool, fail_cleanup: bool
) -> None:
    session = _Archiving(fail_post_run=fail_post_run, fail_cleanup=fail_cleanup)
    recorded = record(Agent("a", ScriptedModel(["fine"])), invocation=Invocation(session=lambda _: session))

    assert (recorded.result.status, recorded.result.output) == ("ok", "fine")
    post_run = recorded.of_kind("post_run_finished")[0]
    assert str(post_run.error) == ("OSError: disk full" if fail_post_run else "None")
    assert str(post_run.cleanup_error) == ("RuntimeError: browser already closed" if fail_cleanup else "None")
    assert session.cleaned_up


def test_session_tools_and_attach_from_the_session_context() -> None:
    class Browser(Session):
        def __init__(self, context: SessionContext) -> None:
            @tool
            def open_page(url: str) -> str:
                """Open a page.

                Args:
                    url: the address.
                """
                context.attach_images(f"{url} rendered", Image(b"pixels"))
                return "opened"

            self.tools = [open_page]

    model = ScriptedModel([call("open_page", url="https://example.test"), "It is a test page."])
    recorded = record(Agent("surfer", model), invocation=Invocation(session=Browser))

    assert [spec.name for spec in recorded.events[0].agent.tools] == ["open_page"]
    assert recorded.of_kind("steer_injected")[0].messages[0].text == "https://example.test rendered"


def test_a_tool_can_start_a_child_run_and_both_logs_link_up() -> None:
    child_agent = Agent("summariser", ScriptedModel(["short summary"]))

    @tool
    async def delegate(ctx: ToolContext, text: str) -> str:
        """Ask a helper agent to summarise.

        Args:
            text: what to summarise.
        """
        result = await ctx.start_child(child_agent, text)
        return result.output or ""

    model = ScriptedModel([call("delegate", text="a long text"), "done"])
    recorded = record(Agent("manager", model, tools=[delegate]), invocation=Invocation(caller_id="bob"))

    linked = recorded.of_kind("child_run_started")[0]
    assert (linked.child_run_id, linked.tool_name) == ("run-0002", "delegate")
    child = recorded.executor.store.read_run("run-0002")
    assert (child[0].parent_run_id, child[0].parent_call_id, child[0].caller_id) == (
        "run-0001",
        linked.call_id,
        "bob",
    )
    assert recorded.of_kind("tool_finished")[0].result == "short summary"
    assert recorded.result.state.children == ["run-0002"]


def _recorded_stream() -> list[dict[str, object]]:
    critic = IdleCritic(idle_after=30, check_interval=10)
    script = [reply("thinking", call("slow_echo", text="a", seconds=3)), hang(100), "final"]
    agent = Agent("det", ScriptedModel(script), tools=[slow_echo], max_runtime=500, critic=critic)
    recorded = record(agent, executor=new_executor(clock=VirtualClock(START)))
    return [encode_event(event) for event in recorded.events]


def test_same_agent_input_script_clock_and_ids_give_identical_event_streams() -> None:
    first, second = _recorded_stream(), _recorded_stream()
    assert first == second
    assert "critic_decided" in [event["kind"] for event in first]
