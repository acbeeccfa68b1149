"""The model interface: request validation, the scripted model, model strings."""

import asyncio

import pytest

from baobab.engine import Choice, Request, RequestError, ScriptedLLM, ToolCall, load_llm


def test_request_needs_messages_or_prompt_and_names_bad_fields() -> None:
    llm = ScriptedLLM(["x"], cycle=True)
    with pytest.raises(RequestError, match="give exactly one of messages or prompt"):
        llm.complete_sync(max_tokens=5)
    with pytest.raises(RequestError, match="temperature: Input should be less than or equal to 10"):
        llm.complete_sync(prompt="hi", temperature=50)
    with pytest.raises(RequestError, match="max_tokens: Input should be greater than or equal to 1"):
        llm.complete_sync(prompt="hi", max_tokens=0)
    with pytest.raises(RequestError, match=r"messages\.0\.role"):
        llm.complete_sync(messages=[{"role": "robot", "content": "hi"}])
    with pytest.raises(RequestError, match="temprature: Extra inputs are not permitted"):
        llm.complete_sync(prompt="hi", temprature=0)
    with pytest.raises(RequestError, match=r"response_format\.type must be"):
        llm.complete_sync(prompt="hi", response_format={"type": "xml"})


def test_stop_accepts_one_string() -> None:
    assert Request(prompt="x", stop="END").stop == ["END"]


def test_scripted_replies_in_order_then_says_it_ran_out() -> None:
    llm = ScriptedLLM(["one", "two"])
    assert [llm.complete_sync(prompt="?").text for _ in range(2)] == ["one", "two"]
    with pytest.raises(IndexError, match="ran out of replies \\(2 given\\)"):
        llm.complete_sync(prompt="?")
    assert [r.prompt for r in llm.requests] == ["?", "?", "?"]


def test_scripted_tool_calls_and_functions_of_the_request() -> None:
    call = Choice(tool_calls=[ToolCall(id="c1", name="add", arguments='{"a": 1}')])
    llm = ScriptedLLM([call, lambda r: f"echo {r.messages[0].content}"])  # type: ignore[index]
    first = llm.complete_sync(messages=[{"role": "user", "content": "x"}])
    assert first.choices[0].finish_reason == "tool_calls" and first.choices[0].tool_calls[0].name == "add"
    assert llm.complete_sync(messages=[{"role": "user", "content": "ping"}]).text == "echo ping"


def test_stream_of_a_non_streaming_model_gives_whole_choices() -> None:
    llm = load_llm("scripted:hello there")
    chunks = list(llm.stream_sync(prompt="hi", n=2))
    assert [(c.index, c.text, c.finish_reason) for c in chunks] == [(0, "hello there", "stop"),
                                                                    (1, "hello there", "stop")]


def test_async_interface() -> None:
    llm = load_llm("scripted:", replies=["a", "b"])

    async def main() -> list[str]:
        return [(await llm.complete(prompt="1")).text, (await llm.complete(prompt="2")).text]

    assert asyncio.run(main()) == ["a", "b"]


def test_unknown_model_string() -> None:
    with pytest.raises(ValueError, match="unknown model 'gpt'"):
        load_llm("gpt")
