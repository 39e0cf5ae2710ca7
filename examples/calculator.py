"""A streaming calculator agent for ``executus run`` (see the README's "Record and replay a run")::

    pip install 'executus[openai]'
    OPENAI_API_KEY=sk-... executus run examples.calculator:agent "What is 1234 + 4321?"

``EXECUTUS_MODEL`` picks another model: ``anthropic:claude-sonnet-4-5`` (with
``ANTHROPIC_API_KEY``), or ``openai:llama3.2`` with ``OPENAI_BASE_URL=http://localhost:11434/v1``
for a local OpenAI-compatible server (Ollama here).
"""

from __future__ import annotations

import os

from executus import Agent, ModelSettings, tool


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
    system_prompt="You are a calculator. Use the add tool for every sum, then explain the result.",
    tools=[add],
    # Streamed: the reply is recorded as it arrives (model_chunk events), and shown live.
    model_settings=ModelSettings(temperature=0, max_tokens=400, stream=True),
    max_runtime=120,
)
