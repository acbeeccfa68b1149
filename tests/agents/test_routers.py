"""The model as router and supervisor (scripted: the prompts they send), and llm, bandit and lookahead routers
declared in YAML."""

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from baobab.agents import Agent, ConfigError, Example, LLMRouter, TeamState, Workflow, supervisor
from baobab.agents.state import Said
from baobab.aio import run_sync
from baobab.engine import Request, ScriptedLLM
from baobab.graphs import END, START, Graph, Routed


def prompt_of(request: Request) -> str:
    assert request.messages is not None
    return str(request.messages[-1].content)


def turns(request: Request) -> list[tuple[str, str]]:
    """The conversation a router sent: (role, text) of each message."""
    assert request.messages is not None
    return [(m.role, str(m.content)) for m in request.messages]


def triage(router: LLMRouter) -> Graph:
    graph = Graph(TeamState).node("intake", lambda s: {})
    graph.node("math", lambda s: {"output": "math"}).node("writer", lambda s: {"output": "prose"})
    return graph.edge(START, "intake").edge("math", END).edge("writer", END) \
        .route("intake", router, ["math", "writer", END])


DONE = {"task": "What is 2 + 2?", "messages": [{"agent": "math", "content": "4"}]}


def test_a_model_routes_from_descriptions_under_a_schema_and_gives_its_reason() -> None:
    model = ScriptedLLM([json.dumps({"choice": "writer", "reason": "a poem is prose"})])
    router = LLMRouter(model, {"math": "does arithmetic"})
    events = list(triage(router).compile().stream({"task": "Write a poem about baobabs"}))
    routed = next(e for e in events if isinstance(e, Routed))
    assert routed.choice == ("writer",) and routed.reason == "a poem is prose" and routed.router == "llm"
    assert events[-1].state.output == "prose"  # type: ignore[union-attr]
    request = model.requests[0]
    assert request.json_schema is not None
    assert request.json_schema["properties"]["choice"]["enum"] == ["math", "writer"]  # no FINISH before any work
    system = turns(request)[0][1]
    assert "- math: does arithmetic" in system and "FINISH" not in system
    assert prompt_of(request) == "Task: Write a poem about baobabs\n\nWork so far:\n(nothing yet)"  # the state last


def test_automatic_examples_come_before_the_state_one_per_target_and_finish_after_work() -> None:
    model = ScriptedLLM([json.dumps({"choice": "FINISH", "reason": "answered"})])
    router = LLMRouter(model, {"math": "computes arithmetic", "writer": "writes poems"})
    assert triage(router).compile().run(DONE).state.output is None  # type: ignore[attr-defined]  # FINISH is END
    request = model.requests[0]
    assert request.json_schema is not None
    assert request.json_schema["properties"]["choice"]["enum"] == ["math", "writer", "FINISH"]
    assert "- FINISH: the task has been answered: the work so far contains the answer" in turns(request)[0][1]
    assert turns(request)[1:] == [
        ("user", "Task: Computes arithmetic.\n\nWork so far:\n(nothing yet)"), ("assistant", '{"choice": "math"}'),
        ("user", "Task: Writes poems.\n\nWork so far:\n(nothing yet)"), ("assistant", '{"choice": "writer"}'),
        ("user", "Task: Computes arithmetic.\n\nWork so far:\n- math: (the answer)"),
        ("assistant", '{"choice": "FINISH"}'),
        ("user", "Task: What is 2 + 2?\n\nWork so far:\n- math: 4")]


def test_given_examples_replace_the_automatic_ones_and_name_targets() -> None:
    model = ScriptedLLM([json.dumps({"choice": "math", "reason": ""})], cycle=True)
    examples: list[tuple[str | BaseModel, str]] = [
        ("What is 6 * 7?", "math"), (TeamState(task="Sum 1 and 2", messages=[Said(agent="math", content="3")]), END)]
    router = LLMRouter(model, examples=examples)
    triage(router).compile().run({"task": "What is 9 - 4?"})
    assert turns(model.requests[0])[1:] == [("user", "Task: What is 6 * 7?\n\nWork so far:\n(nothing yet)"),
                                            ("assistant", '{"choice": "math"}'),  # the END example waits for work
                                            ("user", "Task: What is 9 - 4?\n\nWork so far:\n(nothing yet)")]
    triage(router).compile().run(DONE)
    assert ("assistant", '{"choice": "FINISH"}') in turns(model.requests[1])
    wrong = LLMRouter(model, examples=[("Paint a cat", "painter")], name="triage")
    with pytest.raises(Exception, match=r"router 'triage': examples route to \['painter'\], which are not among "
                                        r"the targets \['math', 'writer'\]"):
        triage(wrong).compile().run({"task": "paint"})


@pytest.mark.parametrize("example", [("What is 6 * 7?",), ("What is 6 * 7?", ""), (42, "math"), "math"])
def test_a_malformed_example_is_named_when_the_router_is_made(example: Any) -> None:
    with pytest.raises(ValueError, match=r"router 'llm': examples\[0\] is .*; expected a \(task or state, target "
                                         r"name\) pair"):
        LLMRouter("scripted:x", examples=[example])


def test_the_supervisor_shows_its_agents_examples_and_offers_finish_after_a_turn() -> None:
    calculator = Agent("calculator", role="computes arithmetic", model="scripted:4",
                       examples=[Example(task="What is 6 * 7?", answer="42")])
    poet = Agent("poet", role="writes poems", model="scripted:a poem")
    boss = ScriptedLLM([json.dumps({"choice": "calculator"}), json.dumps({"choice": "FINISH"})])
    state = supervisor([calculator, poet], model=boss).compile().run({"task": "What is 2 + 2?"}).state
    assert isinstance(state, TeamState) and [m.agent for m in state.messages] == ["calculator"]
    first, second = boss.requests
    assert first.json_schema is not None and second.json_schema is not None
    assert first.json_schema["properties"]["choice"]["enum"] == ["calculator", "poet"]
    assert second.json_schema["properties"]["choice"]["enum"] == ["calculator", "poet", "FINISH"]
    assert turns(first)[1:5] == [("user", "Task: What is 6 * 7?\n\nWork so far:\n(nothing yet)"),
                                 ("assistant", '{"choice": "calculator"}'),
                                 ("user", "Task: Writes poems.\n\nWork so far:\n(nothing yet)"),
                                 ("assistant", '{"choice": "poet"}')]
    assert ("assistant", '{"choice": "FINISH"}') in turns(second)
    with pytest.raises(ValueError, match=r"supervisor: examples route to \['painter'\]"):
        supervisor([calculator, poet], examples=[("Paint a cat", "painter")])


def test_finish_ends_the_run_and_a_reply_off_the_list_is_a_clear_error() -> None:
    done = LLMRouter(ScriptedLLM([json.dumps({"choice": "FINISH", "reason": "nothing to do"})]))
    assert triage(done).compile().run(DONE).state.output is None  # type: ignore[attr-defined]
    wrong = LLMRouter(ScriptedLLM([json.dumps({"choice": "painter", "reason": ""})]), name="triage")
    with pytest.raises(Exception, match=r"router 'triage': the model answered .*painter.*expected choice to be one "
                                        r"of \['math', 'writer', 'FINISH'\]"):
        triage(wrong).compile().run(DONE)


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
            return [(await flow.arun({"task": "t"}, checkpointer=url)).state.output  # type: ignore[attr-defined]
                    for _ in range(count)]
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

