"""Model names with a provider prefix (``openai:gpt-4.1-mini``), as the default resolver reads them."""

from __future__ import annotations

from typing import Final

from executus._model import Model, register_prefix

__all__ = ["PROVIDERS", "model_from_name"]


def _openai(name: str) -> Model:
    from executus.models._openai import OpenAIModel

    return OpenAIModel(name.partition(":")[2], name=name)


def _anthropic(name: str) -> Model:
    from executus.models._anthropic import AnthropicModel

    return AnthropicModel(name.partition(":")[2], name=name)


_FACTORIES: Final = {"anthropic": _anthropic, "openai": _openai}

PROVIDERS: Final = tuple(_FACTORIES)
"""The prefixes :func:`model_from_name` and every ``ModelRegistry`` understand."""

for _prefix, _factory in _FACTORIES.items():
    register_prefix(_prefix, _factory)


def model_from_name(name: str) -> Model | None:
    """The adapter a prefixed name asks for, configured from the SDK's environment variables;
    None when the name has no known prefix.

    Raises:
        ConfigurationError: the provider's SDK is not installed, or its API key is not set.
    """
    prefix, colon, model = name.partition(":")
    factory = _FACTORIES.get(prefix) if colon and model else None
    return factory(name) if factory else None
