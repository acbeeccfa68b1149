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
])
def test_bad_arguments_get_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    out = baobab(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert message in " ".join((out.stdout + out.stderr).replace("│", " ").split())


def test_a_failing_run_exits_1_and_says_how_to_go_on(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "from pydantic import BaseModel\nfrom baobab.graphs import END, START, Graph\n"
        "class S(BaseModel):\n    n: int = 0\n"
        "def boom(s):\n    raise RuntimeError('disk on fire')\n"
        "graph = Graph(S).node('boom', boom).edge(START, 'boom').edge('boom', END)\n")
    out = baobab("run", "bad.py:graph", "--thread", "x", cwd=tmp_path)
    assert out.returncode == 1 and "node 'boom' failed at step 1 of thread 'x'" in out.stderr
    shown = baobab("threads", "show", "x", cwd=tmp_path)
    assert "status error" in shown.stdout and "disk on fire" in shown.stdout
