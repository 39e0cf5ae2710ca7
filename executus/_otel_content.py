"""Message content in the GenAI conventions' shape: what ``gen_ai.*.messages`` attributes hold.

Only used when content capture is on. Every string goes through the capture's ``redact`` hook;
images are named by their sha256 (the bytes stay in the blob store).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import JsonValue

from executus._events import canonical_json
from executus._messages import AssistantMessage, ImagePart, Message, SystemMessage, ToolCall, ToolMessage

__all__ = ["messages_json", "reply_json", "system_json", "text_messages_json"]


def system_json(prompt: str, redact: Callable[[str], str]) -> str:
    """``gen_ai.system_instructions``: the system prompt as one text part."""
    return canonical_json([{"type": "text", "content": redact(prompt)}])


def text_messages_json(
    role: str, text: str, redact: Callable[[str], str], finish_reason: str | None = None
) -> str:
    """One message of one text part (a run's input, or its output with its finish reason)."""
    message: dict[str, JsonValue] = {"role": role, "parts": [{"type": "text", "content": redact(text)}]}
    if finish_reason is not None:
        message["finish_reason"] = finish_reason
    return canonical_json([message])


def _call(call: ToolCall, redact: Callable[[str], str]) -> JsonValue:
    return {
        "type": "tool_call",
        "id": call.id,
        "name": call.name,
        "arguments": redact(canonical_json(call.arguments)),
    }


def reply_json(
    text: str | None, calls: Sequence[ToolCall], finish_reason: str, redact: Callable[[str], str]
) -> str:
    """``gen_ai.output.messages`` of a model step: its text and the tool calls it asked for."""
    parts: list[JsonValue] = [{"type": "text", "content": redact(text)}] if text is not None else []
    parts += [_call(call, redact) for call in calls]
    return canonical_json([{"role": "assistant", "parts": parts, "finish_reason": finish_reason}])


def messages_json(transcript: Sequence[Message], redact: Callable[[str], str]) -> str:
    """``gen_ai.input.messages``: the chat history a model step was sent (the system prompt apart)."""
    messages: list[JsonValue] = []
    for message in transcript:
        if isinstance(message, SystemMessage):
            continue
        parts: list[JsonValue]
        if isinstance(message, AssistantMessage):
            parts = [{"type": "text", "content": redact(message.text)}] if message.text is not None else []
            parts += [_call(call, redact) for call in message.tool_calls]
        elif isinstance(message, ToolMessage):
            parts = [
                {"type": "tool_call_response", "id": message.call_id, "response": redact(message.content)}
            ]
        else:
            parts = [
                {"type": "file", "modality": "image", "mime_type": part.media_type, "file_id": part.sha256}
                if isinstance(part, ImagePart)
                else {"type": "text", "content": redact(part.text)}
                for part in message.parts
            ]
        messages.append({"role": message.role, "parts": parts})
    return canonical_json(messages)
