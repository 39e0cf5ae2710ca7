"""Streamed replies in a live run: the model's chunks in, a few batched inputs to the core out.

When an agent streams (its model settings, or its model's own, say ``stream=True``) and its
model can (:class:`~executus._model.StreamingModel`), the driver reads the reply chunk by chunk.
Recording every delta would be thousands of commits for one long reply, so the deltas are
gathered in a :class:`ChunkBatcher` and handed to the core as one
:class:`~executus._inputs.ModelChunksArrived` (one ``model_chunk`` event, one commit) when the
first of these comes:

* :data:`FLUSH_SECONDS` have passed on the run's clock since the batch's first delta (so a
  stalled stream still shows what it said, and a kill loses at most that much);
* the batch holds :data:`FLUSH_CHARACTERS` characters;
* the stream ends, fails or is cancelled (the last batch goes before ``model_responded`` or
  ``model_failed``);
* any other input is about to reach the core (the driver asks, :meth:`RunDriver._loop`): what
  arrived before a cancel, a deadline or a critic decision is recorded before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from executus._chunks import ModelChunk, ReplyAssembler, TextDelta, ToolCallDelta
from executus._clock import Clock
from executus._errors import ModelCallError
from executus._events import ToolCallFragment
from executus._inputs import ModelChunksArrived
from executus._messages import ModelRequest, ModelResponse, ModelSettings, trusted
from executus._model import Model, StreamingModel
from executus._storable import clean_text

__all__ = ["FLUSH_CHARACTERS", "FLUSH_SECONDS", "ChunkBatcher", "stream_reply", "streaming_model"]

FLUSH_SECONDS: Final = 0.5
"""A batch of streamed deltas is recorded at most this long (on the run's clock) after its first
delta arrived."""
FLUSH_CHARACTERS: Final = 2048
"""A batch of streamed deltas is recorded once it holds this many characters."""


def streaming_model(model: Model, settings: ModelSettings | None) -> StreamingModel | None:
    """``model``, when this call streams: the request's settings (the agent's), else the model's
    own default settings, ask for a stream, and the model can give one."""
    effective = settings if settings is not None else getattr(model, "settings", None)
    if isinstance(effective, ModelSettings) and effective.stream and isinstance(model, StreamingModel):
        return model
    return None


class _Fragment:
    """One call's fragments gathered within a batch."""

    __slots__ = ("arguments", "id", "index", "name")

    def __init__(self, delta: ToolCallDelta) -> None:
        self.index = delta.index
        self.id = delta.id
        self.name = delta.name
        self.arguments = [delta.arguments]


class ChunkBatcher:
    """Gathers one step's deltas and hands them to ``put`` as batched inputs (see the module).

    Args:
        step: the step streamed.
        clock: the run's clock (a batch's time, and the flush timer).
        put: takes each batch's input (the driver's inbox).
        seconds: see :data:`FLUSH_SECONDS` (its value when None).
        characters: see :data:`FLUSH_CHARACTERS` (its value when None).
    """

    def __init__(
        self,
        step: int,
        clock: Clock,
        put: Callable[[ModelChunksArrived], None],
        *,
        seconds: float | None = None,
        characters: int | None = None,
    ) -> None:
        self.step = step
        self._clock = clock
        self._put = put
        self._seconds = FLUSH_SECONDS if seconds is None else seconds
        self._characters = FLUSH_CHARACTERS if characters is None else characters
        self._text: list[str] = []
        self._calls: list[_Fragment] = []
        self._size = 0
        self._reply = ReplyAssembler()
        """The whole reply, fed a batch at a time (a delta at a time would cost every delta)."""
        self._timer: asyncio.Task[None] | None = None

    def add(self, chunk: ModelChunk) -> None:
        """Take one chunk (``StreamFinished`` carries nothing to record: the reply has it)."""
        # By kind, not isinstance (an ABC check on pydantic classes): this runs for every delta.
        if chunk.kind == "text":
            text = chunk.text
            if not text:
                return
            self._text.append(text)
            self._size += len(text)
        elif chunk.kind == "tool_call":
            last = self._calls[-1] if self._calls else None
            if last is not None and last.index == chunk.index and chunk.id is None and chunk.name is None:
                last.arguments.append(chunk.arguments)
            else:
                self._calls.append(_Fragment(chunk))
            self._size += len(chunk.arguments) + len(chunk.name or "")
        else:
            self._reply.add(chunk)
            return
        if self._size >= self._characters:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(
                self._flush_later(), name=f"executus-stream-flush-{self.step}"
            )

    def take(self) -> ModelChunksArrived | None:
        """The batch gathered so far as one input, at the time it is taken (None if empty); the
        batcher starts afresh."""
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        if not self._text and not self._calls:
            return None
        text = "".join(self._text)
        if text:
            self._reply.add(TextDelta(text=text))
        arguments = ["".join(call.arguments) for call in self._calls]
        for call, joined in zip(self._calls, arguments, strict=True):
            self._reply.add(ToolCallDelta(index=call.index, id=call.id, name=call.name, arguments=joined))
        batch = ModelChunksArrived(
            at=self._clock.now(),
            step=self.step,
            text=clean_text(text),
            tool_calls=tuple(
                trusted(
                    ToolCallFragment,
                    index=call.index,
                    id=None if call.id is None else clean_text(call.id),
                    name=None if call.name is None else clean_text(call.name),
                    arguments=clean_text(joined),
                )
                for call, joined in zip(self._calls, arguments, strict=True)
            ),
        )
        self._text, self._calls, self._size = [], [], 0
        return batch

    def response(self) -> ModelResponse:
        """The reply the batches handed over make (once the stream finished and was flushed).

        Raises:
            ValueError: the stream has not finished, or a tool call's arguments are not a JSON
                object.
        """
        return self._reply.response()

    def flush(self) -> None:
        """Hand the batch gathered so far to ``put`` (nothing if it is empty)."""
        batch = self.take()
        if batch is not None:
            self._put(batch)

    async def _flush_later(self) -> None:
        await self._clock.sleep(self._seconds)
        self.flush()


async def stream_reply(model: StreamingModel, request: ModelRequest, batcher: ChunkBatcher) -> ModelResponse:
    """Read the reply's stream into ``batcher``; the last batch is handed over before this
    returns or raises.

    Raises:
        ModelCallError: the reply's tool-call arguments are not a JSON object.
        Exception: whatever the model's stream raised (what arrived before stays recorded).
    """
    add = batcher.add
    try:
        async for chunk in model.stream(request):
            add(chunk)
    finally:
        batcher.flush()
    try:
        return batcher.response()
    except ValueError as error:
        provider, _, name = model.name.rpartition(":")
        raise ModelCallError(provider or "model", name, str(error), error_type="malformed_response") from None
