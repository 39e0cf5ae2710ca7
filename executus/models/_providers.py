"""Model names with a provider prefix (``openai:gpt-4.1-mini``), as the default resolver reads them."""

from __future__ import annotations

from typing import Final

from executus._model import Model

__all__ = ["PROVIDERS", "model_from_name"]

PROVIDERS: Final = ("anthropic", "openai")
"""The prefixes :func:`model_from_name` understands."""


def model_from_name(name: str) -> Model | None:
    """The adapter a prefixed name asks for, configured from the SDK's environment variables;
    None when the name has no known prefix.

    Raises:
        ConfigurationError: the provider's SDK is not installed, or its API key is not set.
    """
    provider, colon, model = name.partition(":")
    if not colon or not model:
        return None
    if provider == "openai":
        from executus.models._openai import OpenAIModel

        return OpenAIModel(model, name=name)
    if provider == "anthropic":
        from executus.models._anthropic import AnthropicModel

        return AnthropicModel(model, name=name)
    return None
