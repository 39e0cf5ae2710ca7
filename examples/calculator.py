"""The calculator of ``real_model.py``, streaming, for ``executus run`` (run from the repository's
root; see the README's "Record a run with executus run")::

    pip install 'executus[openai]'
    OPENAI_API_KEY=sk-... executus run examples.calculator:agent "What is 1234 + 4321?"

``EXECUTUS_MODEL`` picks another model: ``anthropic:claude-sonnet-4-5`` (with
``ANTHROPIC_API_KEY``), or ``openai:llama3.2`` with ``OPENAI_BASE_URL=http://localhost:11434/v1``
for a local OpenAI-compatible server (Ollama here).
"""

from __future__ import annotations

import dataclasses

from examples.real_model import agent as whole_replies

# Streamed: each reply is recorded as it arrives (model_chunk events) and shown live.
agent = dataclasses.replace(
    whole_replies,
    model_settings=whole_replies.model_settings.model_copy(update={"stream": True})
    if whole_replies.model_settings
    else None,
)
