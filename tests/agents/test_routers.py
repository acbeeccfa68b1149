"""The model as router (scripted), and llm, bandit and lookahead routers declared in YAML."""

import json
from pathlib import Path

import pytest

from baobab.agents import ConfigError, LLMRouter, TeamState, Workflow
from baobab.aio import run_sync
from baobab.engine import Request, ScriptedLLM
from baobab.graphs import END, START, Graph, Routed


def prompt_of(request: Request) -> str:
    assert request.messages is not None
    return str(request.messages[-1].content)


def triage(router: LLMRouter) -> Graph:
    graph = Graph(TeamState).node("intake", lambda s: {})
    graph.node("math", lambda s: {"output": "math"}).node("writer", lambda s: {"output": "prose"})
    return graph.edge(START, "intake").edge("math", END).edge("writer", END) \
        .route("intake", router, ["math", "writer", END])


def test_a_model_routes_from_descriptions_under_a_schema_and_gives_its_reason() -> None:
    model = ScriptedLLM([json.dumps({"choice": "writer", "reason": "a poem is prose"})])
    router = LLMRouter(model, {"math": "does arithmetic"})
    events = list(triage(router).compile().stream({"task": "Write a poem about baobabs"}))
    routed = next(e for e in events if isinstance(e, Routed))
    assert routed.choice == ("writer",) and routed.reason == "a poem is prose" and routed.router == "llm"
    assert events[-1].state.output == "prose"  # type: ignore[union-attr]
    request = model.requests[0]
    assert request.json_schema is not None
    assert request.json_schema["properties"]["choice"]["enum"] == ["math", "writer", "FINISH"]
    prompt = prompt_of(request)
    assert "- math: does arithmetic" in prompt and "- FINISH: the task is done" in prompt
    assert "Task: Write a poem about baobabs" in prompt


def test_finish_ends_the_run_and_a_reply_off_the_list_is_a_clear_error() -> None:
    done = LLMRouter(ScriptedLLM([json.dumps({"choice": "FINISH", "reason": "nothing to do"})]))
    state = triage(done).compile().run({"task": "nothing"}).state
    assert state.output is None
    wrong = LLMRouter(ScriptedLLM([json.dumps({"choice": "painter", "reason": ""})]), name="triage")
    with pytest.raises(Exception, match=r"router 'triage': the model answered .*painter.*expected choice to be one "
                                        r"of \['math', 'writer', 'FINISH'\]"):
        triage(wrong).compile().run({"task": "paint"})


HELPERS = '''
import random

def cheap(state):
    return {"output": "cheap"}

def good(state):
    return {"output": "good"}

def paid(state):
    return {"cheap": 0.2, "good": 0.9}.get(state.output, 0.0)

def value(state):
    return {"bait": 0.9, "bait2": 0.0, "safe": 0.3, "safe2": 1.0}.get(state.output, 0.0)

def step(name):
    return lambda state: {"output": name}

bait, bait2, safe, safe2 = step("bait"), step("bait2"), step("safe"), step("safe2")
'''


def workflow(tmp_path: Path, routes: str, nodes: str, edges: str) -> Path:
    (tmp_path / "routing_helpers.py").write_text(HELPERS)
    path = tmp_path / "flow.yaml"
    path.write_text("models:\n  boss: 'scripted:{\"choice\": \"good\", \"reason\": \"it pays\"}'\n"
                    "agents:\n  unused: {model: 'scripted:x'}\n"
                    f"workflow:\n  type: graph\n  nodes: {{{nodes}}}\n  edges: {edges}\n  routes:\n{routes}")
    return path


CHOICE_NODES = "start: {call: 'routing_helpers:cheap'}, cheap: {call: 'routing_helpers:cheap'}, " \
               "good: {call: 'routing_helpers:good'}"
CHOICE_EDGES = "[[START, start], [cheap, END], [good, END]]"


def runs(path: Path, count: int, url: str) -> list[str]:
    async def go() -> list[str]:
        flow = await Workflow.load(path)
        try:
            return [(await flow.arun({"task": "t"}, checkpointer=url)).state.output for _ in range(count)]
        finally:
            await flow.aclose()

    return run_sync(go())


def test_yaml_routers_llm_and_bandit(tmp_path: Path) -> None:
    llm = workflow(tmp_path, "    - {from: start, to: [cheap, good], by: {kind: llm, model: boss}}\n",
                   CHOICE_NODES, CHOICE_EDGES)
    assert runs(llm, 1, f"sqlite:///{tmp_path / 'a.db'}") == ["good"]

    url = f"sqlite:///{tmp_path / 'b.db'}"
    bandit = workflow(tmp_path, "    - {from: start, to: [cheap, good], by: {kind: bandit, reward: "
                                "'routing_helpers:paid', decay: 1.0}}\n", CHOICE_NODES, CHOICE_EDGES)
    first = runs(bandit, 30, url)
    assert first[-10:].count("good") >= 9, first
    assert runs(bandit, 5, url) == ["good"] * 5  # a new load reads what the last one learned from the store


def test_a_yaml_lookahead_router_avoids_the_trap(tmp_path: Path) -> None:
    nodes = ", ".join(f"{n}: {{call: 'routing_helpers:{n}'}}" for n in ["bait", "bait2", "safe", "safe2"])
    path = workflow(tmp_path, "    - {from: start, to: [bait, safe], by: {kind: lookahead, value: "
                              "'routing_helpers:value', depth: 2}}\n",
                    f"start: {{call: 'routing_helpers:cheap'}}, {nodes}",
                    "[[START, start], [bait, bait2], [bait2, END], [safe, safe2], [safe2, END]]")
    assert runs(path, 1, f"sqlite:///{tmp_path / 'c.db'}") == ["safe2"]


@pytest.mark.parametrize(("by", "message"), [
    ("{kind: bandit}", r"flow.yaml:10: workflow.routes.0.by.reward: Field required"),
    ("{kind: lookahead, value: 'routing_helpers:value', depth: 0}",
     r"flow.yaml:10: workflow.routes.0.by.depth: Input should be greater than or equal to 1"),
    ("{kind: llm, model: boss, descriptions: {painter: paints}}",
     r"flow.yaml:10: workflow.routes.0.by.descriptions.painter: 'painter' is not a target of this route"),
    ("{kind: oracle}", r"flow.yaml:10: workflow.routes.0.by: expected next, module:function or \{kind: llm"),
])
def test_bad_router_entries_are_named_with_their_line(tmp_path: Path, by: str, message: str) -> None:
    path = workflow(tmp_path, f"    - {{from: start, to: [cheap, good], by: {by}}}\n", CHOICE_NODES, CHOICE_EDGES)
    with pytest.raises(ConfigError, match=message):
        run_sync(Workflow.load(path))

