"""Structured output on the real 135M model: JSON that validates, every time; tool calls with valid arguments."""

import asyncio
import json
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from baobab.engine.grammar import ANSWER, MAX_DIGITS, MAX_ITEMS, MAX_STRING, bounded, request_schema
from baobab.engine.llm import parses_as_json
from baobab.engine.local import _tool_choice
from baobab.engine.types import Choice, Request, ToolSpec

Short = Field(max_length=24)
Word = Annotated[str, Field(max_length=16)]
# Every string and number is bounded, so max_tokens always suffices: a 135M model sampling an unbounded
# float can write digits until it runs out of tokens (the grammar allows it), which is not a schema failure.


class Person(BaseModel):
    name: str = Short
    age: int = Field(ge=0, le=150)


class Recipe(BaseModel):
    title: str = Short
    ingredients: list[Word] = Field(max_length=3)
    minutes: int = Field(ge=1, le=600)


class Verdict(BaseModel):
    answer: Literal["yes", "no", "unsure"]
    confidence_percent: int = Field(ge=0, le=100)


class City(BaseModel):
    city: str = Short
    country: str = Short
    population_millions: int = Field(ge=0, le=100)


class Task(BaseModel):
    done: bool
    priority: int = Field(ge=1, le=5)
    tags: list[Literal["home", "work", "urgent"]] = Field(max_length=2)


CASES: list[tuple[type[BaseModel], list[str]]] = [
    (Person, ["Invent a person.", "Describe Ada Lovelace.", "A fictional pirate.", "Your favourite scientist.",
              "A child who likes trains.", "An old sailor.", "A famous painter.", "Someone named Bob.",
              "A 30 year old teacher.", "Make up a wizard."]),
    (Recipe, ["A quick pasta.", "Pancakes.", "A salad.", "Tomato soup.", "Fried rice.", "Guacamole.", "Toast.",
              "A smoothie.", "Omelette.", "Hot chocolate."]),
    (Verdict, ["Is the earth round?", "Is 7 prime?", "Can pigs fly?", "Is water wet?", "Will it rain tomorrow?",
               "Is Python a snake?", "Is 2+2=5?", "Do cats bark?", "Is the sun a star?", "Is chess a sport?"]),
    (City, ["Tell me about Paris.", "Tokyo facts.", "A big city in Brazil.", "The capital of Kenya.", "London.",
            "A city in Canada.", "New York.", "Berlin.", "A city in India.", "Sydney."]),
    (Task, ["Buy milk.", "Finish the report by Friday.", "Fix the leaking tap now.", "Call mum.",
            "Prepare slides for work.", "Water the plants.", "Pay the urgent bill.", "Book a dentist visit.",
            "Clean the garage.", "Reply to the boss."]),
]


def test_fifty_varied_prompts_all_validate_against_their_schema(local_llm: Any) -> None:
    async def one(model: type[BaseModel], prompt: str, seed: int) -> tuple[type[BaseModel], str, str]:
        schema = model.model_json_schema()
        result = await local_llm.complete(
            messages=[{"role": "user", "content": f"{prompt} Answer in JSON."}], max_tokens=160,
            temperature=0.7, seed=seed, response_format={"type": "json_schema", "json_schema": {
                "name": model.__name__, "schema": schema}})
        return model, result.text, result.choices[0].finish_reason

    async def main() -> list[tuple[type[BaseModel], str, str]]:
        jobs = [one(model, prompt, seed) for model, prompts in CASES for seed, prompt in enumerate(prompts)]
        return await asyncio.gather(*jobs)

    results = asyncio.run(main())
    assert len(results) == 50
    for model, text, finish in results:
        assert finish == "stop", (model.__name__, text)
        model.model_validate_json(text)  # raises if the JSON does not fit the schema


NUMBER = {"type": "json_schema", "json_schema": {"name": "n", "schema": {
    "type": "object", "properties": {"n": {"type": "integer"}}}}}
BIG = [{"role": "user", "content": "Write a very large number."}]  # unbounded, the model writes 1000000... to the end


def test_json_cut_short_says_length_and_is_flagged(local_llm: Any) -> None:
    cut = local_llm.complete_sync(messages=BIG, max_tokens=5, temperature=0, response_format=NUMBER).choices[0]
    assert cut.finish_reason == "length" and cut.incomplete_json and not parses_as_json(cut.text)
    last = list(local_llm.stream_sync(messages=BIG, max_tokens=5, temperature=0, response_format=NUMBER))[-1]
    assert last.finish_reason == "length" and last.incomplete_json
    tools = [{"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}]
    call = local_llm.complete_sync(messages=[{"role": "user", "content": "Add 2 and 3."}], max_tokens=3,
                                   temperature=0, tools=tools, tool_choice="required").choices[0]
    assert call.finish_reason == "length" and call.incomplete_json and not call.tool_calls
    whole = local_llm.complete_sync(messages=BIG, max_tokens=80, temperature=0, response_format=NUMBER).choices[0]
    assert not whole.incomplete_json


def test_an_unbounded_integer_ends_within_the_default_digits(local_llm: Any) -> None:
    choice = local_llm.complete_sync(messages=BIG, max_tokens=80, temperature=0, response_format=NUMBER).choices[0]
    assert choice.finish_reason == "stop", choice.text
    assert 0 < abs(json.loads(choice.text)["n"]) < 10**MAX_DIGITS


def test_default_bounds_fill_only_what_the_schema_leaves_open() -> None:
    schema = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 12}, "notes": {"type": "string"}, "code": {"type": "string",
                                                                                        "pattern": "[A-Z]+"},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}}, "size": {"type": ["number", "null"]},
        "age": {"type": "integer", "minimum": 0}, "kind": {"type": "string", "enum": ["a", "b"]},
        "either": {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "string"}, "minItems": 100}]}},
        "$defs": {"Tag": {"type": "string"}}}
    before = json.dumps(schema)
    done = bounded(schema)
    assert json.dumps(schema) == before  # the caller's schema is not changed
    props = done["properties"]
    assert props["name"] == {"type": "string", "maxLength": 12} and props["notes"]["maxLength"] == MAX_STRING
    assert "maxLength" not in props["code"] and props["kind"] == schema["properties"]["kind"]  # type: ignore[index]
    assert props["tags"]["maxItems"] == MAX_ITEMS and done["$defs"]["Tag"]["maxLength"] == MAX_STRING
    largest = 10**MAX_DIGITS - 1
    assert (props["size"]["minimum"], props["size"]["maximum"]) == (-largest, largest)
    assert (props["age"]["minimum"], props["age"]["maximum"]) == (0, largest)
    assert props["either"]["anyOf"][0]["maximum"] == largest and props["either"]["anyOf"][1]["maxItems"] == 100


def test_json_object_mode_gives_json(local_llm: Any) -> None:
    ask = 'Name one colour as JSON: {"colour": ...}'
    result = local_llm.complete_sync(messages=[{"role": "user", "content": ask}],
                                     max_tokens=60, temperature=0, response_format={"type": "json_object"})
    assert result.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(result.text), dict | list)


def test_tool_calls_have_valid_arguments(local_llm: Any) -> None:
    tools = [{"name": "add", "description": "Add two integers.", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"], "additionalProperties": False}},
        {"name": "weather", "description": "Weather for a city.", "parameters": {
            "type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"],
            "additionalProperties": False}}]
    result = local_llm.complete_sync(messages=[{"role": "user", "content": "What is 17 + 25? Use a tool."}],
                                     max_tokens=60, temperature=0, tools=tools, tool_choice="required")
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.text == ""
    call = choice.tool_calls[0]
    arguments = json.loads(call.arguments)
    assert call.name in ("add", "weather")
    assert set(arguments) == ({"a", "b"} if call.name == "add" else {"city"})
    named = local_llm.complete_sync(messages=[{"role": "user", "content": "Is it sunny in Oslo?"}], max_tokens=40,
                                    temperature=0, tools=tools, tool_choice="weather")
    assert named.choices[0].tool_calls[0].name == "weather"


@pytest.mark.parametrize(("text", "called"), [
    ('{"content": "{\\"name\\": \\"population\\", \\"arguments\\": {\\"city\\": \\"Paris\\"}}"}', True),
    ('{"content": "{\\"name\\": \\"weather\\", \\"arguments\\": {}}"}', False),  # not a tool it was offered
    ('{"content": "{\\"name\\": \\"population\\"}"}', False),  # no arguments: an answer that mentions a name
    ('{"content": "2100000"}', False),
])
def test_a_call_written_as_an_answer_becomes_the_call(text: str, called: bool) -> None:
    choice = _tool_choice(Choice(index=0, text=text), {"population"})
    assert bool(choice.tool_calls) is called
    if called:
        assert choice.tool_calls is not None and choice.finish_reason == "tool_calls"
        assert (choice.tool_calls[0].name, json.loads(choice.tool_calls[0].arguments)) == ("population",
                                                                                         {"city": "Paris"})
    else:
        assert choice.text == json.loads(text)["content"]


def test_tools_that_may_not_be_called_keep_answers_in_the_shape_of_the_turns() -> None:
    tools = [ToolSpec(name="population", parameters={"type": "object", "properties": {"city": {"type": "string"}}})]
    asked = [{"role": "user", "content": "How many people live in Paris?"}]
    assert request_schema(Request(messages=asked, tools=tools, tool_choice="none")) == ANSWER
    assert request_schema(Request(messages=asked, tools=tools, tool_choice="auto"))["anyOf"][-1] == ANSWER
    assert request_schema(Request(messages=asked, tool_choice="none")) is None  # no tools: free text
    choice = _tool_choice(Choice(index=0, text='{"content": "2100000"}'), set())
    assert (choice.text, choice.tool_calls) == ("2100000", [])
