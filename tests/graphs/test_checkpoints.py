"""Durable runs on SQLite and PostgreSQL: history, any checkpoint read back, fork, interrupts, failures,
delta storage."""

import asyncio
from typing import Annotated

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select

from baobab.graphs import (
    END,
    START,
    Checkpoint,
    Checkpointer,
    CheckpointError,
    Graph,
    Interrupt,
    NodeError,
    RunContext,
    append,
)
from baobab.graphs.threads import ROW_COST
from baobab.store.schema import checkpoints, threads, writes


class S(BaseModel):
    n: int = 0
    log: Annotated[list[str], append] = []
    draft: str = ""
    approved: bool | None = None


def counter_graph(limit: int = 6) -> Graph:
    g = Graph(S).node("inc", lambda s: {"n": s.n + 1, "log": [f"inc{s.n + 1}"]})
    return g.edge(START, "inc").route("inc", lambda s: "inc" if s.n < limit else END, ["inc", END])


def rows(cp: Checkpointer, table) -> int:  # type: ignore[no-untyped-def]
    with cp.store.transaction() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_every_checkpoint_reads_back_as_the_state_the_run_saw(db_url: str) -> None:
    app = counter_graph(limit=40).compile(checkpointer=db_url)
    seen = {e.id: e.state for e in app.stream(thread="t") if isinstance(e, Checkpoint)}
    history = app.history("t")
    assert [c.step for c in history] == list(range(40, -1, -1))
    assert history[0].next == () and history[1].next == ("inc",)
    for info in history[:-1]:
        assert app.state(checkpoint=info.id) == seen[info.id]
    assert app.state("t") == S(n=40, log=[f"inc{i}" for i in range(1, 41)])
    assert any(c.snapshot for c in history[:-1]) and not all(c.snapshot for c in history)


def test_a_new_app_on_the_same_store_reads_the_thread(db_url: str) -> None:
    counter_graph().compile(checkpointer=db_url).run(thread="t")
    other = counter_graph().compile(checkpointer=db_url)
    assert other.state("t").n == 6
    info = Checkpointer(db_url).thread("t")
    assert info is not None and info.status == "done" and info.graph == "S"


def test_fork_from_a_mid_run_checkpoint_is_o1_and_leaves_the_original(db_url: str) -> None:
    app = counter_graph().compile(checkpointer=db_url)
    app.run(thread="main")
    mid = next(c for c in app.history("main") if c.step == 3)
    cp = app.checkpointer
    assert cp is not None
    before = (rows(cp, threads), rows(cp, checkpoints), rows(cp, writes))
    branch = app.fork(mid.id, update={"log": ["forked"]}, thread="branch")
    assert (rows(cp, threads), rows(cp, checkpoints), rows(cp, writes)) == (
        before[0] + 1, before[1] + 1, before[2] + 1)  # no replay, no copy of the state
    assert app.state(branch) == S(n=3, log=["inc1", "inc2", "inc3", "forked"])
    result = app.resume(branch)
    assert result.state == S(n=6, log=["inc1", "inc2", "inc3", "forked", "inc4", "inc5", "inc6"])
    assert app.state("main").log == [f"inc{i}" for i in range(1, 7)]
    info = cp.thread("branch")
    assert info is not None and info.forked_from == mid.id


def test_fork_to_an_existing_thread_name_is_refused(db_url: str) -> None:
    app = counter_graph().compile(checkpointer=db_url)
    app.run(thread="main")
    with pytest.raises(CheckpointError, match="thread 'main' already exists"):
        app.fork(app.history("main")[2].id, thread="main")
    assert app.fork(app.history("main")[2].id, thread="other") == "other"  # the failed attempt left nothing open


def test_fork_of_a_fork(db_url: str) -> None:
    app = counter_graph().compile(checkpointer=db_url)
    app.run(thread="a")
    b = app.fork(next(c for c in app.history("a") if c.step == 2).id, update={"log": ["b"]})
    app.resume(b)
    c = app.fork(next(x for x in app.history(b) if x.step == 4).id, update={"log": ["c"]})
    assert app.resume(c).state.log == ["inc1", "inc2", "b", "inc3", "c", "inc4", "inc5", "inc6"]


def review_graph() -> Graph:
    g = Graph(S).node("write", lambda s: {"draft": "v1"}).node("publish", lambda s: {"log": [f"published {s.draft}"]})
    return g.edge(START, "write").edge("write", "publish").edge("publish", END)


def test_interrupt_before_then_resume_with_an_edit_and_a_value(db_url: str) -> None:
    got: list[object] = []

    def publish(state: S, ctx: RunContext) -> dict[str, object]:
        got.append(ctx.resume)
        return {"log": [f"published {state.draft}"], "approved": ctx.resume == "ok"}

    g = Graph(S).node("write", lambda s: {"draft": "v1"}).node("publish", publish)
    app = g.edge(START, "write").edge("write", "publish").edge("publish", END).compile(
        checkpointer=db_url, interrupt_before=["publish"])
    first = app.run(thread="t")
    assert first.status == "interrupted" and first.interrupt is not None
    assert (first.interrupt.when, first.interrupt.nodes) == ("before", ("publish",))
    assert got == [] and first.state.draft == "v1"
    info = app.checkpointer.thread("t")  # type: ignore[union-attr]
    assert info is not None and info.status == "interrupted"
    with pytest.raises(CheckpointError, match="is interrupted: resume"):
        app.run(thread="t")
    done = app.resume("t", value="ok", update={"draft": "v2"})
    assert done.status == "done" and done.state.log == ["published v2"] and done.state.approved is True
    assert got == ["ok"]


def test_resume_without_a_value_passes_an_interrupt_before(db_url: str) -> None:
    app = review_graph().compile(checkpointer=db_url, interrupt_before=["publish"])
    assert app.run(thread="t").status == "interrupted"
    assert app.resume("t").state.log == ["published v1"]


def test_interrupt_after(db_url: str) -> None:
    app = review_graph().compile(checkpointer=db_url, interrupt_after=["write"])
    first = app.run(thread="t")
    assert first.interrupt is not None and first.interrupt.when == "after" and first.state.log == []
    assert app.resume("t").state.log == ["published v1"]


def test_a_node_asks_a_human_with_ctx_interrupt(db_url: str) -> None:
    asked: list[object] = []

    def review(state: S, ctx: RunContext) -> dict[str, object]:
        asked.append(state.draft)
        answer = ctx.interrupt({"question": "approve?", "draft": state.draft})
        return {"approved": answer == "yes"}

    g = Graph(S).node("write", lambda s: {"draft": "v1"}).node("review", review)
    app = g.edge(START, "write").edge("write", "review").edge("review", END).compile(checkpointer=db_url)
    events = list(app.stream(thread="t"))
    interrupt = next(e for e in events if isinstance(e, Interrupt))
    assert interrupt.when == "inside" and interrupt.payload == {"question": "approve?", "draft": "v1"}
    assert app.checkpointer.thread("t").detail["payload"]["draft"] == "v1"  # type: ignore[union-attr]
    assert app.resume("t", value="yes").state.approved is True
    assert asked == ["v1", "v1"]  # the node runs again and gets the value


def test_interrupt_and_resume_inside_a_subgraph(db_url: str) -> None:
    class Inner(BaseModel):
        log: Annotated[list[str], append] = []

    def ask(state: Inner, ctx: RunContext) -> dict[str, list[str]]:
        return {"log": [f"answer={ctx.interrupt('inner question')}"]}

    inner = Graph(Inner).node("prep", lambda s: {"log": ["prep"]}).node("ask", ask)
    inner.edge(START, "prep").edge("prep", "ask").edge("ask", END)
    outer = Graph(S).node("sub", inner.compile()).node("after", lambda s: {"log": ["after"]})
    app = outer.edge(START, "sub").edge("sub", "after").edge("after", END).compile(checkpointer=db_url)
    first = app.run(thread="t")
    assert first.status == "interrupted" and first.interrupt is not None
    assert first.interrupt.payload == "inner question"
    done = app.resume("t", value=42)
    assert done.state.log == ["prep", "answer=42", "after"]  # prep ran once, nothing appended twice


def test_a_failing_node_is_recorded_and_resume_runs_it_again_after_the_fix(db_url: str) -> None:
    broken = {"yes": True}

    def fragile(state: S) -> dict[str, list[str]]:
        if broken["yes"]:
            raise ConnectionError("database unreachable")
        return {"log": ["fragile"]}

    g = Graph(S).node("ok", lambda s: {"log": ["ok"]}).node("fragile", fragile)
    app = g.edge(START, "ok").edge("ok", "fragile").edge("fragile", END).compile(checkpointer=db_url)
    with pytest.raises(NodeError, match="node 'fragile' failed at step 2 of thread 't'"):
        app.run(thread="t")
    cp = app.checkpointer
    assert cp is not None
    info = cp.thread("t")
    assert info is not None and info.status == "error" and info.detail["nodes"] == ["fragile"]
    assert [w.kind for w in cp.step_writes(info.id, 2)] == ["error"]
    broken["yes"] = False
    assert app.resume("t").state.log == ["ok", "fragile"]


def test_parallel_step_failure_keeps_the_finished_branch(db_url: str) -> None:
    calls: list[str] = []
    broken = {"yes": True}

    def good(state: S) -> dict[str, list[str]]:
        calls.append("good")
        return {"log": ["good"]}

    def bad(state: S) -> dict[str, list[str]]:
        calls.append("bad")
        if broken["yes"]:
            raise ValueError("boom")
        return {"log": ["bad"]}

    g = Graph(S).node("good", good).node("bad", bad)
    app = g.edge(START, "good").edge(START, "bad").edge(["good", "bad"], END).compile(checkpointer=db_url)
    with pytest.raises(NodeError):
        app.run(thread="t")
    broken["yes"] = False
    assert app.resume("t").state.log == ["good", "bad"]
    assert calls.count("good") == 1 and calls.count("bad") == 2  # the finished branch is not run again


def test_a_finished_thread_takes_new_input_as_an_update(db_url: str) -> None:
    app = counter_graph(limit=2).compile(checkpointer=db_url)
    app.run(thread="chat")
    again = app.run({"log": ["user: more"]}, thread="chat")
    assert again.state.log == ["inc1", "inc2", "user: more", "inc3"]  # the graph runs again from START
    assert again.state.n == 3 and [c.step for c in app.history("chat")][:3] == [4, 3, 2]


def test_resume_of_a_done_thread_returns_its_state(db_url: str) -> None:
    app = counter_graph().compile(checkpointer=db_url)
    app.run(thread="t")
    assert app.resume("t").state.n == 6


def test_errors_for_unknown_threads_and_missing_checkpointer(db_url: str) -> None:
    app = counter_graph().compile(checkpointer=db_url)
    with pytest.raises(CheckpointError, match="no thread named 'ghost'"):
        app.resume("ghost")
    with pytest.raises(CheckpointError, match="no checkpoint with id 999999"):
        app.state(checkpoint=999999)
    with pytest.raises(CheckpointError, match=r"fork\(\) needs a checkpointer"):
        counter_graph().compile().fork(1)


def test_storage_grows_with_what_changed_not_with_the_square_of_the_length(store_url: str) -> None:
    """A 400-step thread whose list grows each step stores about as much in its last 200 steps as in its
    first 200 (full states at every step would store 3x more), and a few hundred bytes a step."""
    item = "x" * 50
    g = Graph(S).node("grow", lambda s: {"n": s.n + 1, "log": [item]})
    g.edge(START, "grow").route("grow", lambda s: "grow" if s.n < 400 else END, ["grow", END])
    app = g.compile(checkpointer=store_url, recursion_limit=1000)
    app.run(thread="t")
    cp = app.checkpointer
    assert cp is not None

    def stored(low: int, high: int) -> int:
        with cp.store.transaction() as conn:
            snapshots = conn.execute(select(func.coalesce(func.sum(func.length(checkpoints.c.snapshot)), 0))
                                     .where(checkpoints.c.step > low, checkpoints.c.step <= high)).scalar_one()
            deltas = conn.execute(select(func.sum(func.length(writes.c.data)))
                                  .where(writes.c.step > low, writes.c.step <= high)).scalar_one()
        return int(snapshots + deltas)

    first, second = stored(0, 200), stored(200, 400)
    assert second < 1.5 * first
    assert (first + second) / 400 < 2 * (ROW_COST + len('{"n":400,"log":["' + item + '"]}'))
    assert app.state(checkpoint=app.history("t")[123].id).n == 400 - 123


def test_two_processes_resuming_one_thread_at_once_commit_each_step_once(db_url: str) -> None:
    async def slow(s: S) -> dict[str, object]:
        await asyncio.sleep(0.3)  # both runs are inside this step when the first commits it
        return {"n": s.n + 1, "log": ["slow"]}

    def build() -> Graph:
        g = Graph(S).node("a", lambda s: {"n": 1}).node("b", slow)
        return g.edge(START, "a").edge("a", "b").edge("b", END)

    paused = build().compile(checkpointer=db_url, interrupt_before=["b"]).run(thread="t")
    assert paused.status == "interrupted"
    one, other = build().compile(checkpointer=db_url), build().compile(checkpointer=db_url)  # a store each

    async def both() -> list[object]:
        return list(await asyncio.gather(one.aresume("t"), other.aresume("t"), return_exceptions=True))

    results = asyncio.run(both())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], CheckpointError), results
    assert "was committed by another run of this thread" in str(errors[0])
    done = next(r for r in results if not isinstance(r, BaseException))
    assert done.status == "done" and done.state.n == 2 and done.state.log == ["slow"]  # type: ignore[union-attr]
    history = one.history("t")
    assert sorted(c.step for c in history) == list(range(len(history)))  # no step twice
    assert one.checkpointer.thread("t").status == "done"  # type: ignore[union-attr]
