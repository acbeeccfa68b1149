"""Workloads for the scale tests, pickled by value into Ray's workers: each logs what it runs, and in which process."""

import asyncio
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from baobab.executors import open_store
from baobab.graphs import END, START, App, Graph
from baobab.graphs.batch import run_thread
from baobab.search import DeceptiveTree, Transition


def append(log: str, entry: list[Any]) -> None:
    """One JSON line, written with one O_APPEND write: processes logging at once do not interleave."""
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\n")


def entries(log: str | Path) -> list[list[Any]]:
    path = Path(log)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def in_flight(log: str | Path) -> dict[str, int]:
    """Each call a process started and has not ended (by the log): the call (as JSON) and its process."""
    started: Counter[str] = Counter()
    for kind, pid, *what in entries(log):
        started[json.dumps([pid, *what])] += 1 if kind == "start" else -1
    return {call: json.loads(call)[0] for call, count in started.items() if count > 0}


class SlowTree(DeceptiveTree):
    """DeceptiveTree whose steps take `delay` seconds (as a model would) and are logged with their process."""

    def __init__(self, log: str, delay: float, **options: Any) -> None:
        super().__init__(**options)
        self.log, self.delay = log, delay

    async def step(self, state: list[int], action: int) -> Transition:  # type: ignore[override]
        append(self.log, ["start", os.getpid(), state, action])
        await asyncio.sleep(self.delay)
        transition = super().step(state, action)
        append(self.log, ["end", os.getpid(), state, action])
        return transition


class Doc(BaseModel):
    text: str = ""


def slow_pipeline(log: str, delay: float) -> Graph:
    """Three nodes in a row, each `delay` seconds, each logged with its thread and process: a checkpoint per node."""

    def node(name: str) -> Any:
        async def run(state: Doc, ctx: Any) -> dict[str, str]:
            append(log, ["start", os.getpid(), ctx.thread, name])
            await asyncio.sleep(delay)
            append(log, ["end", os.getpid(), ctx.thread, name])
            return {"text": f"{state.text}>{name}"}

        return run

    graph = Graph(Doc, name="slow")
    for name in ("a", "b", "c"):
        graph.node(name, node(name))
    return graph.edge(START, "a").edge("a", "b").edge("b", "c").edge("c", END)


async def run_slow(log: str, delay: float, db: str, text: str, thread: str) -> dict[str, Any]:
    """A batch task: the slow pipeline on `text` as `thread`, run to its end once (see run_thread)."""
    app = App(slow_pipeline(log, delay), open_store(db))
    result = await run_thread(app, {"text": text}, thread)
    return {"thread": result.thread, "status": result.status, "text": result.state.text}  # type: ignore[attr-defined]
