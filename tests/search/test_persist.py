"""Persisted searches: every step committed, a finished run returned as stored, kill -9 resumed exactly."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from baobab.engine.budget import Spend
from baobab.search import DeceptiveTree, Node, Tree, search
from baobab.store import Store
from baobab.store.schema import search_nodes, search_runs

WORKER = Path(__file__).with_name("resume_worker.py")
ENV = DeceptiveTree()
FIXED = ("id", "parent", "action", "state", "observation", "reward", "done", "prior", "depth")


def stored(url: str) -> tuple[str | None, Tree | None]:
    """The run's status and its tree as committed."""
    store = Store(url)
    try:
        with store.transaction() as conn:
            status = conn.execute(select(search_runs.c.status)).scalar()
            datas = conn.execute(select(search_nodes.c.data)).scalars().all()
    finally:
        store.close()
    return status, Tree.from_nodes([Node.from_dict(json.loads(d)) for d in datas]) if datas else None


async def refuse(state: list[int], path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
    raise AssertionError("a finished run must not propose again")


def test_every_step_is_committed_and_a_finished_run_returns_its_result(db_url: str) -> None:
    first = search(ENV, "mcts", budget={"max_expansions": 25}, store=db_url, run="s1", batch=2)
    status, tree = stored(db_url)
    assert status == "done" and tree is not None and tree.to_json() == first.tree.to_json()
    again = search(ENV, "mcts", budget={"max_expansions": 25}, store=db_url, run="s1", batch=2, proposer=refuse)
    assert again.tree.to_json() == first.tree.to_json()
    assert (again.reward, again.expansions, again.stopped_by) == (first.reward, 25, "max_expansions")


def test_resuming_with_other_options_is_refused(store_url: str) -> None:
    search(ENV, "beam", budget={"max_expansions": 3}, store=store_url, run="b", width=2)
    with pytest.raises(ValueError, match=r"search run 'b' was started with .*'width': 2.*'width': 3"):
        search(ENV, "beam", store=store_url, run="b", width=3)
    with pytest.raises(ValueError, match="'strategy': 'beam'"):
        search(ENV, "bfs", store=store_url, run="b")


def test_a_bad_option_leaves_no_run_behind(store_url: str) -> None:
    with pytest.raises(ValueError, match="selection"):
        search(ENV, "mcts", store=store_url, run="m", selection="bogus")
    assert stored(store_url) == (None, None)


def test_an_error_marks_the_run_and_a_rerun_resumes_where_it_stopped(db_url: str) -> None:
    calls: list[list[int]] = []

    async def flaky(state: list[int], path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        if len(calls) == 12:
            raise RuntimeError("the model server went away")
        calls.append(state)
        return [(a, 1 / 3) for a in ENV.actions(state)]

    budget = {"max_expansions": 14}  # levels of 1, 3, 4 and 4 nodes, then 2 of the fifth level's 4
    with pytest.raises(RuntimeError, match="went away"):
        search(ENV, "bfs", budget=budget, store=db_url, run="e", breadth=4, proposer=flaky)
    status, before = stored(db_url)
    assert status == "error" and before is not None and before.expansions == 12  # four levels committed
    calls.append([-1])  # lets the proposer work again
    result = search(ENV, "bfs", budget=budget, store=db_url, run="e", breadth=4, proposer=flaky)
    assert result.expansions == 14 and result.stopped_by == "max_expansions" and len(calls) == 13 + 2
    expanded_before = [n.state for n in before.nodes if n.expanded]
    assert not any(state in calls[13:] for state in expanded_before)  # nothing committed was proposed again
    assert result.tree.to_json() == search(ENV, "bfs", budget=budget, breadth=4).tree.to_json()


@pytest.mark.parametrize("strategy", ["mcts", "dfs"])  # resumes from statistics / replays over the tree
def test_kill_9_mid_search_then_resume_redoes_nothing_and_loses_nothing(db_url: str, tmp_path: Path,
                                                                         strategy: str) -> None:
    budget, log1, log2 = 40, tmp_path / "first.log", tmp_path / "second.log"
    # 0.15 s an expansion: the search outlasts a slow poll of the store (PostgreSQL on a busy machine) by seconds
    proc = subprocess.Popen([sys.executable, str(WORKER), db_url, "job", strategy, str(budget), str(log1), "0.15"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the worker never got far enough"
        tree = stored(db_url)[1] if _has_tables(db_url) else None
        if tree is not None and tree.expansions >= 12:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    status, before = stored(db_url)
    assert status == "running" and before is not None and 12 <= before.expansions < budget

    done = subprocess.run([sys.executable, str(WORKER), db_url, "job", strategy, str(budget), str(log2), "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["expansions"] == budget
    status, after = stored(db_url)
    assert status == "done" and after is not None and after.expansions == budget
    for node in before.nodes:  # the pre-crash nodes, unchanged (MCTS goes on adding visits to them)
        assert {f: getattr(node, f) for f in FIXED} == {f: getattr(after.nodes[node.id], f) for f in FIXED}
        assert node.expanded <= after.nodes[node.id].expanded
    first, second = _states(log1), _states(log2)
    committed = [n.state for n in before.nodes if n.expanded]
    assert not [s for s in second if s in committed]  # nothing committed was redone
    assert len(first) - len(committed) <= 2 and len(committed) + len(second) == budget  # only in-flight work
    # and the whole is what one uninterrupted search builds
    options: dict[str, Any] = {"batch": 2} if strategy == "mcts" else {}
    assert after.to_json() == search(ENV, strategy, budget={"max_expansions": budget}, **options).tree.to_json()


def _has_tables(url: str) -> bool:
    return stored(url)[0] is not None


def _states(log: Path) -> list[list[int]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("strategy", ["lookahead", "backtrack"])  # replay their decisions over the stored tree
def test_lookahead_and_backtracking_resume_where_an_error_stopped_them(store_url: str, strategy: str) -> None:
    calls: list[list[int]] = []

    async def flaky(state: list[int], path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        if len(calls) == 9:
            raise RuntimeError("the model server went away")
        calls.append(state)
        return [(a, 1 / 3) for a in ENV.actions(state)]

    budget = {"max_expansions": 16}
    with pytest.raises(RuntimeError, match="went away"):
        search(ENV, strategy, budget=budget, store=store_url, run="r", proposer=flaky)
    status, before = stored(store_url)
    assert status == "error" and before is not None and 6 <= before.expansions <= 9  # lookahead commits by round
    calls.append([-1])  # lets the proposer work again
    result = search(ENV, strategy, budget=budget, store=store_url, run="r", proposer=flaky)
    assert result.expansions == 16 and len(calls) == 10 + 16 - before.expansions  # nothing committed is redone
    assert not [s for s in calls[10:] if s in [n.state for n in before.nodes if n.expanded]]
    assert result.tree.to_json() == search(ENV, strategy, budget=budget).tree.to_json()
    assert result.experiences == search(ENV, strategy, budget=budget).experiences
