"""Adapters for real models, on their providers' official SDKs (optional extras).

``OpenAIModel`` speaks the OpenAI Chat Completions API (OpenAI, vLLM, Ollama, llama.cpp,
LiteLLM, OpenRouter) and needs ``pip install 'executus[openai]'``; ``AnthropicModel`` speaks the
Anthropic Messages API and needs ``pip install 'executus[anthropic]'``. Each SDK is imported only
when its adapter is first used. An agent can also name its model with a provider prefix, which
the executor's default resolver turns into an adapter configured from the SDK's environment
variables::

    Agent(name="helper", model="openai:gpt-4.1-mini")           # OPENAI_API_KEY, OPENAI_BASE_URL
    Agent(name="helper", model="anthropic:claude-sonnet-4-5")   # ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL

Both adapters stream (:class:`StreamingModel`): with ``ModelSettings(stream=True)`` the executor
records each reply as it arrives (``model_chunk`` events, batched), and :meth:`OpenAIModel.stream`
gives the chunks themselves; every failed call raises :class:`executus.ModelCallError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from executus._chunks import (
    ModelChunk,
    PartialReply,
    ReplyAssembler,
    StreamFinished,
    TextDelta,
    ToolCallDelta,
)
from executus._model import StreamingModel
from executus.models._base import ChatAdapter
from executus.models._providers import PROVIDERS, model_from_name

if TYPE_CHECKING:
    from executus.models._anthropic import AnthropicModel
    from executus.models._openai import OpenAIModel

__all__ = [
    "PROVIDERS",
    "AnthropicModel",
    "ChatAdapter",
    "ModelChunk",
    "OpenAIModel",
    "PartialReply",
    "ReplyAssembler",
    "StreamFinished",
    "StreamingModel",
    "TextDelta",
    "ToolCallDelta",
    "model_from_name",
]


def __getattr__(name: str) -> Any:
    # The adapters import their SDK, which is an optional extra: only when asked for.
    if name == "OpenAIModel":
        from executus.models._openai import OpenAIModel

        return OpenAIModel
    if name == "AnthropicModel":
        from executus.models._anthropic import AnthropicModel

        return AnthropicModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
