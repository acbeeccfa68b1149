"""Malformed workflow configs: each error names the file, the line and the field, and what was expected."""

from pathlib import Path

import pytest

from baobab.agents import ConfigError, read_config
from baobab.search import STRATEGIES

ONE_AGENT = "workflow: {type: sequential, agents: [a]}\n"
BUILTINS = "['calculator', 'files', 'http_get', 'list_files', 'python', 'read_file', 'write_file']"

CASES = {
    "misspelt_field": ("agents:\n  a:\n    rolee: analyst\n" + ONE_AGENT,
                       "{file}:3: agents.a.rolee: unknown field"),
    "not_an_integer": ("agents:\n  a:\n    max_steps: many\n" + ONE_AGENT,
                       "{file}:3: agents.a.max_steps: Input should be a valid integer, unable to parse string as an "
                       "integer, got 'many'"),
    "unknown_agent_in_workflow": ("agents:\n  a: {}\nworkflow:\n  type: sequential\n  agents: [a, b]\n",
                                  "{file}:5: workflow.agents.1: 'b' is not an agent (['a'])"),
    "unknown_workflow_type": ("agents:\n  a: {}\nworkflow:\n  type: parallel\n  agents: [a]\n",
                              "{file}:4: workflow.type: Input should be 'sequential', 'supervisor', 'handoffs' or "
                              "'graph', got 'parallel'"),
    "no_agents": (ONE_AGENT, "{file}:1: agents: Field required\n"
                  "{file}:1: workflow.agents.0: 'a' is not an agent ([])"),
    "unknown_tool": ("agents:\n  a:\n    tools: [pyhton]\n" + ONE_AGENT,
                     "{file}:3: agents.a.tools.0: 'pyhton' is not a tool of this file ([]) nor a built-in "
                     f"({BUILTINS})"),
    "unknown_builtin": ("tools:\n  py: {builtin: pyhton}\nagents:\n  a: {tools: [py]}\n" + ONE_AGENT,
                        f"{{file}}:2: tools.py.builtin: 'pyhton' is not a built-in tool ({BUILTINS})"),
    "broken_yaml": ("agents:\n  a: {role: x\nworkflow: {}\n",
                    "{file}:3: not valid YAML: expected ',' or '}', but got ':'"),
    "duplicate_key": ("agents:\n  a: {}\n  a: {}\n" + ONE_AGENT, "{file}:3: agents.a: duplicate key"),
    "unset_environment_variable": ("agents:\n  a:\n    model: ${BAOBAB_TEST_UNSET}\n" + ONE_AGENT,
                                   "{file}:3: agents.a.model: environment variable BAOBAB_TEST_UNSET is not set "
                                   "(write ${BAOBAB_TEST_UNSET:-default} for a default)"),
    "two_kinds_of_tool": ("tools:\n  t: {builtin: calculator, import: 'x:y'}\nagents:\n  a: {tools: [t]}\n" + ONE_AGENT,
                          "{file}:2: tools.t: give exactly one of builtin, import or mcp (got ['builtin', 'import'])"),
    "graph_listing_agents": ("agents:\n  a: {}\nworkflow:\n  type: graph\n  agents: [a]\n",
                             "{file}:4: workflow: a graph workflow lists nodes (and edges, routes), not agents"),
    "edge_to_unknown_node": ("agents:\n  a: {}\nworkflow:\n  type: graph\n  nodes: {n: {agent: a}}\n"
                             "  edges: [[START, n], [n, m]]\n",
                             "{file}:6: workflow.edges.1: 'm' is not a node (['END', 'START', 'n'])"),
    "task_naming_no_input": ("agents:\n  a: {}\ninputs:\n  q: {}\nworkflow:\n  type: sequential\n  agents: [a]\n"
                             "  task: 'Do {question}'\n",
                             "{file}:8: workflow.task: {question} is not an input (['q'])"),
    "zero_budget": ("agents:\n  a: {}\nbudgets:\n  run: {max_model_calls: 0}\n" + ONE_AGENT,
                    "{file}:4: budgets.run.max_model_calls: Input should be greater than or equal to 1, got 0"),
    "unknown_output_type": ("agents:\n  a:\n    output: {answer: text}\n" + ONE_AGENT,
                            "{file}:3: agents.a.output: expected {field: type} with types string, integer, number, "
                            "boolean, array, object, or 'module:Model', got {'answer': 'text'}"),
    "unknown_model": ("agents:\n  a:\n    model: big\n" + ONE_AGENT,
                      "{file}:3: agents.a.model: 'big' is not a model of this file ([]) nor a model string such as "
                      "local:smollm2-135m or openai/gpt-4o-mini"),
    "handoff_to_itself": ("agents:\n  a: {handoffs: [a]}\nworkflow: {type: handoffs, agents: [a]}\n",
                          "{file}:2: agents.a.handoffs.0: 'a' is not another agent of this file ([])"),
    "list_instead_of_sections": ("- agents\n- workflow\n",
                                 "{file}:1: expected a mapping of sections (models, tools, agents, workflow, budgets, "
                                 "inputs), got list"),
    "agent_name_with_a_space": ("agents:\n  data analyst: {}\n" + ONE_AGENT,
                                "{file}:2: agents.data analyst: 'data analyst' is not a valid name: use letters, "
                                "digits and _ (not starting with a digit)\n"
                                "{file}:3: workflow.agents.0: 'a' is not an agent (['data analyst'])"),
    "search_choice_point_not_a_node": ("agents:\n  a: {}\n" + ONE_AGENT + "search:\n  reward: 'checks:score'\n"
                                       "  choice_points: [a, b]\n",
                                       "{file}:6: search.choice_points.1: 'b' is not a node of the workflow (['a'])"),
    "search_without_reward": ("agents:\n  a: {}\n" + ONE_AGENT + "search: {strategy: beam}\n",
                              "{file}:4: search.reward: Field required"),
    "search_reward_not_an_import": ("agents:\n  a: {}\n" + ONE_AGENT + "search: {reward: score}\n",
                                    "{file}:4: search.reward: String should match pattern '^[\\w.]+:[\\w.]+$', "
                                    "got 'score'"),
    "search_unknown_strategy": ("agents:\n  a: {}\n" + ONE_AGENT + "search:\n  strategy: anneal\n"
                                "  reward: 'checks:score'\n",
                                "{file}:5: search.strategy: 'anneal' is not a search strategy "
                                f"({sorted(STRATEGIES)})"),
    "search_option_of_another_strategy": ("agents:\n  a: {}\n" + ONE_AGENT + "search:\n  strategy: beam\n"
                                          "  reward: 'checks:score'\n  options: {c: 2.0}\n",
                                          "{file}:5: search: options ['c'] are not options of strategy beam "
                                          "(['max_depth', 'target', 'width'])"),
    "search_budget_misspelt": ("agents:\n  a: {}\n" + ONE_AGENT + "search:\n  reward: 'checks:score'\n"
                               "  budget: {max_expansion: 20}\n",
                               "{file}:6: search.budget.max_expansion: unknown field"),
    "search_zero_samples": ("agents:\n  a: {}\n" + ONE_AGENT + "search: {reward: 'checks:score', k: 0}\n",
                            "{file}:4: search.k: Input should be greater than or equal to 1, got 0"),
    "mcp_with_command_and_url": ("tools:\n  m: {mcp: {command: [x], url: 'http://127.0.0.1:1'}}\nagents:\n"
                                 "  a: {tools: [m]}\n" + ONE_AGENT,
                                 "{file}:2: tools.m.mcp: give exactly one of command (stdio) or url (streamable HTTP)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_malformed_config_gets_an_exact_error(case: str, tmp_path: Path) -> None:
    text, expected = CASES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    assert str(caught.value) == expected.replace("{file}", str(path))


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text("agents:\n  a:\n    max_steps: 0\n    temperature: hot\n" + ONE_AGENT)
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    assert str(caught.value).splitlines() == [
        f"{path}:3: agents.a.max_steps: Input should be greater than or equal to 1, got 0",
        f"{path}:4: agents.a.temperature: Input should be a valid number, unable to parse string as a number, "
        f"got 'hot'"]


def test_a_directory_of_files_is_one_config_and_names_clashes(tmp_path: Path) -> None:
    (tmp_path / "agents.yaml").write_text("agents:\n  a: {role: writes}\n")
    (tmp_path / "workflow.yaml").write_text(ONE_AGENT)
    config, _ = read_config(tmp_path)
    assert config.agents["a"].role == "writes" and config.workflow.agents == ["a"]
    (tmp_path / "more.yaml").write_text("agents:\n  a: {role: reads}\n")
    with pytest.raises(ConfigError, match=r"agents.yaml:2 and .*more.yaml: agents.a is defined twice"):
        read_config(tmp_path)


def test_environment_variables_fill_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAOBAB_TEST_MODEL", "scripted:hi")
    path = tmp_path / "env.yaml"
    path.write_text("agents:\n  a:\n    model: ${BAOBAB_TEST_MODEL}\n    role: ${BAOBAB_TEST_ROLE:-helper}\n"
                    + ONE_AGENT)
    config, _ = read_config(path)
    assert (config.agents["a"].model, config.agents["a"].role) == ("scripted:hi", "helper")
