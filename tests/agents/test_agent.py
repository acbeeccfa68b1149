"""The agent loop on a scripted model: tool calls, observations, structured output, limits, events."""

import asyncio
import json
import time

import pytest
from pydantic import BaseModel

from baobab.agents import Agent, AgentError, AgentFinished, ModelCalled, ToolCalled, listen
from baobab.engine import Choice, Request, ScriptedLLM, ToolCall
from baobab.engine.budget import Budget, BudgetExceeded
from baobab.tools import tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def call(name: str, arguments: dict[str, object], id: str = "c1") -> Choice:
    return Choice(tool_calls=[ToolCall(id=id, name=name, arguments=json.dumps(arguments))])


class Answer(BaseModel):
    value: int
    unit: str


def test_a_plain_answer_takes_one_step() -> None:
    llm = ScriptedLLM(["Paris"])
    result = Agent("geo", role="geographer", instructions="Answer in one word.", model=llm).run("Capital of France?")
    assert (result.output, result.steps, result.handoff) == ("Paris", 1, None)
    system, user = llm.requests[0].messages or []
    assert system.content == "You are geo, geographer.\nAnswer in one word." and user.content == "Capital of France?"


def test_tool_calls_run_and_their_observations_go_back() -> None:
    llm = ScriptedLLM([call("add", {"a": 2, "b": 3}), "The sum is 5."])
    result = Agent("calc", model=llm, tools=[add]).run("2 + 3?")
    assert result.output == "The sum is 5." and result.steps == 2
    second = llm.requests[1].messages or []
    assert [m.role for m in second] == ["system", "user", "assistant", "tool"]
    assert second[-1].content == "5" and second[-1].tool_call_id == "c1"
    assert [t.name for t in llm.requests[0].tools or []] == ["add"]


@pytest.mark.parametrize(("reply", "expected"), [
    (call("add", {"a": "two", "b": 3}), "'a'"),        # arguments that do not validate
    (call("divide", {"a": 1}), "unknown tool 'divide'"),  # a tool the agent does not have
])
def test_a_bad_tool_call_is_an_observation_and_the_agent_goes_on(reply: Choice, expected: str) -> None:
    llm = ScriptedLLM([reply, "recovered"])
    assert Agent("calc", model=llm, tools=[add]).run("?").output == "recovered"
    observation = (llm.requests[1].messages or [])[-1]
    assert observation.role == "tool" and expected in (observation.content or "")


def test_structured_output_is_validated_and_repaired() -> None:
    llm = ScriptedLLM(['{"value": "many"}', '{"value": 3, "unit": "kg"}'])
    result = Agent("measure", model=llm, output=Answer).run("How heavy?")
    assert result.output == Answer(value=3, unit="kg") and result.steps == 2
    first = llm.requests[0]
    assert first.response_format is not None and first.json_schema == Answer.model_json_schema()
    repair = (llm.requests[1].messages or [])[-1].content or ""
    assert "value: Input should be a valid integer" in repair and "unit: Field required" in repair


def test_structured_output_cut_off_at_max_tokens_is_repaired() -> None:
    cut = Choice(text='{"value": 123456789', finish_reason="length", incomplete_json=True)
    llm = ScriptedLLM([cut, '{"value": 3, "unit": "kg"}'])
    result = Agent("measure", model=llm, output=Answer, max_tokens=8).run("How heavy?")
    assert result.output == Answer(value=3, unit="kg") and result.steps == 2
    repair = (llm.requests[1].messages or [])[-1].content or ""
    assert "cut off after 8 tokens" in repair


def test_structured_output_gives_up_after_its_repairs() -> None:
    llm = ScriptedLLM(["not json"], cycle=True)
    with pytest.raises(AgentError, match=r"did not validate against Answer after 2 repairs"):
        Agent("measure", model=llm, output=Answer, repairs=2).run("How heavy?")
    assert len(llm.requests) == 3


def test_with_tools_the_structured_answer_is_a_final_answer_call() -> None:
    llm = ScriptedLLM([call("add", {"a": 1, "b": 2}), call("final_answer", {"value": 3}, "c2"),
                       call("final_answer", {"value": 3, "unit": "apples"}, "c3")])
    result = Agent("calc", model=llm, tools=[add], output=Answer).run("1 + 2 apples?")
    assert result.output == Answer(value=3, unit="apples") and result.steps == 3
    assert llm.requests[0].tool_choice == "required"
    assert [t.name for t in llm.requests[0].tools or []] == ["add", "final_answer"]
    assert "unit: Field required" in ((llm.requests[2].messages or [])[-1].content or "")


def test_out_of_steps_the_agent_answers_without_tools() -> None:
    llm = ScriptedLLM(lambda r: "best guess" if not r.tools else call("add", {"a": len(r.messages or []), "b": 1}))
    result = Agent("calc", model=llm, tools=[add], max_steps=3).run("?")
    assert result.output == "best guess" and result.steps == 4
    assert [bool(r.tools) for r in llm.requests] == [True, True, True, False]
    assert "You have used all your steps" in ((llm.requests[-1].messages or [])[-1].content or "")


def test_repeating_a_call_ends_tool_use_and_is_not_run_again() -> None:
    runs: list[int] = []

    @tool
    def plus(a: int, b: int) -> int:
        """Add two integers, counting the runs."""
        runs.append(a + b)
        return a + b

    llm = ScriptedLLM(lambda r: "2" if not r.tools else call("plus", {"a": 1, "b": 1}))
    result = Agent("calc", model=llm, tools=[plus], max_steps=8).run("1 + 1?")
    assert result.output == "2" and result.steps == 3 and runs == [2]
    assert [m.content for m in result.messages if m.role == "tool"] == ["2", "2"]  # the repeat got the earlier answer
    assert "You already have that result" in ((llm.requests[-1].messages or [])[-1].content or "")


def test_events_follow_the_run() -> None:
    seen: list[object] = []
    with listen(seen.append):
        Agent("calc", model=ScriptedLLM([call("add", {"a": 2, "b": 2}), "4"]), tools=[add]).run("2 + 2?")
    assert [type(e) for e in seen] == [ModelCalled, ToolCalled, ModelCalled, AgentFinished]
    tool_event = seen[1]
    assert isinstance(tool_event, ToolCalled) and tool_event.observation.content == "4"
    finished = seen[-1]
    assert isinstance(finished, AgentFinished) and finished.output == "4" and finished.steps == 2


def test_a_budget_stops_the_agent() -> None:
    llm = ScriptedLLM(lambda r: call("add", {"a": len(r.messages or []), "b": 1}))  # new arguments each time
    agent = Agent("loop", model=llm, tools=[add], max_steps=10, budget=Budget(max_model_calls=3))
    with pytest.raises(BudgetExceeded, match="loop: budget of 3 model calls reached"):
        agent.run("?")
    assert len(llm.requests) == 3


def test_tool_calls_of_one_step_run_concurrently() -> None:
    @tool
    async def wait(seconds: float) -> str:
        """Wait a while."""
        await asyncio.sleep(seconds)
        return "waited"

    several = Choice(tool_calls=[ToolCall(id=f"c{i}", name="wait", arguments='{"seconds": 0.3}') for i in range(3)])
    started = time.perf_counter()
    result = Agent("waiter", model=ScriptedLLM([several, "done"]), tools=[wait]).run("wait thrice")
    assert result.output == "done" and time.perf_counter() - started < 0.8
    assert [m.content for m in result.messages if m.role == "tool"] == ["waited"] * 3


def test_bad_agent_definitions_are_refused() -> None:
    with pytest.raises(ValueError, match="must be an identifier"):
        Agent("data analyst")
    with pytest.raises(ValueError, match=r"tool names \['add'\] are repeated"):
        Agent("calc", tools=[add, add])


def test_requests_are_well_formed_for_every_model() -> None:
    llm = ScriptedLLM([call("add", {"a": 1, "b": 1}), "2"])
    Agent("calc", model=llm, tools=[add], temperature=0.2, max_tokens=64).run("?")
    for request in llm.requests:
        assert isinstance(request, Request) and request.temperature == 0.2 and request.max_tokens == 64
