"""Tools: typed Python functions the model can call.

A tool's JSON schema comes from its signature and Google-style docstring; pydantic validates
the model's JSON arguments against the same signature before the function runs. A function
may take a :class:`ToolContext` parameter (any name, annotated with the type) to learn its run
and call ids, attach images for the model's next step, or start a child run.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, create_model
from pydantic_core import to_jsonable_python

from executus._errors import ConfigurationError, ExecutusError
from executus._events import canonical_json
from executus._messages import ToolSpec

__all__ = ["ContextParameter", "InvalidArgumentsError", "Tool", "tool"]


class InvalidArgumentsError(ExecutusError):
    """The model's arguments do not match the tool's signature (reported to the model)."""


class ContextParameter:
    """Base of the types a tool function may take to learn about its run (:class:`ToolContext`).

    A parameter annotated with a subclass is filled in by the executor, not by the model.
    ``ToolContext`` itself lives with the agent types (it starts child runs of an ``Agent``),
    so that this module need not import them.
    """

    __slots__ = ()


_ARGS_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^\s+(\*{0,2}\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its description and per-argument descriptions."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    arguments: dict[str, str] = {}
    current: str | None = None
    in_args = False
    for line in lines:
        if _ARGS_SECTION.match(line):
            in_args = True
            continue
        if in_args:
            if line and not line[0].isspace():
                in_args = False  # the next section (Returns:, Raises:) starts
            elif match := _ARG_LINE.match(line):
                current = match.group(1).lstrip("*")
                arguments[current] = match.group(2).strip()
                continue
            elif current and line.strip():
                arguments[current] = f"{arguments[current]} {line.strip()}"
                continue
            else:
                continue
        if not in_args and not arguments:
            description.append(line)
    return "\n".join(description).strip(), arguments


class Tool:
    """A function the model can call, with the schema the model is shown.

    Build one with :func:`tool` or :meth:`Tool.from_function`.
    """

    __slots__ = (
        "_args_model",
        "_context_param",
        "_is_async",
        "_spec",
        "description",
        "function",
        "idempotent",
        "name",
        "parameters",
    )

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str,
        description: str,
        args_model: type[BaseModel],
        context_param: str | None,
        idempotent: bool = False,
    ) -> None:
        self.function = function
        self.idempotent = idempotent
        """Safe to run twice with the same arguments: a call in flight when its process stopped
        is run again on recovery (recorded in the run's agent spec)."""
        self.name = name
        self.description = description
        self._args_model = args_model
        self._context_param = context_param
        self._is_async = inspect.iscoroutinefunction(function)
        schema = args_model.model_json_schema()
        schema.pop("title", None)
        self.parameters: dict[str, JsonValue] = schema
        self._spec: ToolSpec | None = None

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = False,
    ) -> Tool:
        """Make a tool of a typed function (sync or async).

        ``idempotent=True`` declares that running it twice with the same arguments does no
        harm: a call in flight when its worker died is then run again on recovery, instead of
        being answered "interrupted" for the model to decide.

        Raises:
            ConfigurationError: a parameter has no type annotation, or takes ``*args``.
        """
        tool_name = name or function.__name__
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", tool_name):
            raise ConfigurationError(f"tool name {tool_name!r} must be 1-64 letters, digits, _ or -")
        summary, argument_docs = _parse_docstring(function.__doc__)
        try:
            hints = get_type_hints(function)
        except NameError as error:
            raise ConfigurationError(
                f"tool {tool_name}: cannot resolve a type annotation ({error}); "
                "define the types a tool uses at module level"
            ) from None
        fields: dict[str, Any] = {}
        context_param = None
        for parameter in inspect.signature(function).parameters.values():
            if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise ConfigurationError(
                    f"tool {tool_name}: *args and **kwargs cannot be described to a model"
                )
            annotation = hints.get(parameter.name, inspect.Parameter.empty)
            if isinstance(annotation, type) and issubclass(annotation, ContextParameter):
                context_param = parameter.name
                continue
            if annotation is inspect.Parameter.empty:
                raise ConfigurationError(
                    f"tool {tool_name}: parameter {parameter.name!r} needs a type annotation"
                )
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            fields[parameter.name] = (
                annotation,
                Field(default, description=argument_docs.get(parameter.name)),
            )
        args_model = create_model(f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        return cls(
            function,
            name=tool_name,
            description=description if description is not None else summary,
            args_model=args_model,
            context_param=context_param,
            idempotent=idempotent,
        )

    def spec(self) -> ToolSpec:
        """What the model is told about this tool."""
        # Every model request carries it: validated once, again only if the tool was changed.
        spec = self._spec
        if (
            spec is None
            or spec.name != self.name
            or spec.description != self.description
            or spec.parameters != self.parameters
        ):
            spec = self._spec = ToolSpec(
                name=self.name, description=self.description, parameters=self.parameters
            )
        return spec

    def bind(
        self, arguments: Mapping[str, JsonValue], context: ContextParameter
    ) -> tuple[dict[str, Any], bool]:
        """Validate the model's arguments into keyword arguments for the function.

        Returns:
            The keyword arguments, and whether the function is a coroutine function.

        Raises:
            InvalidArgumentsError: the arguments do not fit the signature.
        """
        try:
            validated = self._args_model.model_validate(dict(arguments))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in problem['loc']) or 'arguments'}: {problem['msg']}"
                for problem in error.errors()
            )
            raise InvalidArgumentsError(f"invalid arguments for {self.name}: {problems}") from None
        kwargs = {name: getattr(validated, name) for name in type(validated).model_fields}
        if self._context_param is not None:
            kwargs[self._context_param] = context
        return kwargs, self._is_async

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


@overload
def tool(function: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, idempotent: bool = False
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    idempotent: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Decorator: turn a typed function into a :class:`Tool`.

    Usable bare (``@tool``) or with options (``@tool(name="search")``,
    ``@tool(idempotent=True)``: see :meth:`Tool.from_function`).
    """
    if function is not None:
        return Tool.from_function(function, name=name, description=description, idempotent=idempotent)

    def decorate(inner: Callable[..., Any]) -> Tool:
        return Tool.from_function(inner, name=name, description=description, idempotent=idempotent)

    return decorate


def render_result(value: object) -> str:
    """The text a model sees for a tool's return value."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return canonical_json(to_jsonable_python(value))
