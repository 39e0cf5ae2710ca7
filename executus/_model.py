"""The model seam: the protocol every model adapter implements, and name resolution."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Protocol, TypeAlias, runtime_checkable

from executus._chunks import ModelChunk
from executus._errors import UnknownModelError
from executus._messages import ModelRequest, ModelResponse

__all__ = ["Model", "ModelFactory", "ModelRegistry", "ModelResolver", "StreamingModel", "register_prefix"]


@runtime_checkable
class Model(Protocol):
    """A language model, as the executor sees it: one async call per step."""

    @property
    def name(self) -> str:
        """The name recorded in the run's agent snapshot."""
        ...

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Answer one step. Raising ends the run as an error (recorded as ``model_failed``)."""
        ...


@runtime_checkable
class StreamingModel(Model, Protocol):
    """A model that can also hand its reply over as it arrives.

    When an agent streams (``ModelSettings(stream=True)``) and its model is a
    ``StreamingModel``, the executor calls :meth:`stream` instead of ``request`` and records
    what arrives as ``model_chunk`` events, in batches. Both adapters in
    :mod:`executus.models` are streaming models.
    """

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]:
        """The reply as chunks: text deltas and tool-call fragments, then ``StreamFinished``.
        Raising ends the call as failed; what was yielded before stays recorded."""
        ...


ModelResolver: TypeAlias = Callable[[str], Model]
"""Turns an agent's model name (or tier) into a model; raises :class:`UnknownModelError`."""


ModelFactory: TypeAlias = Callable[[str], Model]
"""Makes the model a prefixed name (``openai:gpt-4.1-mini``) asks for, from the whole name."""

_PREFIXES: dict[str, ModelFactory] = {}


def register_prefix(prefix: str, factory: ModelFactory) -> None:
    """Let every :class:`ModelRegistry` make ``factory(name)`` for names ``prefix:...``.

    The adapters' layer (``executus.models``, which ``import executus`` loads) registers
    ``openai`` and ``anthropic``; the core knows no provider.
    """
    _PREFIXES[prefix] = factory


class ModelRegistry:
    """A resolver over a set of models, looked up by name.

    A name not registered but prefixed with a provider (``openai:gpt-4.1-mini``,
    ``anthropic:claude-sonnet-4-5``) is made into that provider's adapter, configured from its
    SDK's environment variables, and kept for the next run until :meth:`aclose`.
    """

    def __init__(self, models: Mapping[str, Model] | Iterable[Model] = ()) -> None:
        self._models: dict[str, Model] = (
            dict(models) if isinstance(models, Mapping) else {model.name: model for model in models}
        )
        self._made: dict[str, Model] = {}
        """The models this registry made from a provider prefix: its own to close."""

    def register(self, model: Model, name: str | None = None) -> None:
        """Make ``model`` available under ``name`` (default: its own name)."""
        self._models[name or model.name] = model

    def __call__(self, name: str) -> Model:
        model = self._models.get(name)
        if model is None:
            prefix, colon, rest = name.partition(":")
            factory = _PREFIXES.get(prefix) if colon and rest else None
            if factory is None:
                raise UnknownModelError(name, list(self._models))
            model = self._models[name] = self._made[name] = factory(name)
        return model

    async def aclose(self) -> None:
        """Close the adapters this registry made from prefixed names (their HTTP connections)
        and forget them, so that a later run makes new ones. Models registered by hand are
        their owner's to close."""
        made, self._made = self._made, {}
        for name, model in made.items():
            if self._models.get(name) is model:
                del self._models[name]
            close: Callable[[], Awaitable[None]] | None = getattr(model, "aclose", None)
            if close is not None:
                await close()
