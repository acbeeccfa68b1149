"""Searches and batch runs on Ray workers: the same results as in one process, and a worker killed mid-run
(SIGKILL, by PID) loses and duplicates no work."""

import asyncio
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select
from workloads import SlowTree, entries, in_flight, run_slow

from baobab.executors import RayExecutor
from baobab.graphs.batch import run_batch
from baobab.search import asearch, search
from baobab.search.persist import read_run
from baobab.store import Store
from baobab.store.schema import task_results

SEARCH = {"budget": {"max_expansions": 24}, "batch": 4}  # MCTS on a 3-way tree of depth 4: 4 leaves at a time


async def kill_a_busy_worker(executor: RayExecutor, log: Path, *, store: Store | None = None, committed: int = 0,
                             timeout: float = 30) -> int:
    """SIGKILL a worker whose call started since the last look at the log, once `committed` results are in `store`.

    Only a call that has just started is a target: one seen in flight earlier may end before the signal lands
    (the poll, a GIL switch and the kill take milliseconds on a loaded machine), and then no call is lost."""
    pids = set(await executor.pids())
    deadline = time.monotonic() + timeout
    looked: set[str] | None = None  # the calls in flight at the last look; None before the first
    while True:
        done = 0
        if store is not None:
            with store.transaction() as conn:
                done = conn.execute(select(func.count()).select_from(task_results)).scalar_one()
        calls = {call: pid for call, pid in in_flight(log).items() if pid in pids}
        started = [pid for call, pid in calls.items() if looked is not None and call not in looked]
        if started and done >= committed:
            os.kill(started[0], signal.SIGKILL)
            return started[0]
        looked = set(calls)
        assert time.monotonic() < deadline, f"no call started after {committed} results within {timeout} s"
        await asyncio.sleep(0.005)


def test_a_search_whose_worker_is_killed_mid_run_equals_an_uninterrupted_one(ray_address: str, db_url: str,
                                                                                 tmp_path: Path) -> None:
    uninterrupted = search(SlowTree(str(tmp_path / "local.log"), 0.0, depth=4, branching=3), "mcts", **SEARCH)
    log = tmp_path / "ray.log"
    store = Store(db_url)

    async def killed_mid_run() -> tuple[object, int, list[int]]:
        executor = RayExecutor(workers=2, max_retries=3)
        try:
            before = await executor.pids()
            running = asyncio.ensure_future(asearch(SlowTree(str(log), 0.25, depth=4, branching=3), "mcts",
                                                    store=db_url, run="killed", executor=executor, **SEARCH))
            victim = await kill_a_busy_worker(executor, log, store=store, committed=6)
            result = await running
            return result, victim, [p for p in await executor.pids() if p not in before]
        finally:
            await executor.aclose()

    result, victim, restarted = asyncio.run(killed_mid_run())
    tree = result.tree  # type: ignore[attr-defined]
    assert [n.to_dict() for n in tree.nodes] == [n.to_dict() for n in uninterrupted.tree.nodes]
    assert tree.expansions == 24
    stored = read_run(store, "killed")
    assert stored is not None and stored.status == "done" and stored.tree is not None
    assert [n.to_dict() for n in stored.tree.nodes] == [n.to_dict() for n in tree.nodes]
    # every expansion and every evaluation committed exactly once (the key is unique; none is missing)
    evaluations = sum(1 for n in tree.nodes if n.visits and not n.done)
    with store.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(task_results)).scalar_one() == 24 + evaluations
    # the victim was killed with a step in flight; Ray restarted it and the step ran again, to its end, elsewhere
    lines = entries(log)
    by_victim = {kind: Counter(json.dumps(what) for k, pid, *what in lines if pid == victim and k == kind)
                 for kind in ("start", "end")}  # counted: a rollout may repeat an expansion's step on one worker
    lost = [json.loads(w) for w, n in by_victim["start"].items() if n > by_victim["end"][w]]
    assert lost, "the kill did not land in the middle of a call"
    assert all(any(kind == "end" and pid != victim and what == w for kind, pid, *what in lines) for w in lost)
    assert len(restarted) == 1 and victim not in restarted


def test_a_batch_whose_worker_is_killed_resumes_its_runs_from_their_last_checkpoints(ray_address: str,
                                                                                    tmp_path: Path) -> None:
    url, log = f"sqlite:///{tmp_path / 'batch.db'}", tmp_path / "batch.log"
    texts = [f"doc{i}" for i in range(6)]
    threads = [f"b-{i}" for i in range(6)]

    async def killed_mid_batch() -> list[object]:
        executor = RayExecutor(workers=2, max_retries=3)
        try:
            await executor.pids()
            task = functools.partial(run_slow, str(log), 0.1, url)
            running = asyncio.ensure_future(run_batch(executor, task, texts, threads, concurrency=4))
            await kill_a_busy_worker(executor, log)
            return await running
        finally:
            await executor.aclose()

    results = asyncio.run(killed_mid_batch())
    assert results == [{"thread": t, "status": "done", "text": f"{x}>a>b>c"}
                       for t, x in zip(threads, texts, strict=True)]
    runs = Counter((thread, node) for kind, _, thread, node in entries(log) if kind == "start")
    # each node ran once per thread; only the nodes in flight at the kill ran twice (their step was not committed)
    assert set(runs) == {(t, n) for t in threads for n in "abc"}
    again = [key for key, count in runs.items() if count > 1]
    assert 1 <= len(again) <= 4 and all(count <= 2 for count in runs.values()), runs


def test_baobab_run_inputs_on_ray_runs_each_input_once_and_a_second_run_reads_them_back(
        ray_address: str, ray_variables: dict[str, str], tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("agents:\n  echo: {model: 'scripted:done'}\n"
                    "workflow: {type: sequential, agents: [echo], task: 'Say {word}'}\ninputs:\n  word: {}\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"word": w}) + "\n" for w in ("hi", "yo", "hey")))
    env = {**os.environ, **ray_variables}
    command = ["baobab", "run", str(flow), "--inputs", str(tmp_path / "in.jsonl"), "--executor", "ray",
               "--address", ray_address, "--thread", "words", "--db", f"sqlite:///{tmp_path / 'runs.db'}"]
    first = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "3 inputs: 3 done" in first.stdout and first.stdout.count('"status": "done"') == 3, first.stdout
    assert f"Connecting to existing Ray cluster at address: {ray_address}" in first.stderr  # on loopback
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    with store.transaction() as conn:
        steps = conn.exec_driver_sql("SELECT t.name, count(c.id) FROM threads t JOIN checkpoints c ON c.thread = t.id "
                                     "GROUP BY t.name ORDER BY t.name").all()
    assert steps == [("words-1", 2), ("words-2", 2), ("words-3", 2)]  # the input's step and the agent's
    second = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert second.returncode == 0 and "3 inputs: 3 done" in second.stdout, second.stderr
    with store.transaction() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM checkpoints").scalar_one() == 6  # nothing ran again


def test_more_workers_than_the_cluster_can_place_is_an_error_not_a_wait(ray_address: str) -> None:
    with pytest.raises(ValueError, match=r"3 workers of num_cpus=1.0 need 3 CPUs, but the Ray cluster has 2"):
        RayExecutor(workers=3)
    executor = RayExecutor(workers=3, num_cpus=0.5)  # 1.5 of the 2 CPUs: all three start
    try:
        assert len(set(asyncio.run(executor.pids()))) == 3
    finally:
        asyncio.run(executor.aclose())


def test_baobab_run_inputs_on_ray_without_an_address_starts_its_own_ray_on_loopback(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("agents:\n  echo: {model: 'scripted:done'}\n"
                    "workflow: {type: sequential, agents: [echo], task: 'Say {word}'}\ninputs:\n  word: {}\n")
    (tmp_path / "in.jsonl").write_text('{"word": "hi"}\n{"word": "yo"}\n')
    ray_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # none of ray_env.sh's settings
    command = ["baobab", "run", str(flow), "--inputs", str(tmp_path / "in.jsonl"), "--executor", "ray",
               "--thread", "own", "--db", f"sqlite:///{tmp_path / 'runs.db'}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env={**env, "RAY_TMPDIR": ray_dir},
                              cwd=tmp_path, timeout=180)
        assert done.returncode == 0 and "2 inputs: 2 done" in done.stdout, done.stderr
        logs = " ".join(p.read_text(errors="replace") for p in Path(ray_dir).rglob("logs/*") if p.is_file())
        addresses = set(re.findall(r"\b(?:\d{1,3}\.){3}\d{1,3}\b", logs))
        assert addresses == {"127.0.0.1"}, addresses  # Ray's processes bound and spoke on loopback only
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
