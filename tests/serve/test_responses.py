"""The Responses API of `baobab serve` (/v1/responses) driven through the official openai client on the real embedded
model: right text answers, tool calls and their results, JSON-schema answers, streamed and not; bad input gets an
OpenAI-shaped 400 naming the field. A scripted model behind the app shows what reaches the engine."""

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from baobab.aio import run_sync
from baobab.engine import Choice, Message, ScriptedLLM, ToolCall
from baobab.serve.openai_server import create_app

MODEL = "local:smollm2-135m"
FRANCE = "What is the capital of France?"
CITY = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"],
        "additionalProperties": False}
WEATHER: Any = {"type": "function", "name": "get_weather", "description": "Get the current weather in a city.",
                "parameters": CITY, "strict": True}


class Capital(BaseModel):
    capital: str = Field(max_length=20)


@pytest.fixture(scope="module")
def client(server: str, server_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server, api_key=server_key)


def test_a_right_text_answer_streamed_and_not(client: openai.OpenAI) -> None:
    reply = client.responses.create(model=MODEL, input=FRANCE, max_output_tokens=20, temperature=0)
    assert reply.status == "completed" and "Paris" in reply.output_text, reply
    assert reply.usage is not None and reply.usage.input_tokens > 10 and reply.usage.output_tokens > 0
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens
    asked: Any = [{"role": "user", "content": [{"type": "input_text", "text": FRANCE}]}]
    with client.responses.stream(model="gpt-4o-mini", input=asked, max_output_tokens=20, temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == reply.output_text and final.model == MODEL  # answered as itself
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events if e.type != "response.output_text.delta"] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"]
    cut = client.responses.create(model=MODEL, input=FRANCE, max_output_tokens=2, temperature=0)
    assert cut.status == "incomplete" and cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens" and cut.usage and cut.usage.output_tokens == 2
    streamed_cut = list(client.responses.create(model=MODEL, input=FRANCE, max_output_tokens=2, temperature=0,
                                                stream=True))
    assert streamed_cut[-1].type == "response.incomplete" and streamed_cut[-1].response.output_text == cut.output_text


def test_a_tool_call_then_its_result_streamed_and_not(client: openai.OpenAI) -> None:
    asked: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.responses.create(model=MODEL, input=asked, tools=[WEATHER], tool_choice="required",
                                     max_output_tokens=40, temperature=0)
    [call] = called.output
    assert call.type == "function_call" and call.name == "get_weather" and called.status == "completed"
    arguments = json.loads(call.arguments)
    jsonschema.validate(arguments, CITY)
    assert arguments == {"city": "Paris"}
    forced: Any = {"type": "function", "name": "get_weather"}
    with client.responses.stream(model=MODEL, input=asked, tools=[WEATHER], tool_choice=forced, max_output_tokens=40,
                                 temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    [streamed] = final.output
    assert streamed.type == "function_call" and json.loads(streamed.arguments) == {"city": "Paris"}
    assert "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta") == streamed.arguments
    assert [e.arguments for e in events if e.type == "response.function_call_arguments.done"] == [streamed.arguments]
    result: Any = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 24 degrees Celsius."}
    answer = client.responses.create(model=MODEL, input=[*asked, *called.output, result], tools=[WEATHER],
                                     tool_choice="none", max_output_tokens=30, temperature=0)
    assert [item.type for item in answer.output] == ["message"] and "sunny" in answer.output_text.lower(), answer


def test_a_json_schema_answer_streamed_and_not(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(model=MODEL, input=FRANCE, text_format=Capital, max_output_tokens=30,
                                    temperature=0)
    assert parsed.output_parsed == Capital(capital="Paris")
    schema = Capital.model_json_schema() | {"additionalProperties": False}
    form: Any = {"format": {"type": "json_schema", "name": "capital", "schema": schema, "strict": True}}
    events = list(client.responses.create(model=MODEL, input=FRANCE, text=form, max_output_tokens=30, temperature=0,
                                          stream=True))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    jsonschema.validate(json.loads(text), schema)
    assert json.loads(text) == {"capital": "Paris"} and events[-1].type == "response.completed"
    assert events[-1].response.text.format.type == "json_schema"  # echoed


def test_openai_shaped_errors_name_the_field(server: str, server_key: str, client: openai.OpenAI) -> None:
    assert httpx.post(f"{server}/responses", json={"input": "hi"}).status_code == 401
    auth = {"Authorization": f"Bearer {server_key}"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "input"),
        ({"input": []}, "input"),
        ({"input": "hi", "tools": [{"type": "function", "name": "f", "parameters": "x"}]}, "tools.0.parameters"),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools.0.type"),
        ({"input": "hi", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "1"}]}, "input.0.call_id"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
         "input.0.content.0.type"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type"),
        ({"input": "hi", "temperature": 3}, "temperature"),
        ({"input": "hi", "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
        ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ]
    for payload, param in cases:
        response = httpx.post(f"{server}/responses", json=payload, headers=auth)
        error = response.json()["error"]
        assert response.status_code == 400 and error["type"] == "invalid_request_error", payload
        assert error["param"] == param and error["message"].startswith(param), error
    with pytest.raises(openai.BadRequestError, match="stores no responses") as stored:
        client.responses.create(model=MODEL, input="hi", previous_response_id="resp_1")
    assert "previous_response_id" in str(stored.value)
    with pytest.raises(openai.NotFoundError, match="The model 'gpt-5' does not exist"):
        client.responses.create(model="gpt-5", input="hi", max_output_tokens=5)


def test_a_prompt_too_long_for_the_context_is_a_400_or_a_failed_stream(client: openai.OpenAI) -> None:
    huge = "word " * 5000  # a token each: more than the 4,096 of the context
    with pytest.raises(openai.BadRequestError, match="does not fit the context"):
        client.responses.create(model=MODEL, input=huge, max_output_tokens=5)
    events = list(client.responses.create(model=MODEL, input=huge, max_output_tokens=5, stream=True))
    assert [e.type for e in events] == ["response.created", "response.in_progress", "error", "response.failed"]
    assert events[-1].response.status == "failed" and "does not fit" in str(events[-1].response.error)


# ---- what reaches the engine (a scripted model behind the app) ---------------------------------------------

def respond(llm: ScriptedLLM, *bodies: dict[str, Any]) -> list[httpx.Response]:
    """Each body POSTed to /v1/responses of a server of `llm`, in turn, without a socket."""
    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(llm)), base_url="http://t") as http:
            return [await http.post("/v1/responses", json=body) for body in bodies]

    return run_sync(scenario())


def test_input_items_become_the_conversation_the_engine_sees() -> None:
    llm = ScriptedLLM(["fine"], cycle=True)
    call = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'}
    body = {"instructions": "Be brief.", "max_output_tokens": 7, "temperature": 0, "tools": [WEATHER],
            "tool_choice": "auto", "text": {"format": {"type": "json_object"}}, "input": [
                {"role": "developer", "content": "Use metric units."},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in "},
                                                                {"type": "input_text", "text": "Oslo and Rome?"}]},
                call, {**call, "call_id": "call_2", "arguments": '{"city": "Rome"}'},
                {"type": "function_call_output", "call_id": "call_1", "output": "5 C"},
                {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text",
                                                                                  "text": "20 C"}]}]}
    [answered] = respond(llm, body)
    assert answered.status_code == 200 and answered.json()["output"][0]["content"][0]["text"] == "fine"
    [request] = llm.requests
    calls = [ToolCall(id="call_1", name="get_weather", arguments='{"city": "Oslo"}'),
             ToolCall(id="call_2", name="get_weather", arguments='{"city": "Rome"}')]
    assert request.messages == [  # calls made together share one assistant turn
        Message(role="system", content="Be brief."), Message(role="system", content="Use metric units."),
        Message(role="user", content="Weather in Oslo and Rome?"), Message(role="assistant", tool_calls=calls),
        Message(role="tool", content="5 C", tool_call_id="call_1"),
        Message(role="tool", content="20 C", tool_call_id="call_2")]
    assert (request.max_tokens, request.temperature, request.response_format) == (7, 0, {"type": "json_object"})
    assert [t.name for t in request.tools or ()] == ["get_weather"] and request.tool_choice == "auto"


def test_text_then_a_call_stream_as_two_output_items() -> None:
    said = Choice(text="Let me look.", tool_calls=[ToolCall(id="call_9", name="get_weather", arguments="{}")])
    whole, streamed = respond(ScriptedLLM([said], cycle=True), {"input": "x"}, {"input": "x", "stream": True})
    output = whole.json()["output"]
    assert [(o["type"], o["id"][:4]) for o in output] == [("message", "msg_"), ("function_call", "fc_9")]
    events = [json.loads(line.removeprefix("data: ")) for line in streamed.text.splitlines() if line.startswith("data")]
    done = [(e["output_index"], e["item"]["type"]) for e in events if e["type"] == "response.output_item.done"]
    assert done == [(0, "message"), (1, "function_call")]
    assert [e["arguments"] for e in events if e["type"] == "response.function_call_arguments.done"] == ["{}"]
    assert events[-1]["response"]["output"][1]["call_id"] == "call_9" == output[1]["call_id"]
