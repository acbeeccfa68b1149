"""kill -9 at random moments (seeded) of graph runs, searches and memory writes in real processes; resume.

Every committed step, expansion and note is present exactly once; side effects repeat only for work in
flight at a kill; the end result equals an uninterrupted run's. `pytest -m long` runs many more seeds.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from baobab.graphs import Checkpointer

WORKER = Path(__file__).with_name("crash_worker.py")
IN_FLIGHT = {"graph": 3, "search": 2, "memory": 1}  # the most work one kill can cut short (parallel tasks, batch)


def start(kind: str, url: str, effects: Path) -> subprocess.Popen[str]:
    Path(f"{effects}.started").unlink(missing_ok=True)
    return subprocess.Popen([sys.executable, str(WORKER), kind, url, str(effects)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def crash_and_resume(kind: str, url: str, effects: Path, seed: int) -> tuple[Any, int]:
    """Kill the worker at up to 3 random moments, then let it finish; its result and how many kills landed."""
    rng, kills = random.Random(seed), 0
    for _ in range(rng.randint(1, 3)):
        proc = start(kind, url, effects)
        deadline = time.monotonic() + 60
        while not Path(f"{effects}.started").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.8))
        if proc.poll() is not None:  # it finished before the kill
            assert proc.returncode == 0, proc.communicate()
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
    done = subprocess.run([sys.executable, str(WORKER), kind, url, str(effects)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), kills


def uninterrupted(kind: str, tmp_path: Path) -> Any:
    out = subprocess.run([sys.executable, str(WORKER), kind, f"sqlite:///{tmp_path / 'calm.db'}",
                          str(tmp_path / "calm.effects")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def check(kind: str, tmp_path: Path, seed: int) -> None:
    url, effects = f"sqlite:///{tmp_path / 'crash.db'}", tmp_path / "crash.effects"
    result, kills = crash_and_resume(kind, url, effects, seed)
    assert result == uninterrupted(kind, tmp_path)  # the same end as a run that was never killed
    done = Counter(effects.read_text().splitlines())
    if kind == "graph":
        cp = Checkpointer(url)
        info = cp.thread("job")
        assert info is not None and info.status == "done"
        nodes = [w.node for w in cp.thread_updates(info.id)]
        assert Counter(nodes) == Counter(result)  # every committed step once
        steps = [c.step for c in cp.history(info.id, "job")]
        assert steps == sorted(set(steps), reverse=True)  # one checkpoint per step, none twice
    if kind == "search":
        states = [json.dumps(n["state"]) for n in result["nodes"] if n["expanded"]]
        assert len(states) == len(set(states))  # every expansion once in the tree
        assert set(done) == set(states)
    if kind == "memory":
        assert len(result) == len(set(result))  # no note twice
        assert set(done) == set(result)
    repeated = sum(n - 1 for n in done.values())
    print(f"{kind} seed {seed}: {kills} kills, {len(done)} units of work, {repeated} repeated (in flight)")
    assert repeated <= kills * IN_FLIGHT[kind], (repeated, kills, done)  # only work in flight at a kill repeats


@pytest.mark.parametrize("kind", ["graph", "search", "memory"])
@pytest.mark.parametrize("seed", [1, 2])
def test_random_kills_lose_nothing_and_repeat_only_work_in_flight(tmp_path: Path, kind: str, seed: int) -> None:
    check(kind, tmp_path, seed)


@pytest.mark.long
@pytest.mark.parametrize("kind", ["graph", "search", "memory"])
@pytest.mark.parametrize("seed", range(3, 13))
def test_many_seeds_of_random_kills(tmp_path: Path, kind: str, seed: int) -> None:
    check(kind, tmp_path, seed)
