"""Tokens of agents on the real embedded model, streamed from a graph run: each agent's text arrives while its
node runs, adds up to what the model wrote, and the run ends as it does without tokens (greedy decoding)."""

from collections.abc import Iterator
from typing import Any

import pytest

from baobab.agents import Agent, ModelCalled, TeamState, listen
from baobab.agents.agent import close_shared_models
from baobab.aio import run_sync
from baobab.graphs import END, START, Graph, NodeEnd, Token


@pytest.fixture(autouse=True, scope="module")
def closed_models() -> Iterator[None]:
    yield
    run_sync(close_shared_models())


def two_agents() -> Any:
    researcher = Agent("researcher", role="finds one fact", max_tokens=16)
    writer = Agent("writer", role="writes one sentence", max_tokens=16)
    graph = Graph(TeamState).node("research", researcher).node("write", writer)
    return graph.edge(START, "research").edge("research", "write").edge("write", END).compile()


def run(*, tokens: bool) -> tuple[list[Any], dict[str, str]]:
    """The run's events, and the raw text of each agent's one model call."""
    wrote: dict[str, str] = {}
    with listen(lambda e: wrote.__setitem__(e.agent, e.choice.text) if isinstance(e, ModelCalled) else None):
        events = list(two_agents().stream({"task": "Tell me about baobab trees."}, tokens=tokens))
    return events, wrote


def test_agents_stream_what_the_model_writes_and_the_run_ends_as_without_tokens() -> None:
    events, wrote = run(tokens=True)
    for node, agent in (("research", "researcher"), ("write", "writer")):
        tokens = [i for i, e in enumerate(events) if isinstance(e, Token) and e.path == (node, agent)]
        end = next(i for i, e in enumerate(events) if isinstance(e, NodeEnd) and e.node == node)
        assert len(tokens) > 1 and max(tokens) < end  # piece by piece, while the node ran
        assert "".join(events[i].text for i in tokens) == wrote[agent] != ""
    assert {e.path for e in events if isinstance(e, Token)} == {("research", "researcher"), ("write", "writer")}
    plain, plain_wrote = run(tokens=False)
    assert not [e for e in plain if isinstance(e, Token)]
    assert plain_wrote == wrote and plain[-1].state == events[-1].state
