"""What the OpenAI and Anthropic adapters share: settings, chunk assembly, keys and errors.

An adapter turns a :class:`ModelRequest` into one HTTP call through its provider's official
SDK (whose own retries are off: retries belong to the executor) and hands the reply back as
chunks, streamed or whole; one :class:`ReplyAssembler` builds the response from either. Every
failure leaves as a :class:`ModelCallError`: no SDK or JSON exception, and never the API key.
"""

from __future__ import annotations

import abc
import json
import math
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import Any, ClassVar, Final, Protocol, Self

from executus._chunks import ModelChunk, ReplyAssembler
from executus._errors import ConfigurationError, ModelCallError
from executus._messages import ImagePart, ModelRequest, ModelResponse, ModelSettings

__all__ = ["ChatAdapter", "SdkErrors", "retry_after_seconds", "status_is_retryable"]

DEFAULT_TIMEOUT = 600.0
"""Seconds an HTTP call may take, as both SDKs default to; the run's deadline can cut it sooner."""


_BUSY_ERROR_TYPES: Final = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})
"""Anthropic's error types for a failure on its side (they come with 529, 500, 429 and 504)."""


def status_is_retryable(status: int) -> bool:
    """Whether an HTTP error status may pass if the call is tried again (529 is Anthropic's
    "overloaded")."""
    return status in (408, 409, 429) or status >= 500


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked to wait, from ``retry-after-ms`` or ``retry-after``.

    ``retry-after`` may be seconds or an HTTP date; a date is measured from the response's own
    ``date`` header (the server's clock, not ours), and is None without one. Unreadable values
    (``inf`` and ``nan`` too) are None: a bad header must not turn a 429 into a different failure.
    """
    milliseconds = _seconds(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        until = parsedate_to_datetime(value)
        now = parsedate_to_datetime(headers.get("date", ""))
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, (until - now).total_seconds())


def _seconds(value: str | None) -> float | None:
    """A header's non-negative number, or None when it is absent or not a finite number."""
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return max(0.0, number) if math.isfinite(number) else None


def error_fields(body: object) -> tuple[str | None, str | None]:
    """The provider's error type and message from an error body (OpenAI's and Anthropic's shapes)."""
    if not isinstance(body, Mapping):
        return None, None
    error = body.get("error", body)
    if not isinstance(error, Mapping):
        return None, error if isinstance(error, str) else None
    kind = error.get("code") if isinstance(error.get("code"), str) else error.get("type")
    message = error.get("message")
    return (kind if isinstance(kind, str) else None), (message if isinstance(message, str) else None)


def _is_transport_error(error: Exception) -> bool:
    """Whether ``error`` comes from the SDK's HTTP client (``httpx``, or its successor ``httpx2``)."""
    return any(
        cls.__module__.partition(".")[0].startswith(("httpx", "httpcore")) for cls in type(error).__mro__
    )


class _SdkClient(Protocol):
    """What the adapters use of an SDK's client besides its API calls."""

    @property
    def base_url(self) -> object: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SdkErrors:
    """An SDK's exception classes, which both SDKs name and shape alike."""

    status: type[Exception]
    """An HTTP error status (``status_code``, ``response``, ``body``, ``request_id``)."""
    timeout: type[Exception]
    connection: type[Exception]
    api: type[Exception]
    """Any other error the API reported."""

    @classmethod
    def of(cls, sdk: ModuleType) -> SdkErrors:
        """The classes of an SDK module (``openai``, ``anthropic``), which name them alike."""
        return cls(sdk.APIStatusError, sdk.APITimeoutError, sdk.APIConnectionError, sdk.APIError)


class ChatAdapter(abc.ABC):
    """A :class:`~executus.Model` over one provider's chat API.

    Subclasses make the SDK's client (:meth:`_connect`), make the call and translate its
    replies into chunks (:meth:`_whole`, :meth:`_streamed`), and name the SDK's exception
    classes (``_sdk_errors``).

    Args:
        model: the model's name at the provider, e.g. ``gpt-4.1-mini`` or ``llama3.2``.
        api_key: the key; the SDK's variable (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``) when
            None. Kept only inside the SDK's client: never recorded, logged or shown.
        base_url: the API's URL (e.g. ``http://localhost:11434/v1`` for Ollama); the SDK's
            variable (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``), then the provider's, when None.
        timeout: seconds one HTTP call may take.
        settings: settings for requests that carry none (a run's agent settings win).
        name: the name recorded with runs (default ``provider:model``).

    Raises:
        ConfigurationError: no API key.
    """

    provider: ClassVar[str]
    key_variable: ClassVar[str]
    """The SDK's environment variable for the API key."""
    reply_kind: ClassVar[str]
    """What the API's replies are called, for error messages."""
    _sdk_errors: ClassVar[SdkErrors]
    _client: _SdkClient

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        settings: ModelSettings | None = None,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.settings = settings or ModelSettings()
        """Settings for requests that carry none (a run's agent settings take precedence)."""
        self._name = name or f"{self.provider}:{model}"
        key = api_key if api_key is not None else os.environ.get(self.key_variable)
        if not key:
            raise ConfigurationError(
                f"no {self.provider} API key: set {self.key_variable} or pass api_key= to "
                f"{type(self).__name__} (a local server that ignores keys still needs one, "
                "e.g. api_key='local')"
            )
        # The key lives only inside the SDK's client. None as the URL: the SDK reads its
        # own variable (OPENAI_BASE_URL, ANTHROPIC_BASE_URL), then uses the provider's.
        self._client = self._connect(key, base_url, timeout)

    @abc.abstractmethod
    def _connect(self, api_key: str, base_url: str | None, timeout: float) -> _SdkClient:
        """The SDK's async client, with its retries off (they belong to the executor)."""

    @property
    def name(self) -> str:
        """The name recorded with the run: ``provider:model`` unless given."""
        return self._name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, name={self._name!r})"

    async def request(self, request: ModelRequest) -> ModelResponse:
        """One reply, streamed or whole as the settings say.

        Raises:
            ModelCallError: the call failed, the reply could not be read, or a stream was cut off.
        """
        settings = request.settings or self.settings
        assembler = ReplyAssembler()
        async for _ in self._chunks(request, settings, assembler, stream=settings.stream):
            pass
        try:
            return assembler.response()
        except ValueError as error:
            raise self.error(str(error), error_type="malformed_response") from None

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]:
        """The reply as it arrives: text deltas, tool-call fragments, then :class:`StreamFinished`.

        Raises:
            ModelCallError: the call failed, or the stream ended before the reply finished
                (what arrived was already yielded; its usage is unknown).
        """
        # The generator itself, not one more generator around it: each layer costs every delta.
        return self._chunks(request, request.settings or self.settings, ReplyAssembler(), stream=True)

    async def _chunks(
        self, request: ModelRequest, settings: ModelSettings, assembler: ReplyAssembler, *, stream: bool
    ) -> AsyncIterator[ModelChunk]:
        """The reply's chunks, each added to ``assembler`` as it passes; every failure as a
        :class:`ModelCallError`."""
        self._check_images(request)
        try:
            source = self._streamed(request, settings) if stream else self._whole(request, settings)
            async for chunk in source:
                assembler.add(chunk)
                yield chunk
        except ModelCallError:
            raise
        except Exception as error:
            failure = self._translate(error)
            if failure.error_type == "connection" and assembler.started:
                raise self._interrupted(assembler, failure.detail) from None
            raise failure from None
        if not assembler.finished:
            raise self._interrupted(assembler, "the stream ended")

    def _check_images(self, request: ModelRequest) -> None:
        """Refuse a request whose images' bytes are missing, before anything is sent."""
        for message in request.messages:
            for part in getattr(message, "parts", ()):
                if isinstance(part, ImagePart) and part.sha256 not in request.images:
                    raise self.error(
                        f"the request shows image {part.sha256} but does not carry its bytes",
                        error_type="missing_image",
                    )

    def _interrupted(self, assembler: ReplyAssembler, cause: str) -> ModelCallError:
        """The error for a reply stream that stopped before its end: usage unknown, retryable."""
        partial = assembler.partial()
        return self.error(
            f"{cause} before the reply was complete ({len(partial.text or '')} characters of text "
            f"and {partial.tool_calls} tool calls had arrived; usage unknown)",
            error_type="stream_interrupted",
            retryable=True,
        )

    def _translate(self, error: Exception) -> ModelCallError:
        """The :class:`ModelCallError` for an exception raised by the SDK call or its reply."""
        sdk = self._sdk_errors
        if isinstance(error, sdk.status):
            status_error: Any = error
            return self.status_error(
                status_error.status_code,
                status_error.response.headers,
                status_error.body,
                status_error.request_id,
            )
        if isinstance(error, sdk.timeout):
            return self.error("the request timed out", error_type="timeout", retryable=True)
        if isinstance(error, sdk.connection) or _is_transport_error(error):
            # The SDK wraps the HTTP client's errors, except (Anthropic's) in the middle of a stream.
            cause = error.__cause__ if isinstance(error, sdk.connection) and error.__cause__ else error
            return self.error(
                f"the connection to {self.base_url} failed: {cause or type(cause).__name__}",
                error_type="connection",
                retryable=True,
            )
        if isinstance(error, sdk.api):  # an error event inside a stream
            return self.error(str(error), error_type=getattr(error, "code", None) or "stream_error")
        return self.unreadable(error)

    def error(
        self,
        detail: str,
        *,
        error_type: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
    ) -> ModelCallError:
        """A :class:`ModelCallError` about this adapter's model."""
        return ModelCallError(
            self.provider,
            self.model,
            detail,
            status=status,
            error_type=error_type,
            request_id=request_id,
            retry_after=retry_after,
            retryable=retryable,
        )

    def status_error(
        self, status: int, headers: Mapping[str, str], body: object, request_id: str | None
    ) -> ModelCallError:
        """The error for an HTTP error status, with what the provider said about it.

        An error event inside a stream arrives with the stream's 200: it is retryable when
        the provider's error type says the server was busy or failed.
        """
        error_type, message = error_fields(body)
        in_stream = status < 400
        return self.error(
            message or f"the server answered HTTP {status}",
            error_type=error_type,
            status=None if in_stream else status,
            request_id=request_id,
            retry_after=retry_after_seconds(headers),
            retryable=error_type in _BUSY_ERROR_TYPES if in_stream else status_is_retryable(status),
        )

    def unreadable(self, error: Exception) -> ModelCallError:
        """The error for a reply that is not what the API promises (bad JSON, wrong shapes)."""
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        what = "JSON" if isinstance(error, json.JSONDecodeError) else f"a {self.reply_kind}"
        return self.error(f"the reply is not {what} ({reason})", error_type="malformed_response")

    @property
    def base_url(self) -> str:
        """The URL requests go to."""
        return str(self._client.base_url)

    async def aclose(self) -> None:
        """Close the HTTP connections (``async with`` the adapter does it on exit)."""
        await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @abc.abstractmethod
    def _whole(self, request: ModelRequest, settings: ModelSettings) -> AsyncIterator[ModelChunk]:
        """Make the call without streaming and yield the reply as chunks, ending with
        :class:`StreamFinished`."""

    @abc.abstractmethod
    def _streamed(self, request: ModelRequest, settings: ModelSettings) -> AsyncIterator[ModelChunk]:
        """Make the call streaming and yield chunks as they arrive."""
