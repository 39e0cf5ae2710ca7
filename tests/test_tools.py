"""Tools from typed functions: schemas from signatures and docstrings, argument validation."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel

from executus import ConfigurationError, InvalidArgumentsError, Tool, ToolContext, tool


def _context() -> ToolContext:
    async def no_child(*args: object) -> object:
        raise AssertionError("not used")

    return ToolContext("run", "call", "t", lambda text, images: None, no_child)  # type: ignore[arg-type]


def test_schema_comes_from_the_signature_and_google_docstring() -> None:
    @tool
    def search(ctx: ToolContext, query: str, limit: int = 5, mode: Literal["fast", "deep"] = "fast") -> str:
        """Search the catalogue.

        Longer explanation the model also reads.

        Args:
            query: words to look for,
                over two lines.
            limit: at most this many hits.
            mode: how hard to look.

        Returns:
            The hits.
        """
        return query

    assert search.name == "search"
    assert search.description == "Search the catalogue.\n\nLonger explanation the model also reads."
    assert search.parameters == {
        "additionalProperties": False,
        "properties": {
            "query": {
                "description": "words to look for, over two lines.",
                "title": "Query",
                "type": "string",
            },
            "limit": {
                "default": 5,
                "description": "at most this many hits.",
                "title": "Limit",
                "type": "integer",
            },
            "mode": {
                "default": "fast",
                "description": "how hard to look.",
                "enum": ["fast", "deep"],
                "title": "Mode",
                "type": "string",
            },
        },
        "required": ["query"],
        "type": "object",
    }


def test_bind_validates_and_coerces_json_arguments_and_injects_the_context() -> None:
    @tool(name="add_numbers")
    async def add(ctx: ToolContext, a: int, b: int = 1) -> int:
        """Add."""
        return a + b

    kwargs, is_async = add.bind({"a": "2"}, _context())
    assert is_async
    assert kwargs["a"] == 2
    assert kwargs["b"] == 1
    assert isinstance(kwargs["ctx"], ToolContext)
    with pytest.raises(InvalidArgumentsError, match="a: Field required"):
        add.bind({}, _context())
    with pytest.raises(InvalidArgumentsError, match="c: Extra inputs are not permitted"):
        add.bind({"a": 1, "c": 3}, _context())


class Address(BaseModel):
    street: str
    number: int


def test_pydantic_model_arguments_are_validated_too() -> None:
    @tool
    def deliver(to: Address) -> str:
        """Deliver a parcel."""
        return to.street

    kwargs, _ = deliver.bind({"to": {"street": "Main", "number": "4"}}, _context())
    assert kwargs["to"] == Address(street="Main", number=4)
    assert "$defs" in deliver.parameters


def test_functions_that_cannot_be_described_are_refused() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    def variadic(*items: int) -> int:
        return 0

    with pytest.raises(ConfigurationError, match="parameter 'x' needs a type annotation"):
        Tool.from_function(untyped)
    with pytest.raises(ConfigurationError, match=r"\*args"):
        Tool.from_function(variadic)

    class Local(BaseModel):
        x: int

    def uses_local(item: Local) -> int:
        return item.x

    with pytest.raises(ConfigurationError, match=r"cannot resolve a type annotation.*module level"):
        Tool.from_function(uses_local)
    with pytest.raises(ConfigurationError, match="tool name 'has space'"):
        Tool.from_function(variadic, name="has space")


def test_a_tools_spec_is_made_once_and_follows_changes_to_the_tool() -> None:
    @tool
    def echo(text: str) -> str:
        """Say it back."""
        return text

    first = echo.spec()
    assert echo.spec() is first  # every model request carries it: not validated again each step
    echo.description = "Say it back, louder."
    assert echo.spec().description == "Say it back, louder."
    echo.parameters = {"type": "object", "properties": {}}
    assert echo.spec().parameters == {"type": "object", "properties": {}}
