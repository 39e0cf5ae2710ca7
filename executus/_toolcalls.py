"""One tool call: bind the model's arguments, invoke the function, render what it returned.

Every failure becomes an error result the model sees on its next step; only a cancellation
the driver asked for propagates. A ``CancelledError`` nobody asked for (the tool awaited a
future that something else cancelled) is the tool failing, not the run being cancelled.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping

from pydantic import JsonValue

from executus._agent import ToolContext
from executus._clock import Clock
from executus._errors import ModelCallError
from executus._events import ErrorInfo
from executus._inputs import NOT_AN_OBJECT
from executus._messages import ToolCall
from executus._storable import clean_text
from executus._tools import InvalidArgumentsError, Tool, render_result

__all__ = ["error_info", "invoke", "requested_cancellation"]


def requested_cancellation() -> bool:
    """Whether the current task was cancelled on purpose (``task.cancel()``), not by a future."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def error_info(error: BaseException) -> ErrorInfo:
    """An exception as a log records it, with text every store can hold; a failed model call
    keeps what the retry policy and a reader of the log need (status, request id, retry-after)."""
    info = ErrorInfo(type=clean_text(type(error).__name__), message=clean_text(str(error)))
    if not isinstance(error, ModelCallError):
        return info
    return ErrorInfo(
        type=info.type,
        message=info.message,
        status=error.status,
        code=None if error.error_type is None else clean_text(error.error_type),
        request_id=None if error.request_id is None else clean_text(error.request_id),
        retry_after=error.retry_after,
        retryable=error.retryable,
    )


async def invoke(
    tool: Tool | None, call: ToolCall, context: ToolContext, tools: Mapping[str, Tool], clock: Clock
) -> tuple[str | None, ErrorInfo | None]:
    """Run one tool call and return its (result, error); exactly one is set.

    Raises:
        asyncio.CancelledError: only when the driver cancelled this call.
    """
    if tool is None:
        known = ", ".join(sorted(tools)) or "none"
        return None, ErrorInfo(
            type="UnknownTool", message=clean_text(f"no tool named {call.name!r} (available: {known})")
        )
    arguments: Mapping[str, JsonValue] = call.arguments
    try:
        if NOT_AN_OBJECT in arguments:
            raise InvalidArgumentsError(
                f"invalid arguments for {call.name}: expected a JSON object, got {arguments[NOT_AN_OBJECT]!r}"
            )
        kwargs, is_async = tool.bind(arguments, context)
        if is_async:
            value = await tool.function(**kwargs)
        else:
            value = await clock.run_blocking(functools.partial(tool.function, **kwargs))
        return clean_text(render_result(value)), None
    except InvalidArgumentsError as invalid:
        return None, ErrorInfo(type="InvalidArguments", message=clean_text(str(invalid)))
    except asyncio.CancelledError as cancelled:
        if requested_cancellation():
            raise
        return None, error_info(cancelled)
    except Exception as raised:
        return None, error_info(raised)
