"""YAML workflows built and run on scripted models: tools of every kind, graphs, budgets, inputs."""

import json
import sys
from pathlib import Path

import pytest

from baobab.agents import ConfigError, Workflow
from baobab.aio import run_sync
from baobab.engine.budget import BudgetExceeded
from baobab.graphs import NodeError

MCP_SERVER = Path(__file__).resolve().parents[1] / "tools" / "mcp_server.py"


def run(path: Path, inputs: dict[str, object]) -> object:
    async def go() -> object:
        workflow = await Workflow.load(path)
        try:
            return (await workflow.arun(inputs)).state
        finally:
            await workflow.aclose()

    return run_sync(go())


def helper_module(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text(
        "from baobab.engine import Choice, ToolCall, ScriptedLLM\n"
        "def shout(text: str) -> str:\n    '''Upper-case the text.'''\n    return text.upper()\n"
        "def tool_then_answer(tool, arguments):\n"
        "    def reply(request):\n"
        "        seen = [m.content for m in request.messages if m.role == 'tool']\n"
        "        if seen:\n            return 'got ' + seen[-1]\n"
        "        return Choice(tool_calls=[ToolCall(id='c1', name=tool, arguments=arguments)])\n"
        "    return reply\n"
        "def mark(state):\n    return {'output': 'marked ' + state.task}\n"
        "def always_end(state):\n    return '__end__'\n")


@pytest.mark.parametrize(("tools", "tool", "arguments", "answer"), [
    ("shout: {import: 'helpers:shout'}", "shout", '{"text": "hi"}', "got HI"),
    ("calc: {builtin: calculator}", "calculator", '{"expression": "6 * 7"}', "got 42"),
    (f"maths: {{mcp: {{command: [{sys.executable}, {MCP_SERVER}]}}}}", "add", '{"a": 2, "b": 3}', "got 5"),
])
def test_tools_from_imports_builtins_and_mcp_servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tools: str,
                                                     tool: str, arguments: str, answer: str) -> None:
    helper_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from helpers import tool_then_answer  # type: ignore[import-not-found]

    from baobab.agents import agent as agent_module
    from baobab.engine import ScriptedLLM

    name = tools.split(":")[0]
    path = tmp_path / "flow.yaml"
    path.write_text(f"tools:\n  {tools}\nagents:\n  a: {{model: scripted_tool, tools: [{name}]}}\n"
                    "models:\n  scripted_tool: 'scripted:unused'\n"
                    "workflow: {type: sequential, agents: [a]}\n")
    # the model the config names, replaced by one that calls the tool once and answers with its result
    monkeypatch.setitem(agent_module._shared_models, json.dumps(["scripted:unused", {}], sort_keys=True),
                        ScriptedLLM(tool_then_answer(tool, arguments)))
    state = run(path, {"task": "go"})
    assert state.output == answer


def test_a_graph_workflow_with_callables_and_routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper_module(tmp_path)
    path = tmp_path / "graph.yaml"
    path.write_text("agents:\n  a: {model: 'scripted:first'}\n"
                    "workflow:\n  type: graph\n  task: 'Do {thing}'\n"
                    "  nodes: {a: {agent: a}, m: {call: 'helpers:mark'}}\n"
                    "  edges: [[START, a], [a, m]]\n  routes: [{from: m, to: [END], by: 'helpers:always_end'}]\n"
                    "inputs:\n  thing: {type: string}\n")
    state = run(path, {"thing": "x"})
    assert state.output == "marked Do x" and [s.agent for s in state.messages] == ["a"]


def test_inputs_are_checked_and_converted(tmp_path: Path) -> None:
    path = tmp_path / "inputs.yaml"
    path.write_text("agents:\n  a: {model: 'scripted:ok'}\nworkflow: {type: sequential, agents: [a], "
                    "task: 'n={n} flag={flag}'}\ninputs:\n  n: {type: integer}\n"
                    "  flag: {type: boolean, default: false}\n")

    async def check() -> None:
        workflow = await Workflow.load(path)
        assert workflow.task({"n": "3", "flag": "true"}) == "n=3 flag=True"
        assert workflow.task({"n": 4}) == "n=4 flag=False"
        with pytest.raises(ConfigError, match=r"inputs\.n: expected integer, got 'three'"):
            workflow.task({"n": "three"})
        with pytest.raises(ConfigError, match=r"unknown inputs \['m'\]; this workflow takes \['flag', 'n'\]"):
            workflow.task({"n": 1, "m": 2})

    run_sync(check())


def test_an_agent_budget_from_yaml_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from baobab.agents import agent as agent_module
    from baobab.engine import Choice, ScriptedLLM, ToolCall

    counter = iter(range(100))  # a new expression each time: no call repeats, so only the budget stops it
    looping = ScriptedLLM(lambda r: Choice(tool_calls=[ToolCall(
        id="c", name="calculator", arguments=json.dumps({"expression": f"{next(counter)}+1"}))]))
    monkeypatch.setitem(agent_module._shared_models, json.dumps(["scripted:loop", {}], sort_keys=True), looping)
    path = tmp_path / "budget.yaml"
    path.write_text("agents:\n  a: {model: 'scripted:loop', tools: [calculator], max_steps: 10}\n"
                    "workflow: {type: sequential, agents: [a]}\nbudgets:\n  agents:\n    a: {max_model_calls: 2}\n")
    with pytest.raises(NodeError) as caught:
        run(path, {"task": "loop"})
    assert isinstance(caught.value.__cause__, BudgetExceeded) and len(looping.requests) == 2


def test_a_search_section_searches_runs_of_the_workflow_and_returns_the_best(tmp_path: Path) -> None:
    (tmp_path / "judge.py").write_text("def score(state):\n    return {'best': 1.0, 'fair': 0.5}.get(state.output)\n")
    path = tmp_path / "flow.yaml"
    path.write_text("models:\n  varied: {model: 'scripted:', options: {replies: [fair, poor, best, poor]}}\n"
                    "agents:\n  writer: {model: varied}\nworkflow: {type: sequential, agents: [writer]}\n"
                    "search: {strategy: best_of_n, k: 3, reward: 'judge:score', budget: {max_model_calls: 10}}\n")
    url = f"sqlite:///{tmp_path / 'runs.db'}"

    async def go() -> object:
        workflow = await Workflow.load(path)
        try:
            found = await workflow.asearch({"task": "Write"}, run="s1", checkpointer=url)
            again = await workflow.arun({"task": "Write"}, thread="s1", checkpointer=url)  # stored: not run again
            return found, again
        finally:
            await workflow.aclose()

    found, again = run_sync(go())
    assert found.best.state.output == "best" and found.best.status == "done"  # type: ignore[attr-defined]
    assert (found.result.reward, found.result.model_calls, found.name) == (1.0, 3, "s1")  # type: ignore[attr-defined]
    assert again.state.output == "best"  # type: ignore[attr-defined]
