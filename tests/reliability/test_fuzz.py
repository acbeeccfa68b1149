"""Fuzzing: random YAML configs, graph definitions, tool arguments and server request bodies (to a scripted model,
and, for seeds, tools, tool calls, tool_choice and schemas, to the embedded one) get only the documented, clear
errors; never a traceback of ours, a 500, a stream cut short or a hang. `pytest -m long` runs many more."""

import asyncio
import contextlib
import json
import random
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from baobab.agents import ConfigError, read_config
from baobab.engine import LLM, ScriptedLLM, load_llm
from baobab.graphs import END, START, Graph, GraphError, GraphRecursionError
from baobab.serve.openai_server import create_app
from baobab.tools import tool

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
# 5 s per example: a shared 2-core machine can be slow, yet no example should come near (hangs have their own
# timeouts below); the default run is derandomized and every failure prints the blob that reproduces it
FEW = settings(max_examples=40, deadline=timedelta(seconds=5), derandomize=True, print_blob=True, database=None,
               suppress_health_check=list(HealthCheck))
MANY = settings(max_examples=600, deadline=timedelta(seconds=5), print_blob=True, database=None,
                suppress_health_check=list(HealthCheck))
NESTED = st.integers(1, 3000).map(lambda n: "[" * n + "]" * n)  # deeper than Python's stack, at times

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


# ---- YAML configs -----------------------------------------------------------------------------------------


def mutate(data: Any, rng: random.Random, value: Any) -> Any:
    """`data` with one random place replaced by `value`, deleted, or given an extra key."""
    if isinstance(data, dict) and data and rng.random() < 0.8:
        key = rng.choice(list(data))
        choice = rng.random()
        if choice < 0.2:
            return {k: v for k, v in data.items() if k != key}
        if choice < 0.3:
            return {**data, f"extra_{rng.randrange(9)}": value}
        return {**data, key: mutate(data[key], rng, value)}
    if isinstance(data, list) and data and rng.random() < 0.8:
        i = rng.randrange(len(data))
        return [*data[:i], mutate(data[i], rng, value), *data[i + 1:]]
    return value


def check_config(path: Path) -> None:
    try:
        read_config(path)
    except ConfigError as exc:
        lines = str(exc).splitlines()
        where = re.compile(rf"{re.escape(str(path))}(:\d+)?: \S")  # file:line: field: what
        assert lines and all(where.match(line) for line in lines), str(exc)


def config_mutants(tmp_path: Path, seed: int, value: Any) -> Path:
    source = EXAMPLES[seed % len(EXAMPLES)]
    data = mutate(yaml.safe_load(source.read_text()), random.Random(seed), value)
    path = tmp_path / f"mutant{seed % 7}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def fuzz_configs(tmp_path: Path) -> Any:
    @given(seed=st.integers(0, 10**6), value=json_values)
    def mutated(seed: int, value: Any) -> None:
        check_config(config_mutants(tmp_path, seed, value))

    @given(text=st.text(max_size=200) | st.sampled_from(["{", "agents: [", "- - -", "a: !!python/object:os.system x",
                                                          "\t", "workflow: {type: graph}", "&a [*a]"])
                | NESTED | st.integers(1, 5000).map(lambda n: "- " * n + "x")
                | st.integers(1, 5000).map(lambda n: "a: " + "{b: " * n + "1" + "}" * n))
    def arbitrary(text: str) -> None:
        path = tmp_path / "any.yaml"
        path.write_text(text)
        check_config(path)

    return mutated, arbitrary


@pytest.mark.parametrize("kind", ["mutated", "arbitrary"])
def test_configs_are_valid_or_refused_with_file_line_and_field(tmp_path: Path, kind: str) -> None:
    mutated, arbitrary = fuzz_configs(tmp_path)
    FEW(mutated if kind == "mutated" else arbitrary)()


# ---- graph definitions ------------------------------------------------------------------------------------


class S(BaseModel):
    n: int = 0


NAMES = st.sampled_from(["a", "b", "c", START, END, "", "a b", "__x__"]) | st.text(max_size=4)


@given(nodes=st.lists(NAMES, max_size=4), edges=st.lists(st.tuples(st.lists(NAMES, min_size=1, max_size=2), NAMES),
                                                         max_size=5),
       routes=st.lists(st.tuples(NAMES, st.lists(NAMES, max_size=3), st.integers(0, 3)), max_size=2))
def fuzz_graphs(nodes: list[str], edges: list[tuple[list[str], str]], routes: list[tuple[str, list[str], int]]) -> None:
    graph = Graph(S)
    try:
        for name in nodes:
            graph.node(name, lambda s: {"n": s.n + 1})
        for sources, target in edges:
            graph.edge(sources if len(sources) > 1 else sources[0], target)
        for source, targets, pick in routes:
            graph.route(source, lambda s, t=targets, p=pick: t[p] if p < len(t) else "nowhere", targets)
        app = graph.compile(recursion_limit=12)
    except GraphError:
        return
    with contextlib.suppress(GraphError, GraphRecursionError):  # a route to "nowhere", a loop: both documented
        asyncio.run(asyncio.wait_for(app.arun({"n": 0}), 10))


def test_graph_definitions_compile_or_raise_graph_error() -> None:
    FEW(fuzz_graphs)()


# ---- tool arguments ---------------------------------------------------------------------------------------


class Point(BaseModel):
    x: float
    y: float


@tool
def place(name: str, count: int, where: Point, tags: list[str] | None = None,
          mode: Literal["fast", "slow"] = "fast") -> str:
    """Place things.

    Args:
        name: what to place.
        count: how many.
        where: the point.
        tags: labels.
        mode: fast or slow.
    """
    return f"{count} {name} at {where.x},{where.y} {mode} {tags or []}"


@given(arguments=json_values | st.text(max_size=40) | NESTED | NESTED.map(lambda v: f'{{"where": {v}}}')
       | st.fixed_dictionaries(
    {}, optional={"name": json_values, "count": json_values, "where": json_values | st.fixed_dictionaries(
        {}, optional={"x": json_values, "y": json_values}), "tags": json_values, "mode": json_values}))
def fuzz_tool_arguments(arguments: Any) -> None:
    observation = place.run_sync(arguments if isinstance(arguments, str | dict) else json.dumps(arguments))
    if observation.error:
        assert observation.content.startswith("place: "), observation.content  # names the tool and the field
    else:  # only arguments that fit the signature get through
        assert re.fullmatch(r"-?\d+ .* at \S+,\S+ (fast|slow) \[.*\]", observation.content, re.S), observation


def test_tool_arguments_are_validated_into_observations() -> None:
    FEW(fuzz_tool_arguments)()


# ---- server request bodies --------------------------------------------------------------------------------

def shaped(fields: dict[str, Any]) -> Any:
    """Objects with some of these fields (each a strategy), or any JSON value in their place."""
    return st.fixed_dictionaries({}, optional=fields) | json_values


NAMED = st.sampled_from(["add", "mul", ""]) | json_values  # "add" is the tool TOOLS offer most
SCHEMAS = st.sampled_from([
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, {}, {"type": "string"},
    {"type": "string", "minLength": "3"}, {"type": "integer", "maximum": "big"}, {"type": ["string", [1]]},
    {"type": {"a": 1}}, {"type": "array", "items": [1]}, {"enum": []}, {"type": "nothing"}, {"$ref": "#/nowhere"},
    {"type": "object", "properties": {"a": {"type": "integer", "minimum": 5, "maximum": 1}}}]) | json_values
FUNCTIONS = shaped({"name": NAMED, "description": st.text(max_size=8) | json_values, "parameters": SCHEMAS})
TOOLS = st.lists(shaped({"type": st.just("function") | json_values, "function": FUNCTIONS}), max_size=2) | json_values
TOOL_CALLS = st.lists(shaped({"id": st.just("call_1") | json_values, "type": st.just("function") | json_values,
                              "function": shaped({"name": NAMED, "arguments": st.sampled_from(
                                  ['{"a": 1}', "{}", "[1]", "null", "not json", '{"a": ', "[" * 3000])
                                  | json_values})}), max_size=2) | json_values
TOOL_CHOICES = st.sampled_from(["auto", "none", "required"]) | NAMED | shaped({
    "type": st.just("function") | json_values, "function": shaped({"name": NAMED})})
SEEDS = st.integers() | st.sampled_from([2**45, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64]) | json_values
MESSAGES = st.lists(st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["system", "user", "assistant", "tool", "developer", "robot"]) | json_values,
    "content": json_values | st.lists(shaped({"type": st.just("text") | json_values, "text": json_values})),
    "tool_calls": TOOL_CALLS, "tool_call_id": json_values, "name": json_values}), max_size=3)
BODIES = st.fixed_dictionaries({}, optional={
    "model": json_values, "messages": MESSAGES | json_values, "prompt": json_values, "max_tokens": json_values,
    "max_completion_tokens": json_values, "temperature": json_values, "top_p": json_values, "n": json_values,
    "stop": json_values, "seed": SEEDS, "stream": st.booleans() | json_values, "stream_options": json_values,
    "response_format": json_values, "tools": TOOLS, "tool_choice": TOOL_CHOICES})


async def post(path: str, content: bytes, headers: dict[str, bytes], key: str | None,
               llm: LLM | None = None) -> tuple[httpx.Response, list[str]]:
    """The response to one request to a server of `llm` (a scripted model by default), and its events if it is a
    stream."""
    app = create_app(llm or ScriptedLLM(["ok"], cycle=True), api_key=key)
    async with (httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
                asyncio.timeout(60 if llm else 10),
                client.stream("POST", path, content=content, headers=headers) as response):
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            await response.aread()
            return response, []
        return response, [line async for line in response.aiter_lines() if line.startswith("data: ")]


def check_answer(response: httpx.Response, events: list[str], refused: bool = False) -> None:
    """A result, or an OpenAI-shaped 4xx; a stream that ends with [DONE], any error in it OpenAI-shaped."""
    assert response.status_code in ((401,) if refused else (200, 400, 404)), (response.status_code, response.text[:300])
    if response.status_code != 200:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and isinstance(error["message"], str)
        assert error["message"] and error["type"] == ("authentication_error" if refused else "invalid_request_error")
    elif events or response.headers["content-type"].startswith("text/event-stream"):
        assert events and events[-1] == "data: [DONE]", events[-3:]
        for event in events[:-1]:
            data = json.loads(event.removeprefix("data: "))
            assert "choices" in data or set(data["error"]) == {"message", "type", "param", "code"}, data


@given(path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]),
       body=BODIES.map(lambda b: json.dumps(b).encode()) | json_values.map(lambda v: json.dumps(v).encode())
       | st.binary(max_size=64) | NESTED.map(str.encode) | NESTED.map(lambda v: f'{{"messages": {v}}}'.encode()),
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
       key=st.none() | st.just("k"), authorization=st.sampled_from(["", "Bearer k", "Bearer wrong", "k", "Bearer é"]))
def fuzz_server_bodies(path: str, body: bytes, content_type: str, key: str | None, authorization: str) -> None:
    headers = {"content-type": content_type, "authorization": authorization}
    headers = {name: value.encode() for name, value in headers.items() if value}  # bytes: "é" goes as UTF-8
    response, events = asyncio.run(post(path, body, headers, key))
    check_answer(response, events, refused=key is not None and authorization.removeprefix("Bearer ") != key)


def test_server_bodies_get_a_result_or_an_openai_shaped_4xx() -> None:
    FEW(fuzz_server_bodies)()


ITEMS = st.lists(st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["message", "function_call", "function_call_output", "item_reference"]) | json_values,
    "role": st.sampled_from(["user", "developer", "assistant", "tool"]) | json_values, "call_id": NAMED,
    "content": json_values | st.lists(shaped({"type": st.sampled_from(["input_text", "input_image"]) | json_values,
                                              "text": json_values})),
    "name": NAMED, "arguments": st.sampled_from(['{"a": 1}', "not json", "[" * 3000]) | json_values,
    "output": json_values}), max_size=3)
RESPONSES_BODIES = st.fixed_dictionaries({}, optional={
    "model": json_values, "input": st.text(max_size=8) | ITEMS | json_values, "instructions": json_values,
    "max_output_tokens": json_values, "temperature": json_values, "top_p": json_values,
    "stream": st.booleans() | json_values, "previous_response_id": json_values, "store": json_values,
    "tools": st.lists(shaped({"type": st.just("function") | json_values, "name": NAMED, "parameters": SCHEMAS}),
                      max_size=2) | json_values,
    "tool_choice": st.sampled_from(["auto", "none", "required"]) | shaped({
        "type": st.just("function") | json_values, "name": NAMED}),
    "text": shaped({"format": shaped({"type": st.sampled_from(["json_object", "json_schema"]) | json_values,
                                      "name": json_values, "schema": SCHEMAS})})})


@given(body=RESPONSES_BODIES)
def fuzz_responses_bodies(body: dict[str, Any]) -> None:
    response, events = asyncio.run(post("/v1/responses", json.dumps(body).encode(), {}, None))
    assert response.status_code in (200, 400, 404), (response.status_code, response.text[:300])
    if response.status_code != 200:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    elif events:  # each numbered, the last ending the response
        data = [json.loads(event.removeprefix("data: ")) for event in events]
        assert [d["sequence_number"] for d in data] == list(range(len(data)))
        assert data[-1]["type"] in ("response.completed", "response.incomplete", "response.failed"), data[-1]


def test_responses_bodies_get_a_result_or_an_openai_shaped_4xx() -> None:
    FEW(fuzz_responses_bodies)()


@pytest.fixture(scope="module")
def local_llm() -> Iterator[LLM]:
    """The embedded model, small: 2 slots, a context of 1,024 tokens."""
    llm = load_llm("local:smollm2-135m", slots=2, context=1024)
    yield llm
    asyncio.run(llm.aclose())


CONVERSATIONS = st.lists(st.sampled_from([
    {"role": "user", "content": "Add 2 and 3."}, {"role": "tool", "tool_call_id": "call_1", "content": "5"}])
    | st.fixed_dictionaries({"role": st.just("assistant"), "content": st.none() | st.just("ok"),
                             "tool_calls": TOOL_CALLS}), min_size=1, max_size=3)


def fuzz_engine_bodies(llm: LLM) -> Any:
    """Bodies that pass the server's checks more often (a conversation, a short answer), fuzzed in the fields the
    model reads: the seed it samples with, the tools it is told of and may call, earlier calls and schemas."""

    @given(body=st.fixed_dictionaries({"messages": CONVERSATIONS, "max_tokens": st.integers(1, 3),
                                       "temperature": st.sampled_from([0, 1.0]), "stream": st.booleans()}, optional={
        "seed": SEEDS, "tools": TOOLS, "tool_choice": TOOL_CHOICES, "n": st.integers(1, 3),
        "response_format": shaped({"type": st.sampled_from(["json_object", "json_schema"]) | json_values,
                                   "json_schema": shaped({"name": st.just("s"), "schema": SCHEMAS})})}))
    def engine_bodies(body: dict[str, Any]) -> None:
        content = json.dumps(body).encode()
        check_answer(*asyncio.run(post("/v1/chat/completions", content, {}, None, llm)))

    return engine_bodies


def test_bodies_reaching_the_local_model_get_a_result_or_an_openai_shaped_4xx(local_llm: LLM) -> None:
    settings(FEW, deadline=None)(fuzz_engine_bodies(local_llm))()  # a model's first steps are slow; post() times out


@pytest.mark.long
def test_many_more_fuzz_examples(tmp_path: Path, local_llm: LLM) -> None:
    for target in [*fuzz_configs(tmp_path), fuzz_graphs, fuzz_tool_arguments, fuzz_server_bodies,
                   fuzz_responses_bodies]:
        MANY(target)()
    settings(MANY, deadline=None)(fuzz_engine_bodies(local_llm))()
