"""Work to kill at random moments: a graph run, a search or a stream of memory notes, resumed on each start.

    python crash_worker.py graph|search|memory DB_URL EFFECTS_FILE   # one run; prints the result as JSON
    python crash_worker.py serve                                       # a fork server, for many runs

Every unit of work appends a line to EFFECTS_FILE (the side effect that must not repeat once committed),
and the worker prints the finished result as JSON. Started again after a kill, it resumes.

`serve` pays for the imports once: it reads `run KIND URL EFFECTS OUT` lines and answers each with the pid
of a forked process doing that run (its JSON to OUT, a traceback to OUT.err), and `wait PID` lines with
that process's exit status (negative: the signal that killed it). The processes open the store only
after the fork, so each is a fresh process as far as SQLite is concerned.
"""

import asyncio
import hashlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel

from baobab.engine.budget import Spend
from baobab.graphs import END, START, Checkpointer, Graph, append
from baobab.memory import Memory
from baobab.search import DeceptiveTree, Node, search

NODES = ["s0", "s1", "s2", "s3", "p1", "p2", "p3", "j", "t0", "t1", "t2", "t3"]
NOTES = [f"note {i}: the baobab stores water in its trunk, fact number {i}" for i in range(24)]
EXPANSIONS = 30


class Log(BaseModel):
    log: Annotated[list[str], append] = []


def record(effects: Path, unit: str) -> None:
    """The side effect of one unit of work: a line in the effects file."""
    with effects.open("a") as f:
        f.write(unit + "\n")


def graph(effects: Path) -> Graph:
    """s0..s3 one after another, p1..p3 in parallel, the join j, then t0..t3; each node sleeps around its effect."""
    def node(name: str) -> Any:
        def run(state: Log) -> dict[str, list[str]]:
            pause = 0.01 + (int(hashlib.sha1(name.encode()).hexdigest(), 16) % 5) / 100
            time.sleep(pause)
            record(effects, name)
            time.sleep(pause)  # work after the side effect: a kill here catches it done but not committed
            return {"log": [name]}
        return run

    g = Graph(Log, name="crash")
    for name in NODES:
        g.node(name, node(name))
    g.edge(START, "s0").edge("s0", "s1").edge("s1", "s2").edge("s2", "s3")
    g.edge("s3", "p1").edge("s3", "p2").edge("s3", "p3").edge(["p1", "p2", "p3"], "j")
    return g.edge("j", "t0").edge("t0", "t1").edge("t1", "t2").edge("t2", "t3").edge("t3", END)


def run_graph(url: str, effects: Path) -> Any:
    app = graph(effects).compile(checkpointer=url)
    info = Checkpointer(app.checkpointer.store if app.checkpointer else url).thread("job")
    result = app.run(thread="job") if info is None else app.resume("job") if info.status != "done" else None
    return (result.state if result else app.state("job")).log  # type: ignore[attr-defined]


def run_search(url: str, effects: Path) -> Any:
    env = DeceptiveTree()

    async def propose(state: list[int], path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        await asyncio.sleep(0.015)
        record(effects, json.dumps(state))
        await asyncio.sleep(0.015)
        return [(a, 1 / env.branching) for a in env.actions(state)]

    result = search(env, "mcts", budget={"max_expansions": EXPANSIONS}, store=url, run="job", proposer=propose,
                    batch=2)
    return json.loads(result.tree.to_json())


class HashEmbedder:
    """Deterministic unit vectors from a text's hash: no model to load."""

    dim = 16

    def embed(self, texts: Sequence[str]) -> Any:
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:16], dtype=np.uint8).astype(np.float32) - 127.5
                for t in texts]
        vectors = np.array(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def run_memory(url: str, effects: Path) -> Any:
    """Add the NOTES not yet stored, in order; the result is every note and every link, by content."""
    memory = Memory(url, embedder=HashEmbedder(), link_threshold=0.3)
    have = {note.content for note in memory.notes(list(memory.graph().nodes))}
    for content in NOTES:
        if content not in have:
            record(effects, content)  # before the add: a note committed just before a kill is still logged
            time.sleep(0.03)  # as the other kinds' work does: room for a kill to land mid-stream
            memory.add(content)
    graph = memory.graph()
    text: dict[int, str] = {n: d["content"] for n, d in graph.nodes(data=True)}
    return {"notes": sorted(text.values()),
            "links": sorted([text[a], text[b], d["kind"], d["reason"]] for a, b, d in graph.edges(data=True))}


KINDS: dict[str, Callable[[str, Path], Any]] = {"graph": run_graph, "search": run_search, "memory": run_memory}


def serve() -> None:
    """The fork server's loop (see the module's docstring)."""
    print("ready", flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "wait":
            _, status = os.waitpid(int(args[0]), 0)
            print(os.waitstatus_to_exitcode(status), flush=True)
            continue
        kind, url, effects, out = args
        pid = os.fork()
        if pid:
            print(pid, flush=True)
            continue
        code = 0  # the child: stdout to OUT, then out through SystemExit, as a worker started afresh would end
        with open(out, "w") as stdout, open(f"{out}.err", "w") as stderr:
            os.dup2(stdout.fileno(), 1)
            os.dup2(stderr.fileno(), 2)
        try:
            print(json.dumps(KINDS[kind](url, Path(effects))), flush=True)
        except Exception:
            traceback.print_exc()
            code = 1
        sys.exit(code)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        print(json.dumps(KINDS[sys.argv[1]](sys.argv[2], Path(sys.argv[3]))))
