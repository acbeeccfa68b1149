"""Work to kill at random moments: a graph run, a search or a stream of memory notes, resumed on each start.

    python crash_worker.py graph|search|memory DB_URL EFFECTS_FILE

Every unit of work appends a line to EFFECTS_FILE (the side effect that must not repeat once committed),
and the worker prints the finished result as JSON. Started again after a kill, it resumes.
"""

import asyncio
import hashlib
import json
import sys
import time
from collections.abc import Sequence
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


def graph(effects: Path) -> Graph:
    """s0..s3 one after another, p1..p3 in parallel, the join j, then t0..t3; each node sleeps a little."""
    def node(name: str) -> Any:
        def run(state: Log) -> dict[str, list[str]]:
            time.sleep(0.02 + (int(hashlib.sha1(name.encode()).hexdigest(), 16) % 5) / 50)
            with effects.open("a") as f:
                f.write(name + "\n")
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
        await asyncio.sleep(0.03)
        with effects.open("a") as f:
            f.write(json.dumps(state) + "\n")
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
    memory = Memory(url, embedder=HashEmbedder(), link_threshold=0.3)
    have = {note.content for note in memory.notes(list(memory.graph().nodes))}
    for content in NOTES:
        if content not in have:
            with effects.open("a") as f:  # before the add: a note committed just before a kill is still logged
                f.write(content + "\n")
            time.sleep(0.03)  # as the other kinds' work does: room for a kill to land mid-stream
            memory.add(content)
    notes = memory.notes(list(memory.graph().nodes))
    return sorted(note.content for note in notes)


if __name__ == "__main__":
    kind, url, effects = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    Path(f"{effects}.started").write_text("")  # imports done: the interesting part begins
    print(json.dumps({"graph": run_graph, "search": run_search, "memory": run_memory}[kind](url, effects)))
