"""``executus run MODULE:ATTR "input"``: run a user's agent, record it, and show it live.

The agent is imported like ``replay --agent`` does (``module:attribute``, the current directory
importable; a factory is called). Its model is made before anything is recorded, and an
adapter's endpoint is tried first, so a bad agent, a missing API key or an unreachable server is
one line and exit 2 with nothing written. The run then goes into the configured database
(``--db`` / ``EXECUTUS_DB``) and the terminal shows each step, tool call and streamed text as
the events are recorded, then the status, output and run id.

Exit codes: 0 the run ended ok; 1 it ended otherwise (error, timeout, cancelled, killed);
2 bad input. Ctrl-C cancels the run (cause ``caller``, recorded like any cancel) and the command
still prints how it ended and the run id; a second Ctrl-C stops waiting for the run to wind down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

import click
from pydantic import JsonValue

from executus import Agent, Cancellation, Executor, ExecutusError, Invocation, Result, SystemClock
from executus._model import Model, ModelRegistry
from executus._text import terminal_text
from executus.cli._common import CliError, Settings, db_option, one_line, opened
from executus.cli._render import Cell, Output, status_cell
from executus.cli._replay import load_object
from executus.events import (
    Event,
    ModelAttemptFailed,
    ModelChunk,
    ModelFailed,
    ModelRequested,
    ModelResponded,
    RunCancelled,
    ToolFinished,
    ToolStarted,
)

__all__ = ["run_command"]

CONNECT_TIMEOUT: Final = 10.0
"""Seconds to wait for the model's server to accept a connection before the run starts."""
_PROXY_VARIABLES: Final = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
EXIT_NOT_OK: Final = 1


@click.command("run", short_help="Run an agent, record it, and show it live.")
@db_option
@click.argument("agent_spec", metavar="MODULE:ATTR")
@click.argument("input")
@click.option("--caller", metavar="ID", help="Who is asking (recorded with the run).")
@click.option("--json", "as_json", is_flag=True, help="Print only the result, as JSON, when the run ends.")
@click.pass_obj
def run_command(settings: Settings, agent_spec: str, input: str, caller: str | None, as_json: bool) -> None:
    """Run the agent MODULE:ATTR on INPUT and record the run in the database.

    MODULE:ATTR names an Agent (or a function that returns one), e.g. my_agents:helper; the
    current directory is importable. A model named with a provider prefix
    (openai:gpt-4.1-mini, anthropic:claude-sonnet-4-5) is configured from the SDK's variables
    (OPENAI_API_KEY, OPENAI_BASE_URL, ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL).

    Exit 0 when the run ends ok, 1 when it ends otherwise, 2 on bad input.
    """
    agent = load_object(agent_spec, Agent, "an agent")
    model = _model(agent)
    output = Output()
    with opened(settings) as event_store:
        live = None if as_json else LiveView(output)
        executor = Executor(
            event_store,
            models=ModelRegistry({agent.model_name: model}),
            clock=SystemClock(),
            on_event=None if live is None else live.on_event,
        )
        run_id = executor.ids.new_run_id()
        where = event_store.display_url

        def announce() -> None:
            if live is not None:
                output.line(
                    f"run {run_id}: {agent.name} on {agent.model_name}, recorded in {where}", "accent"
                )

        result = asyncio.run(
            _run(executor, agent, model, Invocation(run_id=run_id, caller_id=caller), input, announce)
        )
    if live is not None:
        live.end()
        _print_result(output, result)
    else:
        output.json(_result_json(result), indent=None)
    if result.status != "ok":
        sys.exit(EXIT_NOT_OK)


def _model(agent: Agent) -> Model:
    """The agent's model, made now: a name it cannot resolve, or a missing key, is bad input."""
    if not isinstance(agent.model, str):
        return agent.model
    try:
        return ModelRegistry()(agent.model)
    except ExecutusError as error:
        raise CliError(one_line(error)) from None


async def _run(
    executor: Executor,
    agent: Agent,
    model: Model,
    invocation: Invocation,
    input: str,
    announce: Callable[[], None],
) -> Result:
    """Check the model's server, then run (Ctrl-C cancels the run), then close the model."""
    try:
        await _check_reachable(model)
        announce()
        cancellation = Cancellation()
        invocation = dataclasses.replace(invocation, cancellation=cancellation)
        loop = asyncio.get_running_loop()

        def interrupted() -> None:
            cancellation.cancel("interrupted from the terminal (Ctrl-C)")
            loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C stops waiting

        loop.add_signal_handler(signal.SIGINT, interrupted)
        try:
            return await executor.run(agent, invocation, input)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
    finally:
        close = getattr(model, "aclose", None)
        if close is not None:
            await close()


async def _check_reachable(model: Model) -> None:
    """Refuse to start a run whose model's server does not accept connections (an adapter's
    ``base_url``); skipped behind a proxy, which only the SDK knows how to go through."""
    base_url = getattr(model, "base_url", None)
    if not isinstance(base_url, str) or any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return
    parts = urlsplit(base_url)
    if parts.hostname is None:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as error:
        timed_out = isinstance(error, TimeoutError)
        reason = f"no answer within {CONNECT_TIMEOUT:g} s" if timed_out else one_line(error)
        raise CliError(f"cannot reach {model.name} at {base_url}: {reason}") from None
    writer.close()


class LiveView:
    """Prints a run as its events are recorded: steps, streamed text, tool calls (all inert)."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.mid_line = False
        """Streamed text was printed and its line not ended yet."""
        self.streamed_steps: set[int] = set()

    def on_event(self, event: Event) -> None:
        match event:
            case ModelRequested():
                self._line(f"step {event.step}: asking the model", "quiet")
            case ModelChunk():
                if event.text:
                    if not self.mid_line:
                        click.echo("  ", nl=False)
                    click.echo(terminal_text(event.text, newlines=True).replace("\n", "\n  "), nl=False)
                    sys.stdout.flush()
                    self.mid_line = True
                self.streamed_steps.add(event.step)
            case ModelResponded():
                if event.text and event.step not in self.streamed_steps:
                    self._line("  " + event.text)
                for call in event.tool_calls:
                    self._line(f"  → {call.name}({_arguments(call.arguments)}) [{call.id}]")
            case ModelAttemptFailed():
                wait = (event.next_attempt_at - event.at).total_seconds()
                self._line(
                    f"  attempt {event.attempt} failed: {event.error}; retrying in {wait:.1f}s", "warn"
                )
            case ModelFailed():
                self._line(f"  model failed: {event.error}", "bad")
            case ToolStarted():
                pass  # shown with the reply that asked for it
            case ToolFinished():
                if event.error is not None:
                    self._line(f"  ✗ {event.name} [{event.call_id}]: {event.error}", "bad")
                else:
                    self._line(
                        f"  ← {event.name} [{event.call_id}]: {terminal_text(event.result or '', 200)}"
                    )
            case RunCancelled():
                self._line(f"cancelled ({event.cause}): {event.detail}", "warn")
            case _:
                pass

    def _line(self, text: str, tone: str = "plain") -> None:
        if self.mid_line:
            click.echo()
            self.mid_line = False
        self.output.line(text, tone)
        sys.stdout.flush()  # live, also into a pipe

    def end(self) -> None:
        """End a line of streamed text left open."""
        if self.mid_line:
            click.echo()
            self.mid_line = False


def _arguments(arguments: dict[str, JsonValue]) -> str:
    shown = ", ".join(f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in arguments.items())
    return terminal_text(shown, 200)


def _print_result(output: Output, result: Result) -> None:
    steps = f"{result.steps} step{'s' if result.steps != 1 else ''}"
    summary = f"{steps} · {result.usage.total_tokens} tokens · {result.duration:.1f}s"
    output.cells([status_cell(result.status), Cell(summary, "quiet")])
    if result.status == "ok":
        output.line(f"output: {result.output or ''}")
    elif result.error is not None:
        output.line(f"error: {result.error}", "bad")
    output.line(f"run id: {result.run_id}", "accent")


def _result_json(result: Result) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "status": result.status,
        "output": result.output,
        "error": result.error.model_dump(mode="json") if result.error else None,
        "steps": result.steps,
        "usage": result.usage.model_dump(mode="json"),
        "duration": result.duration,
    }
