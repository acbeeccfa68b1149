"""The examples, run as a user would, on the embedded model: each gives its documented result (the cases of
benchmarks/examples_default_model.py, once each), a Python team from the CLI, and a long-horizon run killed
mid-way and resumed."""

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from baobab.agents.agent import close_shared_models
from baobab.graphs import Checkpointer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
_spec = importlib.util.spec_from_file_location("examples_default_model",
                                               EXAMPLES.parent / "benchmarks" / "examples_default_model.py")
assert _spec is not None and _spec.loader is not None
documented = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(documented)
CASES = [c for c in documented.CASES  # test_docs.py runs the docs block and the main command (analyst.yaml)
         if c.judged and c.name not in ("README agents", "analyst.yaml")]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_an_example_gives_its_documented_result(case: "documented.Case", tmp_path: Path) -> None:
    async def once() -> tuple[bool, str]:
        try:
            return await case.run(0, tmp_path)
        finally:
            await close_shared_models()

    held, said = asyncio.run(once())
    assert held, f"{case.name}: expected {case.promise}, got {said}"


def test_the_python_team_runs_from_the_command_line(tmp_path: Path) -> None:
    out = subprocess.run(["baobab", "run", f"{EXAMPLES / 'research_team.py'}:graph", "--input",
                          json.dumps({"task": "How many legs does a spider have?"}), "--thread", "zoo"],
                         capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr
    assert 'zoologist legs({"animal": "spider"}) -> 8' in out.stdout
    assert "thread zoo done at step 2" in out.stdout and '"legs":' in out.stdout


def test_a_long_horizon_run_survives_kill_9_and_resumes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    command = [sys.executable, str(EXAMPLES / "long_horizon.py"), "--thread", "table", "--rows", "5", "--db", db]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=tmp_path, env=ENV)
    assert proc.stdout is not None
    first = [proc.stdout.readline() for _ in range(2)]
    os.kill(proc.pid, signal.SIGKILL)  # mid-run: rows 1 and 2 are committed, row 3 is being computed
    proc.wait()
    assert [line.split(":")[0] for line in first] == ["row 1", "row 2"]
    info = Checkpointer(db).thread("table")
    assert info is not None and info.status == "interrupted" and info.crashed  # its lease's process is gone

    resumed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    lines = resumed.stdout.splitlines()
    assert lines[0] == "resuming thread table (interrupted)" and lines[-1] == "thread table done: 5 rows"
    assert [line.split(":")[0] for line in lines[1:-1]] == ["row 3", "row 4", "row 5"]  # none done twice


def test_expert_iteration_opens_the_lock_faster_after_training_and_resumes(tmp_path: Path) -> None:
    command = [sys.executable, str(EXAMPLES / "expert_iteration.py"), "--work", str(tmp_path / "work")]
    first = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    lines = first.stdout.splitlines()
    calls = [int(line.split(" in ")[1].split()[0]) for line in lines if "opened in" in line]
    assert len(calls) == 2 and "not opened" not in first.stdout, first.stdout
    assert calls[1] == 4 < calls[0], first.stdout  # the trained model proposes the combination, one call a dial
    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=600)
    assert again.returncode == 0 and again.stdout == first.stdout, again.stderr[-2000:]  # all kept: nothing redone
