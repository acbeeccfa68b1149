"""Checkpoint retention on SQLite and PostgreSQL: keep-last, TTL, what forks and searches refer to, deleting threads
and what they own, each kept checkpoint loading to the state it had."""

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select, update

from baobab.graphs import END, START, App, Checkpointer, CheckpointError, Graph, append
from baobab.graphs.retention import duration
from baobab.search import DeceptiveTree, GraphEnvironment, search
from baobab.store.schema import checkpoints, search_runs, spans, threads, writes


class Big(BaseModel):
    n: int = 0
    log: Annotated[list[str], append] = []
    blob: str = "x" * 4000  # a large state: snapshots are rare, so kept checkpoints need the ones before them


class Small(BaseModel):
    n: int = 0  # a small state: a snapshot at every step


def counter(limit: int, url: str, name: str = "count", state: type[BaseModel] = Big) -> App:
    inc = (lambda s: {"n": s.n + 1, "log": [f"inc{s.n + 1}"]}) if state is Big else (lambda s: {"n": s.n + 1})
    g = Graph(state, name=name).node("inc", inc)
    g.edge(START, "inc").route("inc", lambda s: "inc" if s.n < limit else END, ["inc", END])
    return g.compile(checkpointer=url)


def checkpointer(app: App) -> Checkpointer:
    assert app.checkpointer is not None
    return app.checkpointer


def states(app: App, thread: str) -> dict[int, BaseModel]:
    return {c.id: app.state(checkpoint=c.id) for c in app.history(thread)}


def count(cp: Checkpointer, table: Any, *where: Any) -> int:
    with cp.store.transaction() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def test_keep_last_keeps_the_last_n_and_what_they_need_and_each_loads_to_its_state(store_url: str) -> None:
    app = counter(60, store_url)
    app.run(thread="t")
    before, cp = states(app, "t"), checkpointer(app)
    removed = cp.prune(keep_last=3)
    history = app.history("t")
    assert [c.step for c in history[:3]] == [60, 59, 58]
    assert history[-1].snapshot and not any(c.snapshot for c in history[1:-1])  # back to the nearest snapshot only
    assert removed.checkpoints == 61 - len(history) > 30 and removed.threads == ("t",) and removed.kept == len(history)
    assert removed.writes > 30 and removed.bytes > removed.checkpoints * 100
    assert all(app.state(checkpoint=c.id) == before[c.id] for c in history)
    assert count(cp, writes, writes.c.step < history[-1].step) == 0  # the writes of the steps that went, gone
    assert cp.prune(keep_last=3).checkpoints == 0  # nothing more to take
    again = app.run({"n": 59}, thread="t")  # a finished thread goes on from its last checkpoint
    assert again.step == 62 and again.state.log[-2:] == ["inc60", "inc60"]  # type: ignore[attr-defined]


def test_older_than_takes_what_is_older_and_keep_last_is_a_floor(store_url: str) -> None:
    app = counter(20, store_url, state=Small)
    app.run(thread="t")
    cp = checkpointer(app)
    with cp.store.transaction() as conn:  # steps 0-9 were taken two hours ago
        conn.execute(update(checkpoints).where(checkpoints.c.step < 10).values(created=time.time() - 7200))
    assert cp.prune(older_than=timedelta(hours=3)).checkpoints == 0
    assert cp.prune(older_than=3600, keep_last=15).checkpoints == 6  # steps 0-5 go, the 15 newest stay
    removed = cp.prune(older_than=duration("1h"))
    assert removed.checkpoints == 4 and min(c.step for c in app.history("t")) == 10
    assert app.state("t").n == 20  # type: ignore[attr-defined]


def test_a_fork_keeps_its_parent_checkpoint_and_runs_on_the_same(store_url: str) -> None:
    app = counter(30, store_url)
    app.run(thread="t")
    mid = next(c for c in app.history("t") if c.step == 12)
    fork = app.fork(mid.id, update={"log": ["forked"]}, thread="f")
    before = app.state(fork)
    removed = checkpointer(app).prune("t", keep_last=1)
    assert mid.id in {c.id for c in app.history("t")} and removed.checkpoints > 10
    assert app.state(fork) == before
    log = [f"inc{i}" for i in range(1, 31)]
    assert app.resume(fork).state.log == [*log[:12], "forked", *log[12:]]  # type: ignore[attr-defined]


def test_a_stored_graph_search_keeps_the_checkpoints_its_tree_names(store_url: str) -> None:
    drafts = iter("abcabcabc")
    g = (Graph(Big, name="essay").node("plan", lambda s: {"n": 1}).node("draft", lambda s: {"log": [next(drafts)]})
         .edge(START, "plan").edge("plan", "draft").edge("draft", END))
    app = g.compile(checkpointer=store_url)
    env = GraphEnvironment(app, {}, choice_points=["draft"], reward=lambda s: float(s.log == ["b"]), k=3,
                           thread="essay")
    result = search(env, "best_of_n", store=store_url, run="s1")
    named = {v for node in result.tree.nodes for v in (node.state, node.action) if isinstance(v, int)}
    seen = {c: app.state(checkpoint=c) for c in named}
    cp = checkpointer(app)
    cp.prune(keep_last=1)
    assert {c: app.state(checkpoint=c) for c in named} == seen
    with pytest.raises(CheckpointError, match=r"search runs \['s1'\] refer to their checkpoints"):
        cp.delete_thread("essay")  # its forks are essay/..., and the tree names their checkpoints
    search(DeceptiveTree(), "greedy", store=store_url, run="toy")  # its states are not checkpoints
    with cp.store.transaction() as conn:
        assert dict(conn.execute(select(search_runs.c.name, search_runs.c.states)).all()) == {
            "s1": "checkpoints", "toy": "values"}


def test_delete_refuses_while_forks_depend_then_takes_them_together(store_url: str) -> None:
    app = counter(8, store_url)
    app.run(thread="t")
    app.fork(app.history("t")[3].id, thread="f")
    cp = checkpointer(app)
    with pytest.raises(CheckpointError, match=r"cannot delete \['t'\]: threads \['f'\] were forked from them"):
        cp.delete_thread("t")
    assert cp.thread("t") is not None  # refused: nothing removed
    removed = cp.delete_thread("t", "f")
    assert removed.threads == ("f", "t") and removed.checkpoints == 10 and removed.writes >= 8
    assert cp.threads() == [] and count(cp, checkpoints) == count(cp, writes) == count(cp, spans) == 0


def test_delete_takes_subgraph_threads_and_branches_which_prune_leaves_whole(store_url: str) -> None:
    inner = counter(5, store_url, name="inner", state=Small)
    outer = Graph(Big, name="outer").node("sub", inner).edge(START, "sub").edge("sub", END).compile(
        checkpointer=store_url)
    outer.run(thread="p")
    outer.fork(outer.history("p")[-1].id, thread="p~1.sub.a1b2c3")  # named as a lookahead branch is
    cp = checkpointer(outer)
    assert {t.name for t in cp.threads()} == {"p", "p/sub:1.0", "p~1.sub.a1b2c3"}
    assert cp.prune(keep_last=1).threads == ()  # the subgraph's updates are read back when its step runs again
    assert len(cp.delete_thread("p").threads) == 3 and cp.threads() == []


def test_delete_refuses_a_thread_that_is_running(store_url: str) -> None:
    cp = Checkpointer(store_url)
    cp.create_thread("live", "g", pending={"tasks": [], "joins": {}}, snapshot="{}")  # leased by this process
    with pytest.raises(CheckpointError, match=r"'live' is running in process \d+"):
        cp.delete_thread("live")


def test_bad_arguments_and_unknown_threads_are_named(store_url: str) -> None:
    cp = Checkpointer(store_url)
    with pytest.raises(CheckpointError, match="prune needs keep_last"):
        cp.prune()
    with pytest.raises(CheckpointError, match="keep_last must be at least 1"):
        cp.prune(keep_last=0)
    with pytest.raises(CheckpointError, match="no thread named 'a', 'b' in"):
        cp.prune(["a", "b"], keep_last=1)
    with pytest.raises(CheckpointError, match=r"bad duration '7x'"):
        duration("7x")
    assert duration("1d12h") == 36 * 3600


RUNNER = """
import sys, time
from typing import Annotated
from pydantic import BaseModel
from baobab.graphs import END, START, Graph, append
class Big(BaseModel):
    n: int = 0
    log: Annotated[list[str], append] = []
    blob: str = "x" * 4000
def inc(s):
    time.sleep(0.02)
    return {"n": s.n + 1, "log": [f"inc{s.n + 1}"]}
g = Graph(Big, name="count").node("inc", inc).edge(START, "inc")
g.route("inc", lambda s: "inc" if s.n < 80 else END, ["inc", END])
print(g.compile(checkpointer=sys.argv[1]).run(thread="r").state.n)
"""


def test_pruning_while_another_process_runs_the_thread_loses_nothing_it_needs(store_url: str, tmp_path: Path) -> None:
    (tmp_path / "runner.py").write_text(RUNNER)
    runner = subprocess.Popen([sys.executable, str(tmp_path / "runner.py"), store_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    cp, pruned = Checkpointer(store_url), 0
    while runner.poll() is None:
        if cp.thread("r") is not None:
            pruned += cp.prune("r", keep_last=1).checkpoints
        time.sleep(0.05)
    out, err = runner.communicate()
    assert runner.returncode == 0 and out.strip() == "80", err
    app = counter(80, store_url)
    assert pruned > 20 and app.state("r") == Big(n=80, log=[f"inc{i}" for i in range(1, 81)])
    for c in app.history("r"):
        assert app.state(checkpoint=c.id) == Big(n=c.step, log=[f"inc{i}" for i in range(1, c.step + 1)])
    with checkpointer(app).store.transaction() as conn:
        assert conn.execute(select(threads.c.status).where(threads.c.name == "r")).scalar() == "done"
