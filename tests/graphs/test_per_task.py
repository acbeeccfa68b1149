"""Per-task routing, concurrency limits, error handlers and the token stream of a graph run."""

import asyncio
import threading
import time
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from baobab.graphs import (
    END,
    START,
    Graph,
    GraphError,
    NodeEnd,
    NodeError,
    NodeFailed,
    NodeQueued,
    NodeStart,
    Routed,
    RunContext,
    RunResult,
    Send,
    Token,
    append,
    token_sink,
)


class Items(BaseModel):
    items: list[int] = []
    done: Annotated[list[str], append] = []


def map_map() -> Graph:
    """START sends each item to `process`; each process task sends its own result on to `refine`."""
    g = Graph(Items)
    g.node("process", lambda n: {"done": [f"process:{n}"]})
    g.node("refine", lambda n: {"done": [f"refine:{n}"]})
    g.route(START, lambda s: [Send("process", n) for n in s.items], ["process"])
    g.route("process", lambda s: [Send("refine", int(s.done[-1].split(":")[1]))], ["refine"])
    g.edge("refine", END)
    return g


def test_map_to_map_refines_each_item_once() -> None:
    events = list(map_map().compile().stream({"items": [2, 3, 4]}))
    result = events[-1]
    assert isinstance(result, RunResult)
    assert sorted(result.state.done) == ["process:2", "process:3", "process:4", "refine:2", "refine:3", "refine:4"]
    routed = [e for e in events if isinstance(e, Routed) and e.source == "process"]
    assert [e.task for e in routed] == [0, 1, 2]  # one decision per task, in task order


def test_a_router_sees_its_own_writes_not_its_siblings() -> None:
    seen: list[list[str]] = []

    def look(state: Items) -> str:
        seen.append(list(state.done))
        return END

    g = Graph(Items)
    g.node("a", lambda s: {"done": ["a"]}).node("b", lambda s: {"done": ["b"]})
    g.edge(START, "a").edge(START, "b").route("a", look, [END]).edge("b", END)
    assert sorted(g.compile().run().state.done) == ["a", "b"]
    assert seen == [["a"]]


class Count(BaseModel):
    log: Annotated[list[str], append] = []


def fan_out(n: int, *, node_limit: int | None = None) -> Graph:
    running, peak = [0], [0]
    lock = threading.Lock()

    def work(i: int) -> dict[str, Any]:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return {"log": [f"w{i}"]}

    g = Graph(Count)
    g.node("work", work, max_concurrency=node_limit)
    g.route(START, lambda s: [Send("work", i) for i in range(n)], ["work"])
    g.edge("work", END)
    g.peak = peak  # type: ignore[attr-defined]
    return g


@pytest.mark.parametrize(("run_limit", "node_limit", "expected"), [(3, None, 3), (None, 2, 2), (4, 1, 1)])
def test_send_fan_out_waits_within_the_limits(run_limit: int | None, node_limit: int | None, expected: int) -> None:
    g = fan_out(8, node_limit=node_limit)
    events = list(g.compile().stream(max_concurrency=run_limit))
    assert g.peak[0] == expected  # type: ignore[attr-defined]
    result = events[-1]
    assert isinstance(result, RunResult)
    assert sorted(result.state.log) == sorted(f"w{i}" for i in range(8))  # queued, not dropped
    queued = [e for e in events if isinstance(e, NodeQueued)]
    assert [e.task for e in queued] == list(range(expected, 8))
    assert {e.limit for e in queued} == {expected}
    starts = [e.task for e in events if isinstance(e, NodeStart)]
    assert starts == list(range(8))  # started in task order


def test_compile_sets_a_default_limit_and_bad_limits_are_refused() -> None:
    g = fan_out(5)
    g.compile(max_concurrency=2).run()
    assert g.peak[0] == 2  # type: ignore[attr-defined]
    with pytest.raises(GraphError, match="max_concurrency must be a positive integer"):
        g.compile(max_concurrency=0)
    with pytest.raises(GraphError, match="node 'x': max_concurrency"):
        Graph(Count).node("x", lambda s: None, max_concurrency=-1)


class Job(BaseModel):
    log: Annotated[list[str], append] = []


def flaky_graph() -> Graph:
    def fetch(state: Job) -> dict[str, Any]:
        raise TimeoutError("no answer in 5 s")

    def recover(state: Job, ctx: RunContext) -> dict[str, Any]:
        assert ctx.failure is not None
        return {"log": [f"recovered {ctx.failure.node} {ctx.failure.type}: {ctx.failure.message}"]}

    g = Graph(Job)
    g.node("fetch", fetch, on_error="recover").node("recover", recover).node("other", lambda s: {"log": ["other"]})
    g.edge(START, "fetch").edge(START, "other").edge("fetch", END).edge("other", END).edge("recover", END)
    return g


def test_on_error_routes_the_failure_to_its_handler(store_url: str) -> None:
    app = flaky_graph().compile(checkpointer=store_url)
    events = list(app.stream(thread="t"))
    assert [type(e).__name__ for e in events if isinstance(e, NodeFailed | NodeEnd)] == [
        "NodeFailed", "NodeEnd", "NodeEnd"]
    result = events[-1]
    assert isinstance(result, RunResult) and result.status == "done"
    assert result.state.log == ["other", "recovered fetch TimeoutError: no answer in 5 s"]
    assert app.state("t").log == result.state.log  # the handler task was stored with its failure


def test_on_error_must_name_a_node_and_without_it_the_run_fails() -> None:
    g = Graph(Job).node("a", lambda s: None, on_error="nope").edge(START, "a").edge("a", END)
    with pytest.raises(GraphError, match="on_error='nope'"):
        g.compile()
    g = Graph(Job).node("a", lambda s: 1 / 0).edge(START, "a").edge("a", END)
    with pytest.raises(NodeError):
        g.compile().run()


class Text(BaseModel):
    text: str = ""


def writer(words: list[str]) -> Any:
    async def write(state: Text) -> dict[str, Any]:
        sink = token_sink()
        for word in words:
            if sink is not None:
                sink(("model",), word)
            await asyncio.sleep(0)
        return {"text": state.text + "".join(words)}

    return write


def test_tokens_of_nodes_and_nested_subgraphs_in_one_stream() -> None:
    inner = Graph(Text).node("draft", writer(["a", "b"])).edge(START, "draft").edge("draft", END).compile()
    outer = Graph(Text).node("intro", writer(["x"])).node("body", inner)
    outer.edge(START, "intro").edge("intro", "body").edge("body", END)
    app = outer.compile()
    events = list(app.stream(tokens=True))
    tokens = [(e.path, e.text) for e in events if isinstance(e, Token)]
    assert tokens == [(("intro", "model"), "x"), (("body", "draft", "model"), "a"), (("body", "draft", "model"), "b")]
    first_body_token = next(i for i, e in enumerate(events) if isinstance(e, Token) and e.path[0] == "body")
    body_end = next(i for i, e in enumerate(events) if isinstance(e, NodeEnd) and e.node == "body")
    assert first_body_token < body_end  # streamed while the node ran, not after
    assert events[-1].state.text == "xab"  # type: ignore[union-attr]
    assert not [e for e in app.stream() if isinstance(e, Token)]  # nobody asked: nothing streams


def test_many_tokens_of_a_nested_node_arrive_all_and_in_order() -> None:
    words = [f"{i} " for i in range(40)]
    inner = Graph(Text).node("draft", writer(words)).edge(START, "draft").edge("draft", END).compile()
    outer = Graph(Text).node("body", inner).edge(START, "body").edge("body", END).compile()
    assert [e.text for e in outer.stream(tokens=True) if isinstance(e, Token)] == words


def test_tokens_from_parallel_sync_nodes_in_threads() -> None:
    def sync_writer(word: str) -> Any:
        def write(state: Text) -> None:
            sink = token_sink()
            assert sink is not None
            sink((), word)

        return write

    g = Graph(Text).node("a", sync_writer("1")).node("b", sync_writer("2"))
    g.edge(START, "a").edge(START, "b").edge("a", END).edge("b", END)
    tokens = sorted((e.path, e.text) for e in g.compile().stream(tokens=True) if isinstance(e, Token))
    assert tokens == [(("a",), "1"), (("b",), "2")]


def test_a_paused_handler_resumes_with_its_failure(store_url: str) -> None:
    app = flaky_graph().compile(checkpointer=store_url, interrupt_before=["recover"])
    assert app.run(thread="t").status == "interrupted"
    result = app.resume("t")  # the handler's task, with what failed, comes back from the store
    assert result.state.log == ["other", "recovered fetch TimeoutError: no answer in 5 s"]
