"""Graph runtime overhead, LangGraph vs Baobab, same workloads in one run.

    pip install -e '.[bench]' && python benchmarks/graph_overhead.py [--quick]

(a) a chain of 10 trivial nodes in memory, (b) the same with a SQLite checkpointer on a file,
(c) fan-out to 8 parallel branches and a join, in memory, (d) bytes written to the database per step
for threads of 100 and 1,000 steps whose state holds a growing list. Writes a table with ratios to
benchmarks/results/graph_overhead.json.
"""

import argparse
import operator
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, TypedDict

from environment import cpu_name, write_result  # benchmarks/environment.py
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import StateGraph
from pydantic import BaseModel

from baobab.graphs import END, START, Graph, append
from baobab.store import Store

CHAIN, BRANCHES, ITEM = 10, 8, "x" * 64
GOAL = ("Baobab at most half of LangGraph's time per step in (a) chain in memory, (b) chain on SQLite with every "
        "super-step committed before the next, (c) 8-branch fan-out; under 1 KB per step in (d) at any length")


class LGState(TypedDict):
    n: int
    items: Annotated[list[str], operator.add]


class BState(BaseModel):
    n: int = 0
    items: Annotated[list[str], append] = []


def bump(state: Any) -> dict[str, int]:
    return {"n": (state["n"] if isinstance(state, dict) else state.n) + 1}


def grow(state: Any) -> dict[str, Any]:
    return {"n": (state["n"] if isinstance(state, dict) else state.n) + 1, "items": [ITEM]}


def nothing(state: Any) -> dict[str, Any]:
    return {}


def lg_chain(checkpointer: Any = None) -> Any:
    g = StateGraph(LGState)
    for i in range(CHAIN):
        g.add_node(f"n{i}", bump)
        g.add_edge(START if i == 0 else f"n{i - 1}", f"n{i}")
    g.add_edge(f"n{CHAIN - 1}", END)
    return g.compile(checkpointer=checkpointer)


def bb_chain(checkpointer: Any = None) -> Any:
    g = Graph(BState)
    for i in range(CHAIN):
        g.node(f"n{i}", bump).edge(START if i == 0 else f"n{i - 1}", f"n{i}")
    return g.edge(f"n{CHAIN - 1}", END).compile(checkpointer=checkpointer)


def lg_fan_out() -> Any:
    g = StateGraph(LGState)
    g.add_node("join", nothing)
    for i in range(BRANCHES):
        g.add_node(f"b{i}", lambda s: {"items": ["b"]})
        g.add_edge(START, f"b{i}")
    g.add_edge([f"b{i}" for i in range(BRANCHES)], "join")
    g.add_edge("join", END)
    return g.compile()


def bb_fan_out() -> Any:
    g = Graph(BState).node("join", nothing)
    for i in range(BRANCHES):
        g.node(f"b{i}", lambda s: {"items": ["b"]}).edge(START, f"b{i}")
    return g.edge([f"b{i}" for i in range(BRANCHES)], "join").edge("join", END).compile()


def lg_growing(checkpointer: Any, steps: int) -> Any:
    g = StateGraph(LGState)
    g.add_node("grow", grow)
    g.add_edge(START, "grow")
    g.add_conditional_edges("grow", lambda s: "grow" if s["n"] < steps else END, ["grow", END])
    return g.compile(checkpointer=checkpointer)


def bb_growing(checkpointer: Any, steps: int) -> Any:
    g = Graph(BState).node("grow", grow).edge(START, "grow")
    g.route("grow", lambda s: "grow" if s.n < steps else END, ["grow", END])
    return g.compile(checkpointer=checkpointer, recursion_limit=steps + 10)


def per_call(fn: Callable[[], Any], calls: int, repeats: int) -> float:
    """Median over `repeats` batches of the seconds one call takes."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def file_bytes(path: Path) -> int:
    """Size of a SQLite database with its WAL folded in."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about 20 s)")
    args = parser.parse_args()
    calls, repeats = (40, 3) if args.quick else (200, 7)
    tmp = Path(tempfile.mkdtemp(prefix="baobab-bench-"))
    rows: list[dict[str, Any]] = []

    def row(workload: str, unit: str, peer: float | None, ours: float, goal: str, met: bool) -> None:
        rows.append({"workload": workload, "unit": unit, "langgraph": None if peer is None else round(peer, 2),
                     "baobab": round(ours, 2), "ratio": None if peer is None else round(ours / peer, 3),
                     "goal": goal, "met": met})

    # (a) chain in memory, per node step
    lg, bb = lg_chain(), bb_chain()
    peer = per_call(lambda: lg.invoke({"n": 0, "items": []}), calls, repeats) / CHAIN * 1e6
    ours = per_call(lambda: bb.run({"n": 0}), calls, repeats) / CHAIN * 1e6
    row("(a) chain of 10, in memory", "us/step", peer, ours, "<= 0.5x", ours <= peer / 2)

    # (b) chain on a SQLite file: LangGraph's default durability, and its 'sync' (committed each step)
    lg_conn = sqlite3.connect(tmp / "lg_chain.db", check_same_thread=False)
    lg = lg_chain(SqliteSaver(lg_conn))
    bb = bb_chain(Store(f"sqlite:///{tmp / 'bb_chain.db'}"))
    counter = iter(range(10**9))
    b_calls = max(calls // 4, 10)
    peer = per_call(lambda: lg.invoke({"n": 0, "items": []}, {"configurable": {"thread_id": str(next(counter))}}),
                    b_calls, repeats) / CHAIN * 1e6
    peer_sync = per_call(lambda: lg.invoke({"n": 0, "items": []}, {"configurable": {"thread_id": str(next(counter))}},
                                           durability="sync"), b_calls, repeats) / CHAIN * 1e6
    ours = per_call(lambda: bb.run({"n": 0}, thread=str(next(counter))), b_calls, repeats) / CHAIN * 1e6
    row("(b) chain of 10, SQLite file (LangGraph default durability)", "us/step", peer, ours, "<= 0.5x",
        ours <= peer / 2)
    row("(b') same, LangGraph durability='sync'", "us/step", peer_sync, ours, "info", True)
    full = bb_chain(Store(f"sqlite:///{tmp / 'bb_chain_full.db'}", synchronous="FULL"))
    ours_full = per_call(lambda: full.run({"n": 0}, thread=str(next(counter))), b_calls, repeats) / CHAIN * 1e6
    row("(b'') same, Baobab synchronous=FULL (fsync per step)", "us/step", peer_sync, ours_full, "info", True)

    # (c) fan-out to 8 branches and a join, per branch step
    lg, bb = lg_fan_out(), bb_fan_out()
    peer = per_call(lambda: lg.invoke({"n": 0, "items": []}), calls, repeats) / BRANCHES * 1e6
    ours = per_call(lambda: bb.run(), calls, repeats) / BRANCHES * 1e6
    row("(c) fan-out to 8 and join, in memory", "us/branch", peer, ours, "<= 0.5x", ours <= peer / 2)

    # (d) bytes per step of a thread whose state holds a growing list: the file's growth over the
    # same database with its tables made and nothing in them (SQLite files grow by whole pages)
    # LangGraph is not run at 5,000 steps: it stores the whole list at every step (gigabytes there)
    for steps in (100, 1000, 5000):
        peer = None
        if steps <= 1000:
            lg_path = tmp / f"lg_grow{steps}.db"
            lg_conn = sqlite3.connect(lg_path, check_same_thread=False)
            saver = SqliteSaver(lg_conn)
            saver.setup()
            lg_empty = file_bytes(lg_path)
            lg_growing(saver, steps).invoke(
                {"n": 0, "items": []}, {"configurable": {"thread_id": "t"}, "recursion_limit": steps + 10})
            lg_conn.close()
            peer = (file_bytes(lg_path) - lg_empty) / steps
        bb_path = tmp / f"bb_grow{steps}.db"
        store = Store(f"sqlite:///{bb_path}")
        bb_empty = file_bytes(bb_path)
        bb_growing(store, steps).run(thread="t")
        store.close()
        ours = (file_bytes(bb_path) - bb_empty) / steps
        row(f"(d) {steps}-step thread, growing list of {len(ITEM)}-byte items", "bytes/step", peer, ours,
            "< 1024", ours < 1024)

    width = max(len(r["workload"]) for r in rows)
    print(f"{'workload':<{width}}  {'unit':>10}  {'LangGraph':>10}  {'Baobab':>10}  {'ratio':>6}  goal      met")
    for r in rows:
        peer_text = "not run" if r["langgraph"] is None else f"{r['langgraph']:.1f}"
        ratio_text = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        print(f"{r['workload']:<{width}}  {r['unit']:>10}  {peer_text:>10}  {r['baobab']:>10.1f}  "
              f"{ratio_text:>6}  {r['goal']:<8}  {r['met']}")
    met = all(r["met"] for r in rows)
    by = {r["workload"][:3]: r for r in rows}
    summary = (f"per step vs LangGraph: chain {by['(a)']['ratio']:.2f}x, SQLite {by['(b)']['ratio']:.2f}x "
               f"({by['(b)']['baobab']:.0f} us), fan-out {by['(c)']['ratio']:.2f}x; "
               f"{rows[-2]['baobab']:.0f} B/step at 1000 steps vs {rows[-2]['langgraph']:.0f}, "
               f"{rows[-1]['baobab']:.0f} at 5000")
    print(summary, "| goal met:", met)
    result = {
        "goal": GOAL, "met": met, "summary": summary, "table": rows, "quick": args.quick,
        "environment": {
            "cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "sqlite": sqlite3.sqlite_version,
            "versions": {p: version(p) for p in ("baobab", "langgraph", "langgraph-checkpoint-sqlite", "pydantic",
                                                 "sqlalchemy")},
        },
    }
    write_result("graph_overhead", result)


if __name__ == "__main__":
    main()
