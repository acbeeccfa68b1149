"""Agents inside graph nodes stream their model's text into the run's one event stream (`stream(tokens=True)`),
tagged with the path of nodes and the agent's name; the run is the same with and without tokens."""

from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel

from baobab.agents import Agent, ModelCalled, TeamState, listen
from baobab.engine import Choice, Chunk, Request, ScriptedLLM, ToolCall
from baobab.engine.llm import completion_of
from baobab.graphs import END, START, Graph, NodeEnd, Token
from baobab.tools import tool


class Pieces(ScriptedLLM):
    """A scripted model that streams each reply three characters at a time, and counts its streams."""

    streams = 0

    async def _stream(self, request: Request) -> AsyncIterator[Chunk]:
        self.streams += 1
        completion = await self._complete(request)
        for choice in completion.choices:
            for start in range(0, len(choice.text), 3):
                yield Chunk(index=choice.index, text=choice.text[start:start + 3])
            yield Chunk(index=choice.index, finish_reason=choice.finish_reason, tool_calls=choice.tool_calls,
                        incomplete_json=choice.incomplete_json, usage=completion.usage)


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def adder() -> tuple[Agent, Pieces]:
    """An agent that says what it will do while calling a tool, then answers."""
    call = Choice(text="Adding them up.", tool_calls=[ToolCall(id="c1", name="add", arguments='{"a": 2, "b": 3}')])
    llm = Pieces([call, "The sum is 5."])
    return Agent("adder", model=llm, tools=[add]), llm


def run(app: Any, *, tokens: bool) -> tuple[list[Any], list[tuple[str, int, Choice]]]:
    """The run's events, and what each model call returned (as the agents' events report it)."""
    called: list[tuple[str, int, Choice]] = []
    with listen(lambda e: called.append((e.agent, e.step, e.choice)) if isinstance(e, ModelCalled) else None):
        events = list(app.stream({"task": "Add 2 and 3"}, tokens=tokens))
    return events, called


def single(make: Callable[[], tuple[Agent, Pieces]]) -> tuple[Any, Pieces]:
    agent, llm = make()
    graph = Graph(TeamState).node("solve", agent).edge(START, "solve").edge("solve", END)
    return graph.compile(), llm


def test_an_agent_node_streams_its_text_under_its_node_and_name() -> None:
    app, llm = single(adder)
    events, called = run(app, tokens=True)
    tokens = [e for e in events if isinstance(e, Token)]
    assert {t.path for t in tokens} == {("solve", "adder")}
    assert "".join(t.text for t in tokens) == "Adding them up.The sum is 5."  # the tool-calling turn's text too
    assert len(tokens) > 2 and llm.streams == 2
    end = next(i for i, e in enumerate(events) if isinstance(e, NodeEnd) and e.node == "solve")
    assert all(events.index(t) < end for t in tokens)  # streamed while the node ran
    assert events[-1].state.output == "The sum is 5." and [c[2].text for c in called][-1] == "The sum is 5."


def test_without_tokens_nothing_streams_and_the_run_is_the_same() -> None:
    app, llm = single(adder)
    events, called = run(app, tokens=False)
    assert not [e for e in events if isinstance(e, Token)] and llm.streams == 0  # the model's stream never asked
    streamed_app, _ = single(adder)
    streamed_events, streamed_called = run(streamed_app, tokens=True)
    assert streamed_called == called  # each call's text, tool calls, finish reason: identical
    assert streamed_events[-1].state == events[-1].state


def test_an_agent_in_a_nested_subgraph_is_tagged_with_the_whole_path() -> None:
    writer = Agent("writer", model=Pieces(["Baobabs store water."]))
    inner = Graph(TeamState).node("draft", writer).edge(START, "draft").edge("draft", END).compile()
    outer = Graph(TeamState).node("body", inner).edge(START, "body").edge("body", END).compile()
    events, _ = run(outer, tokens=True)
    tokens = [e for e in events if isinstance(e, Token)]
    assert {t.path for t in tokens} == {("body", "draft", "writer")}
    assert "".join(t.text for t in tokens) == "Baobabs store water." == events[-1].state.output


class Sum(BaseModel):
    total: int


def test_a_structured_answer_streams_its_json_and_validates_as_without_tokens() -> None:
    def make() -> tuple[Agent, Pieces]:
        cut = Choice(text='{"total": 5', finish_reason="length", incomplete_json=True)  # repaired, as without tokens
        llm = Pieces([cut, '{"total": 5}'])
        return Agent("summer", model=llm, output=Sum), llm

    streamed, called = run(single(make)[0], tokens=True)
    plain, plain_called = run(single(make)[0], tokens=False)
    assert "".join(e.text for e in streamed if isinstance(e, Token)) == '{"total": 5{"total": 5}'
    assert called == plain_called and streamed[-1].state == plain[-1].state
    assert streamed[-1].state.output == {"total": 5}


def test_a_stream_adds_up_to_the_completion() -> None:
    llm = Pieces([Choice(text="calling", tool_calls=[ToolCall(id="c", name="f")]), "two"])
    completion = llm.complete_sync(prompt="x", n=2)
    llm.requests.clear()
    streamed = completion_of(llm.stream_sync(prompt="x", n=2), llm.name)
    assert streamed.choices == completion.choices and streamed.usage == completion.usage
