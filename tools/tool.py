"""A typed function an agent can call: `@tool` builds its argument model and schema; `Tool.run` never raises."""

import asyncio
import inspect
import json
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from baobab.aio import run_sync
from baobab.errors import BaobabError
from baobab.tools.docstrings import arg_descriptions, summary

MAX_CHARS = 20_000
_NOT_SCHEMAS = {"default", "examples", "const", "enum"}  # values inside a schema that are data, not schemas


class Observation(BaseModel):
    """What a tool call produced, as the model will read it.

    >>> Observation(tool="add", content="3")
    Observation(tool='add', content='3', error=False)
    """

    tool: str
    content: str
    error: bool = False


class ToolError(BaobabError):
    """Raised by a tool to report a clean failure: the observation's content is the message alone."""


class Tool:
    """A callable with a name, a description and a pydantic model of its arguments.

    Calling the tool calls the function; `run` validates JSON arguments and returns an `Observation`.

    >>> def add(a: int, b: int) -> int:
    ...     '''Add two integers.'''
    ...     return a + b
    >>> Tool(add).spec()["parameters"]["required"]
    ['a', 'b']
    """

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None,
                 timeout: float | None = 30.0, args: type[BaseModel] | None = None,
                 parameters: dict[str, Any] | None = None, max_chars: int = MAX_CHARS) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.description = summary(fn.__doc__) if description is None else description
        self.timeout = timeout
        self.max_chars = max_chars
        self.args = args or args_model(fn, self.name)
        self.parameters = parameters if parameters is not None else clean_schema(self.args.model_json_schema())
        self._is_async = inspect.iscoroutinefunction(fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r}, description={self.description!r})"

    def spec(self) -> dict[str, Any]:
        """The tool as a model sees it (the fields of `baobab.engine.ToolSpec`).

        >>> tool(lambda x: x, name="echo", description="Echo x.").spec()["parameters"]
        {'additionalProperties': False, 'properties': {'x': {}}, 'required': ['x'], 'type': 'object'}
        """
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    async def run(self, arguments: str | Mapping[str, Any]) -> Observation:
        """Validate `arguments` (JSON text or a mapping), call the function, and report what happened.

        >>> asyncio.run(tool(lambda a: a * 2, name="double").run('{"a": 21}'))
        Observation(tool='double', content='42', error=False)
        """
        try:
            kwargs = self._validate(arguments)
        except ToolError as exc:
            return self._observe(str(exc), error=True)
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                content = render(await (self.fn(**kwargs) if self._is_async else asyncio.to_thread(self.fn, **kwargs)))
        except ToolError as exc:
            return self._observe(str(exc), error=True)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():  # ours, not a timeout inside the function
                return self._observe(f"{self.name}: timed out after {self.timeout:g} s", error=True)
            return self._observe(f"{type(exc).__name__}: {exc}", error=True)
        return self._observe(content)

    def run_sync(self, arguments: str | Mapping[str, Any]) -> Observation:
        """`run` from sync code.

        >>> tool(lambda: "hi", name="hi").run_sync({}).content
        'hi'
        """
        return run_sync(self.run(arguments))

    def _validate(self, arguments: str | Mapping[str, Any]) -> dict[str, Any]:
        """Parse and validate arguments into keyword arguments, or raise a ToolError naming what is wrong."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise ToolError(f"{self.name}: arguments are not valid JSON ({exc})") from None
            except RecursionError:  # "[[[[..." deeper than Python's stack
                raise ToolError(f"{self.name}: arguments are not valid JSON (nested too deeply)") from None
        if not isinstance(arguments, Mapping):
            raise ToolError(f"{self.name}: arguments must be a JSON object, got {type(arguments).__name__}")
        try:
            model = self.args.model_validate(dict(arguments))
        except ValidationError as exc:
            raise ToolError(f"{self.name}: " + "; ".join(_describe(error) for error in exc.errors())) from None
        return dict(model)  # fields and, for a **kwargs function, the extra arguments

    def _observe(self, content: str, *, error: bool = False) -> Observation:
        if len(content) > self.max_chars:
            cut = len(content) - self.max_chars
            content = f"{content[:self.max_chars]}\n... [{cut} more characters cut]"
        return Observation(tool=self.name, content=content, error=error)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(*, name: str | None = None, description: str | None = None,
         timeout: float | None = 30.0) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(fn: Callable[..., Any] | None = None, /, *, name: str | None = None, description: str | None = None,
         timeout: float | None = 30.0) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function (sync or async) into a `Tool`; the docstring's first paragraph describes it.

    >>> @tool
    ... def add(a: int, b: int) -> int:
    ...     '''Add two integers.'''
    ...     return a + b
    >>> add(1, 2), add.description
    (3, 'Add two integers.')
    """
    if fn is None:
        return lambda f: Tool(f, name=name, description=description, timeout=timeout)
    return Tool(fn, name=name, description=description, timeout=timeout)


def args_model(fn: Callable[..., Any], name: str) -> type[BaseModel]:
    """A pydantic model of `fn`'s parameters: type hints, defaults, `Annotated[..., Field()]`, docstring Args.

    >>> args_model(lambda a, b=2: a, "f").model_fields["b"].default
    2
    """
    hints = typing.get_type_hints(fn, include_extras=True)
    described = arg_descriptions(fn.__doc__)
    fields: dict[str, Any] = {}
    extra: Literal["allow", "forbid"] = "forbid"
    for param in inspect.signature(fn).parameters.values():
        if param.kind is param.VAR_KEYWORD:
            extra = "allow"
            continue
        if param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
            raise TypeError(f"tool {name!r}: parameter {param.name!r} must be passable by keyword")
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        if param.name in described and not _has_description(annotation, default):
            default = Field(default, description=described[param.name])
        fields[param.name] = (annotation, default)
    title = "".join(part.title() for part in name.replace("-", "_").split("_")) + "Args"
    model: type[BaseModel] = create_model(title, __config__=ConfigDict(extra=extra), **fields)
    return model


def clean_schema(schema: Any) -> Any:
    """A JSON schema without pydantic's generated "title" keys (a property named "title" is kept).

    >>> clean_schema({"title": "A", "type": "object", "properties": {"title": {"title": "T", "type": "string"}}})
    {'type': 'object', 'properties': {'title': {'type': 'string'}}}
    """
    if isinstance(schema, list):
        return [clean_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "$defs", "patternProperties") and isinstance(value, dict):
            cleaned[key] = {name: clean_schema(sub) for name, sub in value.items()}
        elif key == "title" and isinstance(value, str):
            continue
        else:
            cleaned[key] = value if key in _NOT_SCHEMAS else clean_schema(value)
    return cleaned


def render(result: Any) -> str:
    """A tool's result as text: strings as they are, anything else as JSON.

    >>> render({"a": [1, 2]}), render("x")
    ('{"a": [1, 2]}', 'x')
    """
    if isinstance(result, str):
        return result
    return json.dumps(to_jsonable_python(result, fallback=str), ensure_ascii=False)


def _has_description(annotation: Any, default: Any) -> bool:
    """Whether a Field given in Annotated metadata or as the default already describes the parameter."""
    metadata = annotation.__metadata__ if typing.get_origin(annotation) is Annotated else ()
    return any(isinstance(item, FieldInfo) and item.description for item in (*metadata, default))


def _describe(error: Mapping[str, Any]) -> str:
    """One validation error as "argument 'a': <what was expected>, got <input>"."""
    where = ".".join(str(part) for part in error["loc"]) or "arguments"
    got = "" if error["type"] == "missing" else f", got {error['input']!r}"
    return f"argument {where!r}: {error['msg']}{got}"
