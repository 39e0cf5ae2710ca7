"""The agents real worker processes run in the worker tests (``executus worker --agents
worker_agents``): a fake model and side-effecting tools that leave a marker file per execution.

Set by the test through the environment:
    EXECUTUS_TEST_MARKERS: the directory markers go to (one file per tool execution, named
        ``RUN.TOOL.PID.NONCE``: the test counts how often each tool ran for each run).
    EXECUTUS_TEST_STEP: seconds each model reply takes (default 0.02).
    EXECUTUS_TEST_TOOL: seconds each tool takes after leaving its marker (default 0.02).

The ``payer`` agent's model asks for ``charge`` (not idempotent), then ``lookup`` (idempotent),
then answers; whatever a tool answered (interrupted included), it carries on.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from executus import Agent, ModelRequest, ModelResponse, ToolCall, ToolContext, ToolMessage, tool
from executus.testing import FunctionModel


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def leave_marker(context: ToolContext) -> None:
    """Record that this tool started executing for this run (before its side effect)."""
    directory = Path(os.environ.get("EXECUTUS_TEST_MARKERS") or ".")
    name = f"{context.run_id}.{context.tool_name}.{os.getpid()}.{secrets.token_hex(4)}"
    path = directory / name
    path.write_text("", encoding="utf-8")
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # survives this process's SIGKILL
    finally:
        os.close(fd)


@tool
async def charge(amount: int, context: ToolContext) -> str:
    """Charge the customer (never safe to repeat).

    Args:
        amount: how much.
    """
    leave_marker(context)
    await asyncio.sleep(_seconds("EXECUTUS_TEST_TOOL", 0.02))
    return f"charged {amount}"


@tool(idempotent=True)
async def lookup(key: str, context: ToolContext) -> str:
    """Read a record (safe to repeat).

    Args:
        key: which record.
    """
    leave_marker(context)
    await asyncio.sleep(_seconds("EXECUTUS_TEST_TOOL", 0.02))
    return f"record {key}"


async def _reply(request: ModelRequest) -> ModelResponse:
    await asyncio.sleep(_seconds("EXECUTUS_TEST_STEP", 0.02))
    answered = {message.name for message in request.messages if isinstance(message, ToolMessage)}
    if "charge" not in answered:
        return ModelResponse(
            tool_calls=(ToolCall(id=f"charge-{request.step}", name="charge", arguments={"amount": 5}),)
        )
    if "lookup" not in answered:
        return ModelResponse(
            tool_calls=(ToolCall(id=f"lookup-{request.step}", name="lookup", arguments={"key": "k"}),)
        )
    return ModelResponse(text="paid and checked")


payer = Agent("payer", FunctionModel(_reply, name="fake-50ms"), tools=[charge, lookup], max_iterations=10)
