"""The `baobab` command, run as a user would: a real subprocess on a real database file."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = f"{ROOT / 'examples' / 'quickstart.py'}:graph"


def baobab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BAOBAB_DATA_DIR": str(cwd / "data"), "COLUMNS": "200"}
    env.pop("BAOBAB_DB_URL", None)
    return subprocess.run(["baobab", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_version(tmp_path: Path) -> None:
    out = baobab("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "baobab 0.1.0"


def test_serve_help_gives_the_local_model_sizing(tmp_path: Path) -> None:
    out = baobab("serve", "--help", cwd=tmp_path)
    assert out.returncode == 0
    assert "MB resident" in out.stdout and "KB of KV cache" in out.stdout and "--alias" in out.stdout


def test_run_then_list_and_show_the_thread(tmp_path: Path) -> None:
    text = "Baobabs live long. They store water in their trunks."
    out = baobab("run", EXAMPLE, "--input", json.dumps({"text": text}), "--thread", "demo", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "2 sentences, 9 words; longest: 'They store water in their trunks' (6 words)" in out.stdout
    assert "thread demo done at step 3" in out.stdout
    listed = baobab("threads", "list", cwd=tmp_path)
    assert "demo" in listed.stdout and "quickstart" in listed.stdout and "done" in listed.stdout
    shown = baobab("threads", "show", "demo", cwd=tmp_path)
    assert shown.returncode == 0
    assert "score, score" in shown.stdout and "report" in shown.stdout  # the history's next tasks


def test_interrupted_run_is_resumed_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(
        "from pydantic import BaseModel\n"
        "from baobab.graphs import END, START, Graph\n"
        "class S(BaseModel):\n    answer: str = ''\n"
        "def ask(s, ctx):\n    return {'answer': ctx.interrupt('name?')}\n"
        "graph = Graph(S).node('ask', ask).edge(START, 'ask').edge('ask', END)\n")
    first = baobab("run", "flow.py:graph", "--thread", "h", cwd=tmp_path)
    assert first.returncode == 0 and 'interrupted inside ask: "name?"' in first.stdout
    second = baobab("run", "flow.py:graph", "--resume", "h", "--value", '"Ada"', cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert '"answer": "Ada"' in second.stdout and "thread h done" in second.stdout


def test_graph_draw_mermaid_and_dot(tmp_path: Path) -> None:
    mermaid = baobab("graph", "draw", EXAMPLE, cwd=tmp_path)
    assert mermaid.stdout.startswith("flowchart TD") and "-.->" in mermaid.stdout
    dot = baobab("graph", "draw", EXAMPLE, "--format", "dot", cwd=tmp_path)
    assert dot.stdout.startswith('digraph "quickstart"')


@pytest.mark.parametrize(("args", "message"), [
    (["run", EXAMPLE, "--input", '{"text": '], "--input is not valid JSON"),
    (["run", "missing.py:graph"], "file 'missing.py' not found"),
    (["run", "nocolon"], "expected FILE.py:NAME"),
    (["run", f"{ROOT / 'examples' / 'quickstart.py'}:nothing"], "has no 'nothing'"),
    (["run", f"{ROOT / 'examples' / 'quickstart.py'}:Review"], "expected a baobab Graph"),
    (["graph", "draw", EXAMPLE, "--format", "png"], "--format must be mermaid or dot"),
    (["run", EXAMPLE, "--search", "mcts"], "searches over graphs run from YAML workflows"),
    (["run", EXAMPLE, "--budget", "lots"], "expected N (model calls) or LIMIT=N,... with LIMIT among"),
    (["run", EXAMPLE, "--budget", "expansions=0"], "max_expansions: Input should be greater than or equal to 1"),
])
def test_bad_arguments_get_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    out = baobab(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert message in " ".join((out.stdout + out.stderr).replace("│", " ").split())


def failing_graph(folder: Path, message: str) -> None:
    """bad.py in `folder`: a graph whose one node raises RuntimeError(message)."""
    (folder / "bad.py").write_text(
        "from pydantic import BaseModel\nfrom baobab.graphs import END, START, Graph\n"
        "class S(BaseModel):\n    n: int = 0\n"
        f"def boom(s):\n    raise RuntimeError({message!r})\n"
        "graph = Graph(S).node('boom', boom).edge(START, 'boom').edge('boom', END)\n")


def test_a_failing_run_exits_1_and_says_how_to_go_on(tmp_path: Path) -> None:
    failing_graph(tmp_path, "disk on fire")
    out = baobab("run", "bad.py:graph", "--thread", "x", cwd=tmp_path)
    assert out.returncode == 1 and "node 'boom' failed at step 1 of thread 'x'" in out.stderr
    shown = baobab("threads", "show", "x", cwd=tmp_path)
    assert "status error" in shown.stdout and "disk on fire" in shown.stdout


def test_validate_names_file_line_and_field(tmp_path: Path) -> None:
    good = baobab("validate", str(ROOT / "examples" / "team.yaml"), cwd=tmp_path)
    assert good.returncode == 0 and "ok (2 agents, sequential workflow)" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents:\n  a:\n    max_steps: many\nworkflow: {type: sequential, agents: [a]}\n")
    out = baobab("validate", str(bad), cwd=tmp_path)
    assert out.returncode == 2
    assert f"{bad}:3: agents.a.max_steps: Input should be a valid integer" in out.stderr


def test_run_a_yaml_workflow_with_inputs_then_resume_after_a_budget_stop(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("agents:\n  echo: {model: 'scripted:done'}\n  again: {model: 'scripted:twice'}\n"
                    "workflow: {type: sequential, agents: [echo, again], task: 'Say {word}'}\n"
                    "inputs:\n  word: {}\nbudgets:\n  run: {max_model_calls: 1}\n")
    out = baobab("run", str(flow), "--input", "word=hi", "--thread", "y1", cwd=tmp_path)
    assert out.returncode == 1 and "run: budget of 1 model calls reached" in out.stderr
    assert f"continue: baobab run {flow} --resume y1" in out.stderr
    resumed = baobab("run", str(flow), "--resume", "y1", cwd=tmp_path)  # a fresh budget for the rest
    assert resumed.returncode == 0, resumed.stderr
    assert '"output": "twice"' in resumed.stdout and "thread y1 done at step 2" in resumed.stdout
    missing = baobab("run", str(flow), cwd=tmp_path)
    assert missing.returncode == 2 and f"{flow}:6: inputs.word: required: give --input word=VALUE" in missing.stderr


def test_run_with_search_prints_the_best_run_and_search_show_prints_the_tree(tmp_path: Path) -> None:
    (tmp_path / "judge.py").write_text("def score(state):\n    return {'best': 1.0, 'fair': 0.5}.get(state.output)\n")
    flow = tmp_path / "flow.yaml"
    flow.write_text("models:\n  varied: {model: 'scripted:', options: {replies: [fair, poor, best, poor]}}\n"
                    "agents:\n  writer: {model: varied}\nworkflow: {type: sequential, agents: [writer]}\n"
                    "search: {strategy: greedy, reward: 'judge:score'}\n")
    out = baobab("run", str(flow), "-i", "task=Write", "--search", "mcts", "--budget", "expansions=5,model_calls=9",
                 "--thread", "s1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert 'result: "best"' in out.stdout
    assert "search s1 best reward 1 (1 expansions, 4 model calls, stopped by done)" in out.stdout
    assert "the tree: baobab search show s1" in out.stdout
    shown = baobab("search", "show", "s1", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "search s1 mcts done, stopped by done: 1 expansions, 4 model calls"
    assert lines[1] == "* root  value 0.375  visits 4  reward 0"  # one rollout (poor) and three samples backed up
    samples = lines[2:]  # the choice point's three outputs, each ended and scored; the best one starred
    assert [("* " in line, line.split('"content": ')[1][:6], line.split("  ", 1)[1]) for line in samples] == [
        (False, '"fair"', "value 0.500  visits 1  reward 0.5  done"),
        (False, '"poor"', "value 0.000  visits 1  reward 0  done"),
        (True, '"best"', "value 1.000  visits 1  reward 1  done")]
    assert baobab("search", "show", "s1", "--depth", "0", cwd=tmp_path).stdout.splitlines()[1:] == [lines[1]]
    sectioned = baobab("run", str(flow), "-i", "task=Write", "--budget", "9", "--thread", "s2", cwd=tmp_path)
    assert sectioned.returncode == 0, sectioned.stderr  # the section's strategy (greedy), 9 model calls at most
    assert "search s2 best reward 1 (1 expansions, 3 model calls, stopped by done)" in sectioned.stdout
    valid = baobab("validate", str(flow), cwd=tmp_path)
    assert "ok (1 agents, sequential workflow, greedy search)" in valid.stdout
    missing = baobab("search", "show", "nope", cwd=tmp_path)
    assert missing.returncode == 1 and "no search named 'nope'" in missing.stderr


def test_errors_in_a_pipe_are_plain_text_one_line_per_problem(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"  # two problems, one of them only the run's inputs show
    flow.write_text("agents:\n  a: {model: 'scripted:x', tools: [pyhton]}\n"
                    "workflow: {type: sequential, agents: [a], task: 'Say [red]{word}[/]'}\ninputs:\n  word: {}\n")
    config = baobab("run", str(flow), cwd=tmp_path)
    assert config.returncode == 2 and config.stderr.splitlines() == [
        f"{flow}:2: agents.a.tools.0: 'pyhton' is not a tool of this file ([]) nor a built-in (['calculator', "
        "'files', 'http_get', 'list_files', 'python', 'read_file', 'write_file'])",
        f"{flow}:5: inputs.word: required: give --input word=VALUE"]
    failing_graph(tmp_path, "[red]disk[/] on fire")
    failed = baobab("run", "bad.py:graph", "--thread", "x", cwd=tmp_path)
    assert failed.returncode == 1 and "error: node 'boom' failed at step 1 of thread 'x'" in failed.stderr
    assert "[red]disk[/] on fire" in failed.stderr  # a message's own brackets are text, never markup
    for out in (config, failed):
        assert "\x1b[" not in out.stderr and "[red]error" not in out.stderr and "error:[/]" not in out.stderr


def test_threads_prune_and_delete_say_what_went_and_name_bad_input(tmp_path: Path) -> None:
    (tmp_path / "count.py").write_text(
        "from pydantic import BaseModel\nfrom baobab.graphs import END, START, Graph\n"
        "class S(BaseModel):\n    n: int = 0\n"
        "graph = Graph(S).node('inc', lambda s: {'n': s.n + 1}).edge(START, 'inc')\n"
        "graph.route('inc', lambda s: 'inc' if s.n < 12 else END, ['inc', END])\n")
    assert baobab("run", "count.py:graph", "--thread", "c", cwd=tmp_path).returncode == 0
    pruned = baobab("threads", "prune", "--keep-last", "3", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.startswith("pruned 10 checkpoints and 9 writes (")  # steps 0-9; step 0 had none
    assert "B) from 1 thread (c); 3 checkpoints kept" in pruned.stdout
    again = baobab("threads", "prune", "c", "--older-than", "1d", cwd=tmp_path)
    assert "pruned 0 checkpoints and 0 writes (0 B) from 0 threads; 3 checkpoints kept" in again.stdout
    bad = baobab("threads", "prune", "--older-than", "7x", cwd=tmp_path)
    assert bad.returncode == 1 and "bad duration '7x': expected a number and a unit" in bad.stderr
    unknown = baobab("threads", "delete", "c", "nope", cwd=tmp_path)
    assert unknown.returncode == 1 and "no thread named 'nope' in sqlite:///" in unknown.stderr
    deleted = baobab("threads", "delete", "c", cwd=tmp_path)
    assert deleted.returncode == 0 and deleted.stdout.startswith("deleted 1 thread (c): 3 checkpoints and 3 writes (")
    assert "c" not in baobab("threads", "list", cwd=tmp_path).stdout.split()
