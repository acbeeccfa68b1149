"""Scale: search rollouts and batch runs on the local executor vs Ray with 1 and 2 workers, SQLite vs PostgreSQL.

    python benchmarks/scale_rollouts.py [--quick]

The model is scripted with a fixed latency (LATENCY s a call, an asyncio sleep: a remote model's wait, no CPU
here), so what is measured is the framework: the search, the graph runtime, the executor and the store.
- search: MCTS (batch BATCH) over a deceptive tree of depth 10 and branching 4, stored as a named run; an
  expansion is one model call, an evaluation one model call and random playouts: ROLLOUTS["wait"] of them
  (about 2 ms of CPU: the work is waiting on the model) or ROLLOUTS["cpu"] (about 30 ms: simulations, the
  work a worker adds a core for). Throughput: expansions + evaluations per second ("search tasks/s").
- batch: a 3-node graph, each node one model call, one checkpoint per node; N inputs, at most 32 in flight
  (`run_batch`, one thread per input). Throughput: runs per second.
- overheads: a no-op call through each executor, and through a plain Ray task (the peer: Ray's own cost), one
  at a time (round trip) and 1000 at once (throughput, and the CPU the driver and the worker spend per call).
- store: `once()` commits per second (the write every Ray task makes), from this process alone and from two
  Ray workers at once.
From these, the throughput that 100 workers would reach is projected: the least of what the workers, the
driver (one process coordinates a search) and the store can each sustain. Ray starts once, on 127.0.0.1,
with ../shared/scripts/ray_env.sh's variables (this script re-executes itself under it); PostgreSQL is a
throwaway server started from /usr/lib/postgresql/15/bin (default settings: fsync on). Writes
benchmarks/results/scale_rollouts.json.
"""

import argparse
import asyncio
import functools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "scale_rollouts.json"
RAY_ENV = HERE.parent.parent / "shared" / "scripts" / "ray_env.sh"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
LATENCY = 0.02  # seconds per model call
BATCH = 32  # MCTS leaves expanded and evaluated at once
ROLLOUTS = {"wait": 60, "cpu": 2000}  # random playouts per evaluation: the CPU part of a rollout, light or heavy
GOAL = ("Ray workers add throughput where the work is in them: on CPU-bound search rollouts 2 workers at least "
        "1.5x 1 worker (scaling efficiency >= 0.75) on SQLite and PostgreSQL; wait-bound searches and batch runs "
        "reported with their bottleneck, and a 100-worker projection from measured per-task costs and store write "
        "rates")

if __name__ == "__main__" and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
    # Ray reads these when imported and when it starts: without them it binds to the external address
    os.execvp("bash", ["bash", "-c", f'source "{RAY_ENV}" >/dev/null && exec "$0" "$@"', sys.executable, *sys.argv])

import ray  # noqa: E402 - after the re-execution above
from environment import cpu_name, versions  # noqa: E402 - benchmarks/environment.py

from baobab.agents.state import TeamState  # noqa: E402
from baobab.engine import ScriptedLLM  # noqa: E402
from baobab.engine.budget import BudgetedLLM, Spend  # noqa: E402
from baobab.engine.types import Completion, Request  # noqa: E402
from baobab.executors import Executor, LocalExecutor, RayExecutor, Record, once, open_store  # noqa: E402
from baobab.graphs import END, START, App, Graph  # noqa: E402
from baobab.graphs.batch import run_batch, run_thread  # noqa: E402
from baobab.search import DeceptiveTree, Node, asearch, rollout_evaluator  # noqa: E402


class LatencyModel(ScriptedLLM):
    """Answers "ok" after `latency` seconds of waiting (no CPU), as a remote model would."""

    def __init__(self, latency: float) -> None:
        super().__init__(["ok"], cycle=True)
        self.latency = latency

    async def _complete(self, request: Request) -> Completion:
        await asyncio.sleep(self.latency)
        self.requests.clear()  # a long run keeps no history
        return await super()._complete(request)


class ModelProposer:
    """One model call per expansion, then every legal move with a uniform prior."""

    def __init__(self, env: DeceptiveTree, llm: LatencyModel) -> None:
        self.env, self.llm = env, llm

    async def __call__(self, state: Any, path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        await BudgetedLLM(self.llm, spend).complete(prompt=f"moves after {state}", max_tokens=4)
        actions = self.env.actions(state)
        return [(a, 1 / len(actions)) for a in actions]


class ModelRollouts:
    """One model call per evaluation, then `rollouts` random playouts (the CPU part)."""

    def __init__(self, env: DeceptiveTree, llm: LatencyModel, rollouts: int) -> None:
        self.llm, self.playouts = llm, rollout_evaluator(env, rollouts=rollouts)

    async def __call__(self, state: Any, path: list[Node], spend: Spend) -> float:
        await BudgetedLLM(self.llm, spend).complete(prompt=f"value of {state}", max_tokens=4)
        return await self.playouts(state, path, spend)


def pipeline(llm: LatencyModel) -> Graph:
    """Three nodes in a row, each one model call; a checkpoint after each."""

    def node(name: str) -> Callable[[TeamState], Awaitable[dict[str, Any]]]:
        async def run(state: TeamState) -> dict[str, Any]:
            said = (await llm.complete(prompt=f"{name}: {state.task}", max_tokens=4)).text
            return {"output": f"{state.output or state.task}>{name}:{said}", "rounds": state.rounds + 1}

        return run

    graph = Graph(TeamState, name="pipeline")
    for name in ("plan", "write", "check"):
        graph.node(name, node(name))
    return graph.edge(START, "plan").edge("plan", "write").edge("write", "check").edge("check", END)


async def batch_task(db: str, latency: float, task: str, thread: str) -> str:
    """One input of the batch: the pipeline on `task` as `thread`, run to its end once."""
    result = await run_thread(App(pipeline(LatencyModel(latency)), open_store(db)), {"task": task}, thread)
    return str(result.state.output)  # type: ignore[attr-defined]


def noop() -> None:
    """The no-op call whose round trip is an executor's own cost."""


@ray.remote
def ray_noop() -> None:
    """The peer: a plain Ray task doing nothing."""


# ---- measurements ------------------------------------------------------------------------------------------


async def search_row(executor: Executor, url: str, name: str, expansions: int, rollouts: int) -> dict[str, Any]:
    env, llm = DeceptiveTree(depth=10, branching=4), LatencyModel(LATENCY)
    one_worker = isinstance(executor, RayExecutor) and len(executor.workers) == 1  # its CPU can be read
    worker_cpu = await executor.call(time.process_time) if one_worker else 0.0
    started, cpu = time.perf_counter(), time.process_time()
    result = await asearch(env, "mcts", budget={"max_expansions": expansions}, proposer=ModelProposer(env, llm),
                           evaluator=ModelRollouts(env, llm, rollouts), store=url, run=name, executor=executor,
                           batch=BATCH)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    evaluations = sum(1 for n in result.tree.nodes if n.visits and not n.done)
    tasks = result.expansions + evaluations
    assert result.expansions == expansions and result.model_calls == tasks, (result.expansions, result.model_calls)
    row = {"tasks": tasks, "wall_s": round(wall, 2), "tasks_per_s": round(tasks / wall, 1),
           "driver_cpu_ms_per_task": round(cpu / tasks * 1000, 3)}
    if one_worker:
        row["worker_cpu_ms_per_task"] = round((await executor.call(time.process_time) - worker_cpu) / tasks * 1000, 3)
    return row


async def batch_row(executor: Executor, url: str, prefix: str, runs: int) -> dict[str, Any]:
    tasks = [f"doc {i}" for i in range(runs)]
    threads = [f"{prefix}-{i}" for i in range(runs)]
    started, cpu = time.perf_counter(), time.process_time()
    results = await run_batch(executor, functools.partial(batch_task, url, LATENCY), tasks, threads, concurrency=32)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    failed = [r for r in results if not isinstance(r, str) or not r.endswith("check:ok")]
    assert not failed, failed[:3]
    return {"runs": runs, "wall_s": round(wall, 2), "runs_per_s": round(runs / wall, 1),
            "driver_cpu_ms_per_run": round(cpu / runs * 1000, 3)}


async def call_costs(executor: Executor | None, n: int) -> dict[str, Any]:
    """A no-op's round trip (one at a time) and throughput (n at once) through `executor` (None: plain Ray tasks)."""

    async def one() -> None:
        await (ray_noop.remote() if executor is None else executor.call(noop))

    for _ in range(20):  # warm: workers up, code shipped
        await one()
    started = time.perf_counter()
    for _ in range(min(n, 300)):
        await one()
    round_trip = (time.perf_counter() - started) / min(n, 300)
    worker_cpu = await executor.call(time.process_time) if isinstance(executor, RayExecutor) else None
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(n)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    row = {"round_trip_ms": round(round_trip * 1000, 3), "calls_per_s": round(n / wall, 1),
           "driver_cpu_ms_per_call": round(cpu / n * 1000, 4)}
    if isinstance(executor, RayExecutor) and len(executor.workers) == 1:
        row["worker_cpu_ms_per_call"] = round((await executor.call(time.process_time) - worker_cpu) / n * 1000, 4)
    return row


async def write_rate(url: str, n: int, executor: Executor | None) -> float:
    """`once()` commits per second: from this process one after another, or on `executor`'s workers at once."""
    tag = f"{time.time_ns()}"
    started = time.perf_counter()
    if executor is None:
        store = open_store(url)
        for i in range(n):
            await once(store, f"w{tag}-{i}", noop)
    else:
        await asyncio.gather(*(executor.call(noop, record=Record(url, f"w{tag}-{i}")) for i in range(n)))
    return round(n / (time.perf_counter() - started), 1)


# ---- setup ---------------------------------------------------------------------------------------------------


@contextmanager
def postgres() -> Iterator[str | None]:
    """A throwaway PostgreSQL 15 on 127.0.0.1 (as the `postgres` OS user), or None if its binaries are missing."""
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        print(f"PostgreSQL binaries not in {PG_BIN} (apt-get install -y postgresql-15): its rows are skipped")
        yield None
        return
    base = Path(tempfile.mkdtemp(prefix="baobab-bench-pg-"))
    shutil.chown(base, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, str(PG_BIN / "initdb"), "-D", str(base / "db"), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(base / "db"), "-l", str(base / "log"), "-w", "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {base}", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(base / "db"), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def rollout_cpu_ms(rollouts: int) -> float:
    """The CPU one evaluation's playouts take here."""
    env = DeceptiveTree(depth=10, branching=4)
    evaluate = rollout_evaluator(env, rollouts=rollouts)
    started = time.process_time()
    for i in range(50):
        asyncio.run(evaluate([i % 4], [], Spend()))
    return round((time.process_time() - started) / 50 * 1000, 3)


async def measure(args: argparse.Namespace, stores: dict[str, str]) -> dict[str, Any]:
    n_calls, expansions, runs = (300, 128, 32) if args.quick else (2000, 768, 192)
    peer = await call_costs(None, n_calls)  # first: a plain task needs a whole CPU, which the pools below reserve
    # both pools live at once on a 2-CPU cluster: each worker reserves half a CPU, or the third would never start
    ray1, ray2 = RayExecutor(workers=1, num_cpus=0.5), RayExecutor(workers=2, num_cpus=0.5)
    executors: dict[str, Executor] = {"local": LocalExecutor(), "ray-1": ray1, "ray-2": ray2}
    try:
        await ray1.pids()
        await ray2.pids()
        overheads = {"ray task (peer)": peer, "local": await call_costs(executors["local"], n_calls),
                     "ray-1": await call_costs(ray1, n_calls), "ray-2": await call_costs(ray2, n_calls)}
        writes = {store: {"one process": await write_rate(url, n_calls // 2, None),
                          "2 ray workers": await write_rate(url, n_calls // 2, ray2)} for store, url in stores.items()}
        rows = []
        for store, url in stores.items():
            for name, executor in executors.items():
                print(f"  {store} {name} ...", flush=True)
                searches = {kind: await search_row(executor, url, f"scale-{store}-{name}-{kind}-{time.time_ns()}",
                                                   expansions // (2 if kind == "cpu" else 1), rollouts)
                            for kind, rollouts in ROLLOUTS.items()}
                batch = await batch_row(executor, url, f"scale-{store}-{name}-{time.time_ns()}", runs)
                rows.append({"store": store, "executor": name, "search": searches["wait"],
                             "search_cpu": searches["cpu"], "batch": batch})
    finally:
        await ray1.aclose()
        await ray2.aclose()
    return {"overheads": overheads, "store_writes_per_s": writes, "rows": rows}


def project(result: dict[str, Any], workers: int = 100) -> dict[str, Any]:
    """What one search on `workers` Ray workers would sustain, per workload: the least of the workers' capacity (a
    core each, at the CPU a task took on the one-worker pool), the driver's (one process coordinates a search: its
    CPU per task on the two-worker pool) and the store's (each task commits its result once)."""
    out: dict[str, Any] = {}
    for (store, kind) in [(store, kind) for store in result["store_writes_per_s"] for kind in ROLLOUTS]:
        rows = {r["executor"]: r["search" if kind == "wait" else "search_cpu"] for r in result["rows"]
                if r["store"] == store}
        per_worker = 1000 / rows["ray-1"]["worker_cpu_ms_per_task"]
        driver_ms = rows["ray-2"]["driver_cpu_ms_per_task"]
        # task results commit once each; a search also commits its tree once per iteration (BATCH leaves, 2 tasks each)
        writes_per_task = 1 + 1 / (2 * BATCH)
        store_rate = max(result["store_writes_per_s"][store].values()) / writes_per_task
        bounds = {"workers": round(workers * per_worker, 1), "driver": round(1000 / driver_ms, 1),
                  "store": round(store_rate, 1)}
        binding = min(bounds, key=bounds.__getitem__)
        out[f"{store}, {kind}-bound search"] = {
            "workers": workers, "bounds_tasks_per_s": bounds, "projected_tasks_per_s": bounds[binding],
            "bottleneck": binding, "workers_kept_busy": round(bounds[binding] / per_worker, 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (under ~3 minutes)")
    args = parser.parse_args()
    started = time.perf_counter()
    load = os.getloadavg()
    with postgres() as pg, tempfile.TemporaryDirectory(prefix="baobab-scale-") as tmp:
        stores = {"sqlite": f"sqlite:///{tmp}/scale.db", **({"postgres": pg} if pg else {})}
        for url in stores.values():
            open_store(url)  # the schema, made once before the workers open it
        ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 _temp_dir=f"{tmp}/ray", object_store_memory=200 * 2**20, log_to_driver=False)
        ray_started = time.perf_counter()
        try:
            result = asyncio.run(measure(args, stores))
        finally:
            ray.shutdown()
    result["projection_100_workers"] = project(result)
    rows = {(r["store"], r["executor"]): r for r in result["rows"]}
    table = []
    for (store, name), row in rows.items():
        local = rows[store, "local"]
        table.append({"store": store, "executor": name, "search_tasks_per_s": row["search"]["tasks_per_s"],
                      "search_vs_local": round(row["search"]["tasks_per_s"] / local["search"]["tasks_per_s"], 2),
                      "cpu_search_tasks_per_s": row["search_cpu"]["tasks_per_s"],
                      "cpu_search_vs_local": round(row["search_cpu"]["tasks_per_s"]
                                                   / local["search_cpu"]["tasks_per_s"], 2),
                      "batch_runs_per_s": row["batch"]["runs_per_s"],
                      "batch_vs_local": round(row["batch"]["runs_per_s"] / local["batch"]["runs_per_s"], 2),
                      "driver_cpu_ms_per_search_task": row["search"]["driver_cpu_ms_per_task"]})
    efficiency = {store: {"search": round(rows[store, "ray-2"]["search"]["tasks_per_s"]
                                          / (2 * rows[store, "ray-1"]["search"]["tasks_per_s"]), 2),
                          "cpu_search": round(rows[store, "ray-2"]["search_cpu"]["tasks_per_s"]
                                              / (2 * rows[store, "ray-1"]["search_cpu"]["tasks_per_s"]), 2),
                          "batch": round(rows[store, "ray-2"]["batch"]["runs_per_s"]
                                         / (2 * rows[store, "ray-1"]["batch"]["runs_per_s"]), 2)}
                  for store in {r["store"] for r in result["rows"]}}
    met = all(e["cpu_search"] >= 0.75 for e in efficiency.values())
    print(f"\n{'store':<9}{'executor':<10}{'search tasks/s':>15}{'vs local':>9}{'cpu-bound':>10}{'vs local':>9}"
          f"{'batch runs/s':>13}{'vs local':>9}{'driver ms/task':>15}")
    for row in table:
        print(f"{row['store']:<9}{row['executor']:<10}{row['search_tasks_per_s']:>15}{row['search_vs_local']:>9}"
              f"{row['cpu_search_tasks_per_s']:>10}{row['cpu_search_vs_local']:>9}"
              f"{row['batch_runs_per_s']:>13}{row['batch_vs_local']:>9}{row['driver_cpu_ms_per_search_task']:>15}")
    print("\nno-op call through each executor (peer: a plain Ray task)")
    for name, cost in result["overheads"].items():
        print(f"  {name:<16} " + ", ".join(f"{k} {v}" for k, v in cost.items()))
    print(f"store commits/s: {result['store_writes_per_s']}")
    print(f"scaling efficiency 1 -> 2 Ray workers: {efficiency}")
    print(f"100 workers: {result['projection_100_workers']}")
    summary = summarise(table, efficiency, result)
    result = {
        "goal": GOAL, "met": met, "summary": summary, "quick": args.quick, "table": table,
        "scaling_efficiency_1_to_2_workers": efficiency, **result,
        "method": {"latency_s": LATENCY, "mcts_batch": BATCH, "rollouts_per_evaluation": ROLLOUTS,
                   "rollout_cpu_ms": {k: rollout_cpu_ms(n) for k, n in ROLLOUTS.items()},
                   "search": "MCTS over DeceptiveTree(depth=10, branching=4), a stored run; a task is one expansion "
                   "or one evaluation; the CPU-bound search runs half the expansions",
                   "batch": "3-node graph, one model call and one checkpoint per node, one thread per input, 32 inputs "
                   "in flight",
                   "ray": "one local cluster (num_cpus=2, 127.0.0.1, no dashboard), RayExecutor actors reserving "
                   "0.5 CPU each, 64 calls in flight per actor; workers commit each search task's result once "
                   "(task_results)",
                   "postgres": "PostgreSQL 15 on 127.0.0.1, default settings (fsync on); SQLite in WAL with "
                   "synchronous=NORMAL (Baobab's default: no fsync per commit)",
                   "ray_start_s": round(ray_started - started, 1)},
        "environment": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform(), "load_average_before": [round(x, 2) for x in load],
                        "load_average_after": [round(x, 2) for x in os.getloadavg()],
                        "versions": versions("baobab", "ray", "sqlalchemy", "psycopg")},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(summary, "| goal met:", met)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT} in {result['wall_s']:.0f} s")
    home = os.environ.get("HOME", "")
    if Path(home).name.startswith("baobab-ray-home."):  # made by ray_env.sh for this run
        shutil.rmtree(home, ignore_errors=True)


def summarise(table: list[dict[str, Any]], efficiency: dict[str, Any], result: dict[str, Any]) -> str:
    """One line: search and batch throughput per executor on SQLite, the scaling efficiency, the bottleneck."""
    sqlite = {r["executor"]: r for r in table if r["store"] == "sqlite"}
    projection = result["projection_100_workers"]
    return (f"SQLite, CPU-bound search tasks/s local {sqlite['local']['cpu_search_tasks_per_s']}, Ray 1 worker "
            f"{sqlite['ray-1']['cpu_search_tasks_per_s']}, 2 workers {sqlite['ray-2']['cpu_search_tasks_per_s']} "
            f"(efficiency {efficiency['sqlite']['cpu_search']}); wait-bound search local "
            f"{sqlite['local']['search_tasks_per_s']} / {sqlite['ray-1']['search_tasks_per_s']} / "
            f"{sqlite['ray-2']['search_tasks_per_s']}; batch runs/s {sqlite['local']['batch_runs_per_s']} / "
            f"{sqlite['ray-1']['batch_runs_per_s']} / {sqlite['ray-2']['batch_runs_per_s']}; Ray no-op round trip "
            f"{result['overheads']['ray-1']['round_trip_ms']} ms (plain Ray task "
            f"{result['overheads']['ray task (peer)']['round_trip_ms']} ms); 100 workers: "
            + ", ".join(f"{s} {p['projected_tasks_per_s']} tasks/s, bound by the {p['bottleneck']}"
                        for s, p in projection.items() if s.startswith("sqlite")))


if __name__ == "__main__":
    main()
