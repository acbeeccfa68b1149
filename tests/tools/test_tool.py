"""@tool: argument models and schemas from signatures, and `run` turning every failure into an Observation."""

import asyncio
import time
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from baobab.tools import Observation, Tool, ToolError, tool
from baobab.tools.docstrings import arg_descriptions, summary


@tool
def add(a: int, b: int = 2) -> int:
    """Add two integers.

    The second paragraph is not part of the description.

    Args:
        a: the first
            summand.
        b (int): the second summand.
    """
    return a + b


class Point(BaseModel):
    x: float
    y: float


@tool(name="norm", description="Length of a vector.", timeout=5)
async def norm_tool(point: Point, scale: Annotated[float, Field(description="a factor", gt=0)] = 1.0) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"length": (point.x**2 + point.y**2) ** 0.5 * scale, "kind": type(point).__name__}


def run(t: Tool, arguments: Any) -> Observation:
    return asyncio.run(t.run(arguments))


def test_name_description_and_direct_call() -> None:
    assert isinstance(add, Tool)
    assert (add.name, add.description) == ("add", "Add two integers.")
    assert add(1, 2) == 3 and add(a=5) == 7
    assert (norm_tool.name, norm_tool.description, norm_tool.timeout) == ("norm", "Length of a vector.", 5)


def test_spec_is_a_clean_json_schema() -> None:
    assert add.spec() == {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "description": "the first summand."},
                "b": {"type": "integer", "default": 2, "description": "the second summand."},
            },
            "required": ["a"],
            "additionalProperties": False,
        },
    }
    params = norm_tool.spec()["parameters"]
    assert params["properties"]["scale"] == {"type": "number", "description": "a factor", "exclusiveMinimum": 0,
                                             "default": 1.0}
    assert params["$defs"]["Point"]["properties"]["x"] == {"type": "number"}
    assert "title" not in str(params)


def test_a_property_called_title_is_kept() -> None:
    @tool
    def note(title: str) -> str:
        """Make a note."""
        return title

    assert note.spec()["parameters"]["properties"] == {"title": {"type": "string"}}


def test_run_takes_json_text_or_a_mapping() -> None:
    assert run(add, '{"a": 1, "b": 2}') == Observation(tool="add", content="3", error=False)
    assert run(add, {"a": "4"}) == Observation(tool="add", content="6")  # lax validation, as models send numbers
    assert add.run_sync({"a": 1}).content == "3"


def test_validation_errors_name_the_field_and_what_was_expected() -> None:
    bad = run(add, {"a": "x", "b": 2})
    assert bad.error and bad.tool == "add"
    assert bad.content.startswith("add: argument 'a': Input should be a valid integer")
    assert bad.content.endswith("got 'x'")
    assert run(add, {}).content == "add: argument 'a': Field required"
    assert run(add, {"a": 1, "c": 3}).content == "add: argument 'c': Extra inputs are not permitted, got 3"
    nested = run(norm_tool, {"point": {"x": 1}})
    assert nested.error and "argument 'point.y': Field required" in nested.content
    assert "greater than 0" in run(norm_tool, {"point": {"x": 1, "y": 1}, "scale": -1}).content


def test_malformed_arguments_are_observations() -> None:
    assert run(add, "{not json").content.startswith("add: arguments are not valid JSON")
    assert run(add, "[1, 2]").content == "add: arguments must be a JSON object, got list"
    assert run(add, "").content == "add: argument 'a': Field required"


def test_async_tool_gets_validated_objects_and_returns_json() -> None:
    obs = run(norm_tool, '{"point": {"x": 3, "y": 4}, "scale": 2}')
    assert obs == Observation(tool="norm", content='{"length": 10.0, "kind": "Point"}')


def test_exceptions_become_error_observations() -> None:
    @tool
    def divide(a: float, b: float) -> float:
        """Divide."""
        if b == 0:
            raise ValueError("b must not be zero")
        return a / b

    @tool
    def fetch(key: str) -> str:
        """Fetch."""
        raise ToolError(f"no entry named {key!r}")

    assert run(divide, {"a": 1, "b": 0}) == Observation(tool="divide", content="ValueError: b must not be zero",
                                                        error=True)
    assert run(fetch, {"key": "k"}) == Observation(tool="fetch", content="no entry named 'k'", error=True)


def test_timeouts_for_sync_and_async_functions() -> None:
    @tool(timeout=0.2)
    def slow(seconds: float) -> str:
        """Sleep in a thread."""
        time.sleep(seconds)
        return "done"

    @tool(timeout=0.2)
    async def slow_async(seconds: float) -> str:
        """Sleep on the loop."""
        await asyncio.sleep(seconds)
        return "done"

    async def timed(t: Tool) -> tuple[Observation, float]:
        start = time.perf_counter()
        return await t.run({"seconds": 1}), time.perf_counter() - start

    for t in (slow, slow_async):
        obs, seconds = asyncio.run(timed(t))  # a sync function's thread finishes on its own: asyncio.run waits
        assert obs == Observation(tool=t.name, content=f"{t.name}: timed out after 0.2 s", error=True)
        assert seconds < 0.8
        assert run(t, {"seconds": 0}).content == "done"

    @tool(timeout=None)
    def own_timeout() -> str:
        """A socket timing out inside the function."""
        raise TimeoutError("timed out reading")

    assert run(own_timeout, {}) == Observation(tool="own_timeout", content="TimeoutError: timed out reading",
                                               error=True)


def test_sync_functions_run_off_the_event_loop() -> None:
    @tool
    def blocking() -> str:
        """Block for a while."""
        time.sleep(0.3)
        return "ok"

    async def both() -> float:
        start = time.perf_counter()
        await asyncio.gather(blocking.run({}), blocking.run({}), blocking.run({}))
        return time.perf_counter() - start

    assert asyncio.run(both()) < 0.8  # three 0.3 s sleeps overlapped


def test_long_results_are_cut_and_say_so() -> None:
    @tool
    def big(n: int) -> str:
        """Return n characters."""
        return "x" * n

    obs = run(big, {"n": 50_000})
    assert obs.content.startswith("x" * 20_000)
    assert obs.content.endswith("[30000 more characters cut]")
    assert run(big, {"n": 10}).content == "x" * 10


def test_results_render_as_json() -> None:
    @tool
    def point() -> Point:
        """A point."""
        return Point(x=1, y=2)

    @tool
    def nothing() -> None:
        """Nothing."""

    assert run(point, {}).content == '{"x": 1.0, "y": 2.0}'
    assert run(nothing, {}).content == "null"


def test_kwargs_functions_accept_extra_arguments() -> None:
    @tool
    def echo(**fields: Any) -> dict[str, Any]:
        """Echo."""
        return fields

    assert run(echo, {"a": 1, "b": [2]}).content == '{"a": 1, "b": [2]}'


def test_positional_only_parameters_are_refused() -> None:
    def f(a: int, /) -> int:
        return a

    with pytest.raises(TypeError, match="'a' must be passable by keyword"):
        tool(f)


def test_docstrings_google_and_numpy() -> None:
    numpy_doc = """Scale a value.

    Parameters
    ----------
    value : float
        The value
        to scale.
    factor : float

        The factor.

    Returns
    -------
    float
    """
    assert summary(numpy_doc) == "Scale a value."
    assert arg_descriptions(numpy_doc) == {"value": "The value to scale.", "factor": "The factor."}
    assert arg_descriptions("No sections.") == {}
    assert arg_descriptions(add.fn.__doc__) == {"a": "the first summand.", "b": "the second summand."}
