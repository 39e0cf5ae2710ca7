"""Record a run of an agent on a real model, then replay it offline from the log.

The model is named with a provider prefix and configured from the SDK's own environment
variables, so the same script runs against OpenAI, or a local OpenAI-compatible server::

    pip install 'executus[openai]'
    OPENAI_API_KEY=sk-... python examples/real_model.py
    OPENAI_BASE_URL=http://localhost:11434/v1 OPENAI_API_KEY=ollama EXECUTUS_MODEL=openai:llama3.2 \\
        python examples/real_model.py

``EXECUTUS_MODEL=anthropic:claude-sonnet-4-5`` (with ``ANTHROPIC_API_KEY``) uses Anthropic. The
run is recorded in the configured database (``EXECUTUS_DB``, else executus's default SQLite file).
"""

from __future__ import annotations

import os

from executus import Agent, Executor, ModelSettings, tool
from replay import Replayer
from store import open_store


@tool
def add(a: int, b: int) -> int:
    """Add two whole numbers.

    Args:
        a: the first number.
        b: the second number.
    """
    return a + b


agent = Agent(
    name="calculator",
    model=os.environ.get("EXECUTUS_MODEL", "openai:gpt-4.1-mini"),
    system_prompt="You are a calculator. Use the add tool for every sum.",
    tools=[add],
    model_settings=ModelSettings(temperature=0, max_tokens=200),
    max_runtime=120,
)

if __name__ == "__main__":
    with open_store() as store:
        result = Executor(store).run_sync(agent, None, "What is 1234 + 4321?")
        print(f"run {result.run_id}: {result.status}, {result.steps} steps")
        print(f"output: {result.output if result.ok else result.error}")
        print(f"usage: {result.usage}")
        # The model is not called again: the replay serves the recorded replies.
        replay = Replayer(blobs=store).replay_run(store.read_run(result.run_id))
        print(replay.report())
