"""Work to kill at random moments or to starve of disk: graph runs, searches, memory notes; each resumes.

    python crash_worker.py KIND DB_URL EFFECTS_FILE   # one run; prints the result as JSON
    python crash_worker.py serve                        # a fork server, for many runs (see ForkServer)

KIND graph, search or memory: every unit of work appends a line to EFFECTS_FILE (the side effect that must
not repeat once committed). KIND fill-graph, fill-search or fill-memory: work that writes a lot, whose
result is {"result": ...}, or {"error": ..., "seconds": ...} when a StoreError stopped it. Started again
(after a kill, or once there is room), each resumes what the store holds and prints the finished result.
"""

import asyncio
import dataclasses
import hashlib
import json
import os
import resource
import select
import signal
import sqlite3  # noqa: F401 - loaded before a fork, like the dialect below
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import sqlalchemy.dialects.sqlite  # noqa: F401 - loaded before a fork: a child running as nobody cannot read them
from pydantic import BaseModel

from baobab.engine.budget import Spend
from baobab.graphs import END, START, Checkpointer, Graph, append
from baobab.memory import Memory
from baobab.search import DeceptiveTree, Node, Transition, search
from baobab.store import StoreError

NODES = ["s0", "s1", "s2", "s3", "p1", "p2", "p3", "j", "t0", "t1", "t2", "t3"]
NOTES = [f"note {i}: the baobab stores water in its trunk, fact number {i}" for i in range(24)]
EXPANSIONS = 30
FILL_STEPS, FILL_SIZE = 400, 4000  # fill-*: units of work, padding bytes each


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


class Grow(BaseModel):
    log: Annotated[list[str], append] = []


def fill(work: Callable[[], Any]) -> dict[str, Any]:
    """`work()`'s result, or the StoreError that stopped it and how long the work ran until then."""
    started = time.monotonic()
    try:
        return {"result": work()}
    except StoreError as exc:
        return {"error": str(exc), "seconds": time.monotonic() - started}


def fill_graph(url: str, effects: Path) -> Any:
    """A thread that appends one numbered, padded entry per step; the result is the entries' numbers."""
    def work() -> list[int]:
        graph = Graph(Grow).node("grow", lambda s: {"log": [f"{len(s.log)}:" + "x" * FILL_SIZE]})
        graph.edge(START, "grow").route("grow", lambda s: "grow" if len(s.log) < FILL_STEPS else END, ["grow", END])
        app = graph.compile(checkpointer=url, recursion_limit=10 * FILL_STEPS)
        info = app.checkpointer.thread("big") if app.checkpointer else None
        result = app.run(thread="big") if info is None else app.resume("big") if info.status != "done" else None
        state = result.state if result else app.state("big")
        return [int(entry.split(":")[0]) for entry in state.log]  # type: ignore[attr-defined]
    return fill(work)


class Wordy(DeceptiveTree):
    """DeceptiveTree whose observations are long: every stored node weighs FILL_SIZE / 2 bytes."""

    def step(self, state: list[int], action: int) -> Transition:
        done = super().step(state, action)
        return dataclasses.replace(done, observation=f"{done.observation} " + "y" * (FILL_SIZE // 2))


def fill_search(url: str, effects: Path) -> Any:
    """MCTS over Wordy, FILL_STEPS // 3 expansions, persisted as run "big"; the result is the tree."""
    def work() -> Any:
        result = search(Wordy(depth=6), "mcts", budget={"max_expansions": FILL_STEPS // 3}, store=url, run="big")
        return json.loads(result.tree.to_json())
    return fill(work)


def fill_memory(url: str, effects: Path) -> Any:
    """FILL_STEPS // 4 padded notes added in order, skipping those stored; the result is every note and link."""
    def work() -> Any:
        memory = Memory(url, embedder=HashEmbedder(), link_threshold=0.3)
        have = {note.content for note in memory.notes(list(memory.graph().nodes))}
        for i in range(FILL_STEPS // 4):
            content = f"note {i}: " + " ".join(f"word{(i * 7 + j) % 101}" for j in range(FILL_SIZE // 8))
            if content not in have:
                memory.add(content)
        graph = memory.graph()
        number = {n: int(d["content"].split(":")[0].split()[1]) for n, d in graph.nodes(data=True)}
        return {"notes": sorted(number.values()),
                "links": sorted([number[a], number[b], d["reason"]] for a, b, d in graph.edges(data=True))}
    return fill(work)


KINDS: dict[str, Callable[[str, Path], Any]] = {
    "graph": run_graph, "search": run_search, "memory": run_memory,
    "fill-graph": fill_graph, "fill-search": fill_search, "fill-memory": fill_memory}


def serve() -> None:
    """The fork server's loop: `run KIND URL EFFECTS OUT [fsize=BYTES] [uid=UID]` and `wait PID` lines."""
    print("ready", flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "wait":
            _, status = os.waitpid(int(args[0]), 0)
            print(os.waitstatus_to_exitcode(status), flush=True)
            continue
        kind, url, effects, out, *settings = args
        pid = os.fork()
        if pid:
            print(pid, flush=True)
            continue
        code = 0  # the child: stdout to OUT, then out through SystemExit, as a worker started afresh would end
        with open(out, "w") as stdout, open(f"{out}.err", "w") as stderr:
            os.dup2(stdout.fileno(), 1)
            os.dup2(stderr.fileno(), 2)
        options = dict(setting.split("=") for setting in settings)
        if "fsize" in options:  # a file-size limit: writes past it fail with EFBIG instead of a fatal SIGXFSZ
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(options["fsize"]), int(options["fsize"])))
        if "uid" in options:
            os.setgid(int(options["uid"]))
            os.setuid(int(options["uid"]))
        try:
            print(json.dumps(KINDS[kind](url, Path(effects))), flush=True)
        except Exception:
            traceback.print_exc()
            code = 1
        sys.exit(code)


class ForkServer:
    """`crash_worker.py serve`, driven from a test: each run is a process of its own, forked after the imports.

    >>> forks = ForkServer()  # doctest: +SKIP
    >>> forks.wait(forks.start("graph", "sqlite:///x.db", Path("x.effects"), Path("x.json")))  # doctest: +SKIP
    0
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self._answer(60) == "ready"

    def _answer(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"the fork server did not answer within {timeout} s"
        line = self.proc.stdout.readline()
        assert line, f"the fork server died: exit status {self.proc.wait()}"
        return line.strip()

    def _ask(self, line: str, timeout: float) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._answer(timeout)

    def start(self, kind: str, url: str, effects: Path, out: Path, **settings: int) -> int:
        """A process doing a `kind` run on `url` (resuming what is there), with a file-size limit `fsize`
        or as user `uid` if given; its pid. Its JSON goes to `out`, a traceback to `out`.err."""
        extra = "".join(f" {key}={value}" for key, value in settings.items())
        return int(self._ask(f"run {kind} {url} {effects} {out}{extra}", 10))

    def wait(self, pid: int, timeout: float = 120) -> int:
        """The process's exit status (negative: the signal that ended it), once it has ended."""
        return int(self._ask(f"wait {pid}", timeout))

    def close(self) -> None:
        """End the server (its runs have all been waited for)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        print(json.dumps(KINDS[sys.argv[1]](sys.argv[2], Path(sys.argv[3]))))
