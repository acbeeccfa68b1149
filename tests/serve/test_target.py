"""Targets, the one description of a served workflow or graph that MCP, A2A and AG-UI share: their inputs' JSON
schema, a YAML workflow's agents as targets of their own, and the thread checks every protocol runs before a run."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from baobab.agents import ConfigError
from baobab.graphs import END, START, Graph, NodeStart
from baobab.serve.target import InputError, OfferError, graph_target, workflow_target
from baobab.store import Store

FLOW = """\
agents:
  geographer: {role: a geographer, instructions: Name the capital city.}
  checker: {instructions: Check the answer.}
workflow: {type: sequential, agents: [geographer, checker], task: "Capital of {country}? {n}"}
inputs:
  country: {description: the country's name}
  n: {type: integer, default: 1}
"""


class Sum(BaseModel):
    a: int
    b: int = 0
    total: int = 0


def add(state: Sum) -> dict[str, Any]:
    return {"total": state.a + state.b}


def graph(name: str, node: Any = add) -> Graph:
    return Graph(Sum, name=name).node("add", node).edge(START, "add").edge("add", END)


def test_a_graphs_inputs_are_its_states_schema() -> None:
    target = graph_target(graph("sum").compile(checkpointer="sqlite://"))
    assert target.input_schema["required"] == ["a"] and target.text_input == "a"
    assert target.inputs == {"a": "integer", "b": "integer", "total": "integer"}
    assert target.description == "A Baobab graph over Sum (nodes: add)."
    with pytest.raises(OfferError, match="graph 'sum': compile it with a checkpointer"):
        graph_target(graph("sum").compile())


def test_a_workflows_declared_inputs_and_its_agents_as_targets(tmp_path: Path) -> None:
    (tmp_path / "geo.yaml").write_text(FLOW)
    target = workflow_target(tmp_path / "geo.yaml", checkpointer=Store("sqlite://"), model="scripted:")
    assert target.input_schema == {"type": "object", "required": ["country"], "properties": {
        "country": {"type": "string", "description": "the country's name"}, "n": {"type": "integer", "default": 1}}}
    assert (target.name, target.text_input, target.examples) == ("geo", None, ["1"])

    async def opened() -> None:
        await target.open()
        try:
            assert target.input({"country": "Peru"}) == {"task": "Capital of Peru? 1"}
            with pytest.raises(ConfigError, match="country"):
                target.input({"n": 2})
            agents = target.agents()
            assert [(a.name, a.description) for a in agents] == [("geo.geographer", "Agent geographer: a geographer"),
                                                                  ("geo.checker", "Agent checker: Check the answer.")]
            assert agents[0].input("Name it") == {"task": "Name it"}
            with pytest.raises(InputError, match="task: expected a string, got 3"):
                agents[0].input({"task": 3})
        finally:
            await target.aclose()

    asyncio.run(opened())
    (tmp_path / "search.yaml").write_text(FLOW + "search: {reward: math:fabs}\n")
    with pytest.raises(OfferError, match="search: section is run by `baobab run`"):
        workflow_target(tmp_path / "search.yaml", checkpointer="sqlite://", model="scripted:")


def test_threads_of_another_graph_running_or_done_are_refused() -> None:
    store, gate = Store("sqlite://"), asyncio.Event()

    async def held(state: Sum) -> dict[str, Any]:
        await gate.wait()
        return {"total": state.a}

    mine = graph_target(graph("mine", held).compile(checkpointer=store))

    async def main() -> None:
        await graph("other").compile(checkpointer=store).arun({"a": 1}, thread="theirs")
        with pytest.raises(InputError, match="thread 'theirs' is a run of 'other', not of 'mine'"):
            mine.events("theirs", {"a": 2})
        events = mine.events("t1", '{"a": 2}')
        assert isinstance(await anext(events), NodeStart)
        with pytest.raises(InputError, match="thread 't1' is running now"):
            mine.events("t1", resume=True)
        gate.set()
        assert [e async for e in events][-1].state.total == 2
        with pytest.raises(InputError, match="resume: thread 't1' has no interrupted run to continue"):
            mine.events("t1", resume=True, value="yes")

    asyncio.run(main())
