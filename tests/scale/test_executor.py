"""The executor layer without Ray: results committed once, threads run to their end once, searches whose work
is shipped (copied, keyed, recorded) equal searches run in place, and `baobab run --inputs` in one process."""

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from typer.testing import CliRunner
from workloads import SlowTree, entries, slow_pipeline

from baobab.cli import app as cli
from baobab.engine.budget import Spend
from baobab.engine.types import Usage
from baobab.executors import Record, executor, once, open_store, portable_url
from baobab.graphs import App, NodeError
from baobab.graphs.batch import run_batch, run_thread
from baobab.search import asearch, search, uniform_proposer
from baobab.search.tree import Node
from baobab.store import Store
from baobab.store.schema import search_nodes, search_runs, task_results


class Copying:
    """A remote executor in this process: it calls copies of the function and arguments, as a worker would."""

    local = False

    async def call(self, fn: Any, *args: Any, record: Record | None = None) -> Any:
        fn, args = copy.deepcopy((fn, args))
        result = await (once(open_store(record.url), record.key, fn, *args) if record else fn(*args))
        return copy.deepcopy(result)

    async def aclose(self) -> None:
        pass


class Charging:
    """A proposer that makes one 'model call' (charged to the spend) per expansion, and counts them."""

    def __init__(self, env: SlowTree) -> None:
        self.env, self.calls = env, 0

    async def __call__(self, state: Any, path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        self.calls += 1
        spend.charge(Usage(prompt_tokens=len(state) + 1, completion_tokens=2))
        return await uniform_proposer(self.env)(state, path, k, spend)


def test_once_commits_a_result_once_and_the_first_commit_wins_a_race(store_url: str) -> None:
    store, ran = Store(store_url), []

    def compute(value: int) -> dict[str, int]:
        ran.append(value)
        return {"value": value}

    async def racing() -> Any:  # another attempt commits the same key while this one computes
        await once(store, "k2", compute, 2)
        return {"value": 3}

    assert asyncio.run(once(store, "k1", compute, 1)) == {"value": 1}
    assert asyncio.run(once(store, "k1", compute, 99)) == {"value": 1} and ran == [1]  # read back, not run
    assert asyncio.run(once(store, "k2", racing)) == {"value": 2}  # the loser returns the winner's result
    with store.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(task_results)).scalar_one() == 2


def test_run_thread_runs_resumes_after_a_failure_and_reads_a_finished_thread_back(store_url: str,
                                                                                 tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    graph, failing = slow_pipeline(str(log), 0.0), {"b": True}
    inner = graph.nodes["b"].fn

    async def flaky_b(state: Any, ctx: Any) -> Any:
        if failing.pop("b", False):
            raise RuntimeError("b failed once")
        return await inner(state, ctx)

    graph.nodes["b"].fn = flaky_b
    app = App(graph, store_url)
    with pytest.raises(NodeError, match="b failed once"):
        asyncio.run(run_thread(app, {"text": "x"}, "t1"))
    first = asyncio.run(run_thread(app, {"text": "x"}, "t1"))  # resumed: a is not run again
    again = asyncio.run(run_thread(app, {"text": "ignored"}, "t1"))  # done: read back, nothing runs
    assert first.status == again.status == "done" and first.state.text == again.state.text == "x>a>b>c"
    assert again.checkpoint == first.checkpoint and again.step == first.step
    assert [node for kind, _, _, node in entries(log) if kind == "start"] == ["a", "b", "c"]


def test_a_batch_runs_each_input_once_and_keeps_a_failure_in_its_place(store_url: str, tmp_path: Path) -> None:
    app = App(slow_pipeline(str(tmp_path / "log"), 0.0), store_url)

    async def task(text: str, thread: str) -> str:
        if text == "bad":
            raise ValueError("bad input")
        return str((await run_thread(app, {"text": text}, thread)).state.text)  # type: ignore[attr-defined]

    results = asyncio.run(run_batch(executor("local"), task, ["x", "bad", "y"], ["1", "2", "3"], concurrency=2))
    assert results[0] == "x>a>b>c" and results[2] == "y>a>b>c" and isinstance(results[1], ValueError)
    with pytest.raises(ValueError, match="one distinct thread name per input"):
        asyncio.run(run_batch(executor("local"), task, ["x", "y"], ["1", "1"]))


def test_executor_names_and_store_urls_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"unknown executor 'dask'; valid: \['local', 'ray'\]"):
        executor("dask")
    with pytest.raises(ValueError, match="the local executor takes no address"):
        executor("local", "127.0.0.1:6379")
    monkeypatch.chdir(tmp_path)
    assert portable_url("sqlite:///runs.db") == f"sqlite:///{tmp_path / 'runs.db'}"
    with pytest.raises(ValueError, match="in-memory database, which workers cannot share"):
        asyncio.run(asearch(SlowTree(str(tmp_path / "log"), 0.0), "mcts", executor=Copying(), store="sqlite://",
                            run="r"))


def test_a_shipped_search_equals_one_in_place_and_a_rerun_reads_every_result_back(store_url: str,
                                                                                  tmp_path: Path) -> None:
    env = SlowTree(str(tmp_path / "log"), 0.0, depth=4, branching=3)
    options: dict[str, Any] = {"budget": {"max_expansions": 20}, "batch": 3}
    here_proposer, there_proposer = Charging(env), Charging(env)
    here = search(env, "mcts", proposer=here_proposer, **options)
    there = search(env, "mcts", proposer=there_proposer, executor=Copying(), store=store_url, run="r", **options)
    assert [n.to_dict() for n in there.tree.nodes] == [n.to_dict() for n in here.tree.nodes]
    assert (there.model_calls, there.usage) == (here.model_calls, here.usage) == (20, there.usage)
    assert there.usage.completion_tokens == 40 and there_proposer.calls == 0  # the copies were called, not it
    store = Store(store_url)
    with store.transaction() as conn:  # as if the search's process died before its first commit
        conn.execute(delete(search_nodes))
        conn.execute(delete(search_runs))
    log_lines = len(entries(tmp_path / "log"))
    rerun = search(env, "mcts", proposer=there_proposer, executor=Copying(), store=store_url, run="r", **options)
    assert [n.to_dict() for n in rerun.tree.nodes] == [n.to_dict() for n in there.tree.nodes]
    assert len(entries(tmp_path / "log")) == log_lines  # no step ran: every expansion and rollout was read back


def test_baobab_run_inputs_runs_a_batch_here_and_names_a_bad_line(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("agents:\n  echo: {model: 'scripted:done'}\n"
                    "workflow: {type: sequential, agents: [echo], task: 'Say {word}'}\ninputs:\n  word: {}\n")
    rows = tmp_path / "in.jsonl"
    rows.write_text('{"word": "hi"}\n\n{"word": "yo"}\n')
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    runner = CliRunner()
    out = runner.invoke(cli, ["run", str(flow), "--inputs", str(rows), "--thread", "w", "--db", db])
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines == [{"input": 1, "thread": "w-1", "status": "done", "output": "done"},
                     {"input": 2, "thread": "w-2", "status": "done", "output": "done"}]
    assert "2 inputs: 2 done, 0 interrupted, 0 failed" in out.stdout
    rows.write_text('{"word": "hi"}\n["yo"]\n')
    bad = runner.invoke(cli, ["run", str(flow), "--inputs", str(rows), "--db", db])
    assert bad.exit_code == 2 and f"{rows}:2: expected a JSON object of inputs, got list" in bad.output
    wrong = runner.invoke(cli, ["run", str(flow), "--executor", "ray"])
    assert wrong.exit_code == 2 and "an executor runs batch runs: give --inputs" in wrong.output
