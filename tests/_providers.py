"""The two model APIs the loopback tests speak: how to make each adapter and write its replies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _loopback import (
    Reply,
    Scripted,
    anthropic_error,
    anthropic_message,
    anthropic_stream,
    openai_completion,
    openai_error,
    openai_stream,
)

from executus.models import AnthropicModel, ChatAdapter, OpenAIModel

__all__ = ["ANTHROPIC", "KEY", "OPENAI", "Provider"]

KEY = "sk-loopback-secret-0123456789"
"""The API key every loopback adapter is given (tests check it is never recorded)."""


@dataclass(frozen=True)
class Provider:
    """One API: how to make its adapter and write its replies."""

    name: str
    path: str
    make: Callable[[str], ChatAdapter]
    whole: Callable[[Scripted], dict[str, Any]]
    stream: Callable[[Scripted], list[str]]
    error: Callable[..., Reply]
    rate_limit_type: str
    finish_reasons: tuple[str, str]
    """The finish reason of a text reply and of a tool-call reply."""


OPENAI = Provider(
    "openai",
    "/v1/chat/completions",
    lambda url: OpenAIModel("gpt-4.1-mini", api_key=KEY, base_url=url + "/v1"),
    openai_completion,
    openai_stream,
    openai_error,
    "rate_limit_exceeded",
    ("stop", "tool_calls"),
)
ANTHROPIC = Provider(
    "anthropic",
    "/v1/messages",
    lambda url: AnthropicModel("claude-sonnet-4-5", api_key=KEY, base_url=url),
    anthropic_message,
    anthropic_stream,
    anthropic_error,
    "rate_limit_error",
    ("end_turn", "tool_use"),
)
