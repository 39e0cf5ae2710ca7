"""The agent under test: a librarian that searches the catalogue before it answers.

``pretend_llm`` stands in for a real model adapter (it decides from the request, like a real
model would). In record modes ``once``/``new``/``all`` it is called; in ``none`` (CI) the
cassette's recorded replies are served instead and it is never called.
"""

from __future__ import annotations

from executus import Agent, IdleCritic, ModelRequest, ModelResponse, ToolCall, ToolMessage, UserMessage, tool
from executus.testing import FunctionModel


@tool
def search(query: str) -> str:
    """Search the library catalogue.

    Args:
        query: words to look for.
    """
    return f"3 books about {query}: Otters at Dusk, The River Otter, Tarka"


def _reply(request: ModelRequest) -> ModelResponse:
    results = [message for message in request.messages if isinstance(message, ToolMessage)]
    if not results:
        question = next(message for message in request.messages if isinstance(message, UserMessage)).text
        topic = question.rstrip("?").split()[-1]
        return ModelResponse(tool_calls=(ToolCall(id="call-1", name="search", arguments={"query": topic}),))
    return ModelResponse(text=f"I found {results[-1].content}.")


pretend_llm = FunctionModel(_reply, name="pretend-llm")

librarian = Agent(
    name="librarian",
    model=pretend_llm,
    system_prompt="You answer questions about the catalogue. Search before you answer.",
    tools=[search],
    max_iterations=5,
    max_runtime=60,
    critic=IdleCritic(idle_after=30),
)
