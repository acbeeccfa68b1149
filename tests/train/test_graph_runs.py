"""A graph run's search tree: its states are checkpoints, its moves what the choice point said."""

import itertools
import json
from typing import Any

from pydantic import BaseModel

from baobab.graphs import END, START, Graph
from baobab.search import GraphEnvironment, Node, search
from baobab.train import PromptFormat, Split, build_dataset


class Pick(BaseModel):
    topic: str = ""
    word: str = ""


def test_a_graph_search_gives_the_choice_points_winning_output_and_a_recovery(store_url: str) -> None:
    words = itertools.cycle(["fig", "baobab"])  # the choice point's samples, in turn
    app = (Graph(Pick, name="pick").node("choose", lambda s: {"word": next(words)})
           .edge(START, "choose").edge("choose", END).compile(checkpointer=store_url))
    env = GraphEnvironment(app, {"topic": "trees"}, choice_points=["choose"], k=2,
                           reward=lambda state: float(state.word == "baobab"))
    assert search(env, "mcts", store=store_url, run="pick-1", budget={"max_expansions": 3}).reward == 1.0

    def describe(checkpoint: int, path: list[Node]) -> str:
        state: Any = app.state(checkpoint=checkpoint)
        return f"Name a tree that fits the topic {state.topic!r}."

    data = build_dataset(["pick-1"], store=store_url, prompt=PromptFormat(describe),
                         split=Split.of(heldout=["rocks"]), task=lambda source: "trees")
    (step,) = [r["messages"] for r in data.records["steps"]]
    assert step[1:] == [{"role": "user", "content": "Name a tree that fits the topic 'trees'."},
                        {"role": "assistant", "content": json.dumps({"word": "baobab"})}]
    (trace,) = [r["messages"] for r in data.records["recoveries"]]
    assert [m["content"] for m in trace[2:4]] == ['{"word": "fig"}', '{"word": "fig"}']  # the move, what it ended at
    assert trace[4]["content"] == ('The move {"word": "fig"} was a mistake: it ended the task with a total reward '
                                   "of 0. I go back to the state before it and choose again.")
    assert trace[5] == step[1] and trace[6] == step[2] | {"weight": 1}
    assert data.sources[0]["task"] == "trees"
