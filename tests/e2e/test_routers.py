"""An llm router on the real embedded model: every decision is a valid target, with a reason."""

from collections.abc import Iterator

import pytest

from baobab.agents import LLMRouter, TeamState
from baobab.agents.agent import close_shared_models
from baobab.aio import run_sync
from baobab.graphs import END, START, Graph, Routed


@pytest.fixture(autouse=True, scope="module")
def closed_models() -> Iterator[None]:
    yield
    run_sync(close_shared_models())


@pytest.mark.parametrize("task", ["What is 12 + 30?", "Write a haiku about the sea.", "Translate 'hello' to French.",
                                  "Nothing left to do: the answer was sent."])
def test_the_embedded_model_routes_to_a_declared_target(task: str) -> None:
    router = LLMRouter("local:smollm2-135m", {"calculator": "computes arithmetic", "poet": "writes poems",
                                              "translator": "translates between languages"})
    graph = Graph(TeamState).node("intake", lambda s: {})
    for name in ["calculator", "poet", "translator"]:
        graph.node(name, lambda s, name=name: {"output": name}).edge(name, END)
    app = graph.edge(START, "intake").route("intake", router, ["calculator", "poet", "translator", END]).compile()
    events = list(app.stream({"task": task}))
    routed = next(e for e in events if isinstance(e, Routed))
    assert routed.choice[0] in ("calculator", "poet", "translator", END)  # the schema allows nothing else
    assert isinstance(routed.reason, str) and routed.reason.strip()
    assert events[-1].state.output == (None if routed.choice[0] == END else routed.choice[0])  # type: ignore[union-attr]
