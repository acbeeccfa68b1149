"""Running graphs in memory: nodes, routing, fan-out and joins, reducers, Send, subgraphs, retries, events."""

import asyncio
import itertools
import random
import re
import threading
import time
from typing import Annotated

import pytest
from pydantic import BaseModel

from baobab.graphs import (
    END,
    START,
    Checkpoint,
    Graph,
    GraphError,
    GraphRecursionError,
    InvalidUpdateError,
    NodeEnd,
    NodeError,
    NodeStart,
    Retry,
    RunContext,
    RunResult,
    Send,
    append,
    merge,
)


class S(BaseModel):
    n: int = 0
    log: Annotated[list[str], append] = []
    tags: Annotated[dict[str, int], merge] = {}


def test_linear_chain_with_sync_async_and_context_nodes() -> None:
    seen: list[tuple[str, int]] = []

    def first(state: S) -> dict[str, object]:
        return {"n": state.n + 1, "log": ["first"]}

    async def second(state: S) -> dict[str, object]:
        await asyncio.sleep(0)
        return {"n": state.n * 10, "log": ["second"]}

    def third(state: S, ctx: RunContext) -> None:
        seen.append((ctx.node, ctx.step))

    g = Graph(S).node("first", first).node("second", second).node("third", third)
    g.edge(START, "first").edge("first", "second").edge("second", "third").edge("third", END)
    result = g.compile().run({"n": 1}, thread="t")
    assert result.state == S(n=20, log=["first", "second"])
    assert (result.status, result.step, result.thread) == ("done", 3, "t")
    assert seen == [("third", 3)]


def test_router_loops_until_done() -> None:
    g = Graph(S).node("inc", lambda s: {"n": s.n + 1})
    g.edge(START, "inc").route("inc", lambda s: "inc" if s.n < 5 else END, ["inc", END])
    assert g.compile().run().state.n == 5


def test_router_may_pick_several_targets_and_async_routers_work() -> None:
    async def both(state: S) -> list[str]:
        return ["a", "b"]

    g = Graph(S).node("a", lambda s: {"log": ["a"]}).node("b", lambda s: {"log": ["b"]})
    g.route(START, both, ["a", "b"]).edge("a", END).edge("b", END)
    assert g.compile().run().state.log == ["a", "b"]


def test_router_returning_an_undeclared_target_is_an_error() -> None:
    def bad(state: S) -> str:
        return "c"

    g = Graph(S).node("a", lambda s: None).route(START, bad, ["a"]).edge("a", END)
    with pytest.raises(GraphError, match=r"router bad of node '__start__' returned 'c'; expected one of \['a'\]"):
        g.compile().run()


def _fan_out_join(delays: dict[str, float]) -> Graph:
    """START -> a, b, c in parallel (random finishing order) -> join d."""
    def worker(name: str):  # type: ignore[no-untyped-def]
        async def run(state: S) -> dict[str, object]:
            await asyncio.sleep(delays[name])
            return {"log": [name], "tags": {"last": ord(name[0]), name: 1}, "n": 0} if name == "a" else \
                {"log": [name], "tags": {"last": ord(name[0]), name: 1}}
        return run

    g = Graph(S)
    for name in "abc":
        g.node(name, worker(name)).edge(START, name)
    g.node("d", lambda s: {"log": ["d:" + ",".join(s.log)]})
    return g.edge(["a", "b", "c"], "d").edge("d", END)


def test_reducers_under_parallel_branches_give_one_result_in_every_finishing_order() -> None:
    results = set()
    for order in itertools.permutations([0.0, 0.01, 0.02]):
        state = _fan_out_join(dict(zip("abc", order, strict=True))).compile().run().state
        results.add(state.model_dump_json())
    assert len(results) == 1
    state = S.model_validate_json(results.pop())
    assert state.log == ["a", "b", "c", "d:a,b,c"]
    assert state.tags == {"last": ord("c"), "a": 1, "b": 1, "c": 1}  # merged in task order: c wins


def test_parallel_branches_run_concurrently() -> None:
    def slow(state: S) -> None:  # sync: runs in a thread when it has company
        time.sleep(0.2)

    g = Graph(S)
    for name in "abcd":
        g.node(name, slow).edge(START, name).edge(name, END)
    started = time.perf_counter()
    g.compile().run()
    assert time.perf_counter() - started < 0.6  # four 0.2 s nodes, not 0.8 s in a row


def test_join_waits_for_branches_of_different_lengths() -> None:
    g = Graph(S).node("short", lambda s: {"log": ["short"]}).node("long1", lambda s: {"log": ["long1"]})
    g.node("long2", lambda s: {"log": ["long2"]}).node("join", lambda s: {"log": ["join"]})
    g.edge(START, "short").edge(START, "long1").edge("long1", "long2").edge(["short", "long2"], "join")
    g.edge("join", END)
    assert g.compile().run().state.log == ["short", "long1", "long2", "join"]


class Doc(BaseModel):
    index: int
    text: str


class MapState(BaseModel):
    docs: list[str]
    lengths: Annotated[list[tuple[int, int]], append] = []
    total: int = 0


def test_dynamic_fan_out_with_send_map_reduce() -> None:
    calls: list[int] = []

    async def measure(doc: Doc) -> dict[str, object]:
        calls.append(doc.index)
        await asyncio.sleep(random.random() / 100)
        return {"lengths": [(doc.index, len(doc.text))]}

    g = Graph(MapState).node("measure", measure).node("total", lambda s: {"total": sum(n for _, n in s.lengths)})
    g.route(START, lambda s: [Send("measure", Doc(index=i, text=t)) for i, t in enumerate(s.docs)], ["measure"])
    g.edge("measure", "total").edge("total", END)
    state = g.compile().run({"docs": ["a", "bb", "ccc", "dddd"]}).state
    assert state.lengths == [(0, 1), (1, 2), (2, 3), (3, 4)]  # task order, whatever finished first
    assert state.total == 10 and sorted(calls) == [0, 1, 2, 3]


def test_two_parallel_writes_of_a_plain_field_name_key_and_nodes() -> None:
    g = Graph(S).node("left", lambda s: {"n": 1}).node("right", lambda s: {"n": 2})
    g.edge(START, "left").edge(START, "right").edge("left", END).edge("right", END)
    with pytest.raises(InvalidUpdateError, match=r"nodes 'left' and 'right' both wrote S.n in one step"):
        g.compile().run()


def test_send_copies_writing_a_plain_field_conflict_too() -> None:
    g = Graph(MapState).node("m", lambda d: {"total": 1})
    g.route(START, lambda s: [Send("m", 1), Send("m", 2)], ["m"]).edge("m", END)
    with pytest.raises(InvalidUpdateError, match=r"'m\[0\]' and 'm\[1\]' both wrote MapState.total"):
        g.compile().run({"docs": []})


@pytest.mark.parametrize(("update", "message"), [
    ({"nope": 1}, r"node 'bad' returned an invalid update for S.*nope"),
    ({"n": "many"}, r"node 'bad' returned an invalid update for S.*\nn\n"),
    (["n"], "node 'bad' returned list; expected a dict"),
])
def test_invalid_updates_name_node_and_field(update: object, message: str) -> None:
    g = Graph(S).node("bad", lambda s: update).edge(START, "bad").edge("bad", END)
    with pytest.raises(NodeError, match="node 'bad' failed at step 1") as info:
        g.compile().run()
    assert isinstance(info.value.__cause__, InvalidUpdateError)
    assert re.search(message, str(info.value.__cause__), re.S)


def test_input_is_validated_against_the_state() -> None:
    g = Graph(S).node("a", lambda s: None).edge(START, "a").edge("a", END)
    with pytest.raises(InvalidUpdateError, match="input to 'S'"):
        g.compile().run({"n": "x"})


def test_recursion_limit_stops_a_loop_with_a_clear_error() -> None:
    g = Graph(S).node("spin", lambda s: {"n": s.n + 1}).edge(START, "spin").route("spin", lambda s: "spin",
                                                                                   ["spin", END])
    with pytest.raises(GraphRecursionError, match=r"ran 7 super-steps without reaching END \(next: spin\)"):
        g.compile(recursion_limit=7).run()


def test_stream_yields_typed_events_in_order() -> None:
    g = Graph(S).node("a", lambda s: {"n": 1}).node("b", lambda s: {"n": 2})
    g.edge(START, "a").edge("a", "b").edge("b", END)
    events = list(g.compile().stream())
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["NodeStart", "NodeEnd", "Checkpoint", "NodeStart", "NodeEnd", "Checkpoint", "RunResult"]
    assert isinstance(events[0], NodeStart) and events[0].node == "a"
    assert isinstance(events[1], NodeEnd) and events[1].update == {"n": 1}
    assert isinstance(events[2], Checkpoint) and events[2].next == ("b",) and events[2].state.n == 1
    assert isinstance(events[-1], RunResult) and events[-1].state.n == 2


def test_retry_policy_retries_named_exceptions_only() -> None:
    attempts = {"flaky": 0, "broken": 0}

    def flaky(state: S) -> dict[str, int]:
        attempts["flaky"] += 1
        if attempts["flaky"] < 3:
            raise TimeoutError("slow provider")
        return {"n": attempts["flaky"]}

    def broken(state: S) -> None:
        attempts["broken"] += 1
        raise KeyError("bug")

    retry = Retry(on=(TimeoutError,), attempts=3, backoff=0.001)
    g = Graph(S).node("flaky", flaky, retry=retry).edge(START, "flaky").edge("flaky", END)
    assert g.compile().run().state.n == 3
    g2 = Graph(S).node("broken", broken, retry=retry).edge(START, "broken").edge("broken", END)
    with pytest.raises(NodeError) as info:
        g2.compile().run()
    assert attempts["broken"] == 1 and isinstance(info.value.__cause__, KeyError)


def test_retry_gives_up_after_its_attempts() -> None:
    calls = []

    def always(state: S) -> None:
        calls.append(1)
        raise TimeoutError("down")

    g = Graph(S).node("x", always, retry=Retry(on=(TimeoutError,), attempts=2, backoff=0.001))
    with pytest.raises(NodeError, match="TimeoutError: down"):
        g.edge(START, "x").edge("x", END).compile().run()
    assert len(calls) == 2


class Inner(BaseModel):
    log: Annotated[list[str], append] = []
    scratch: int = 0


def test_subgraph_is_a_node_and_its_appends_are_not_doubled() -> None:
    inner = Graph(Inner).node("i1", lambda s: {"log": ["i1"], "scratch": 1}).node("i2", lambda s: {"log": ["i2"]})
    inner.edge(START, "i1").edge("i1", "i2").edge("i2", END)
    outer = Graph(S).node("before", lambda s: {"log": ["before"]}).node("sub", inner.compile())
    outer.node("after", lambda s: {"log": ["after"]})
    outer.edge(START, "before").edge("before", "sub").edge("sub", "after").edge("after", END)
    state = outer.compile().run().state
    assert state.log == ["before", "i1", "i2", "after"]


def test_sync_api_inside_an_event_loop_says_what_to_use() -> None:
    app = Graph(S).node("a", lambda s: None).edge(START, "a").edge("a", END).compile()

    async def main() -> None:
        with pytest.raises(RuntimeError, match="use its async form"):
            app.run()
        assert (await app.arun()).status == "done"

    asyncio.run(main())


def test_sync_api_works_from_several_threads() -> None:
    app = Graph(S).node("a", lambda s: {"n": s.n + 1}).edge(START, "a").edge("a", END).compile()
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(app.run({"n": 1}).state.n)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [2, 2, 2, 2]


def keep_top3(current: list[int], new: int) -> list[int]:
    """A user reducer whose update is one number, not a list."""
    return sorted([*current, new], reverse=True)[:3]


class Scores(BaseModel):
    top: Annotated[list[int], keep_top3] = []


def test_a_user_reducer_takes_its_own_update_type() -> None:
    g = Graph(Scores)
    for i, score in enumerate([5, 1, 9, 7]):
        g.node(f"s{i}", lambda s, v=score: {"top": v}).edge(START, f"s{i}").edge(f"s{i}", END)
    assert g.compile().run().state.top == [9, 7, 5]
    bad = Graph(Scores).node("x", lambda s: {"top": [1]}).edge(START, "x").edge("x", END)
    with pytest.raises(NodeError, match="node 'x' failed"):
        bad.compile().run()
