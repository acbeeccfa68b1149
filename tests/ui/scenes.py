"""Runs recorded for the viewer tests: a graph with an agent node, a search, a 5,000-node tree, a slow live run."""

import json
import random
import time
from typing import Annotated

from pydantic import BaseModel

from baobab.agents import Agent
from baobab.engine import Choice, ScriptedLLM, ToolCall
from baobab.graphs import END, START, App, Graph, append
from baobab.search import search
from baobab.search.persist import SearchRecorder
from baobab.search.toys import DeceptiveTree
from baobab.search.tree import Tree
from baobab.store import Store
from baobab.store.trace import recording
from baobab.tools import tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Report(BaseModel):
    task: str = ""
    log: Annotated[list[str], append] = []
    answer: str = ""


def researcher() -> Agent:
    """An agent that calls add(2, 3), then answers."""
    return Agent("researcher", model=ScriptedLLM([Choice(tool_calls=[ToolCall(
        id="c1", name="add", arguments=json.dumps({"a": 2, "b": 3}))]), "The sum is 5."], cycle=True), tools=[add])


def report_app(store: Store) -> App:
    """plan -> research (an agent: a model call, a tool call, a model call) -> write; a route may skip research."""
    agent = researcher()

    async def research(state: Report) -> dict[str, object]:
        return {"log": [(await agent.arun(state.task)).text]}

    graph = (Graph(Report, name="report")
             .node("plan", lambda s: {"log": [f"plan for {s.task}"]})
             .node("research", research)
             .node("write", lambda s: {"answer": " / ".join(s.log)})
             .edge(START, "plan")
             .route("plan", lambda s: "research" if "sum" in s.task else "write", ["research", "write"])
             .edge("research", "write").edge("write", END))
    return graph.compile(checkpointer=store)


class Loop(BaseModel):
    n: int = 0
    seen: Annotated[list[int], append] = []


def slow_app(store: Store, steps: int, pause: float) -> App:
    """A node that runs `steps` times, `pause` seconds each: a run to watch live."""
    def tick(state: Loop) -> dict[str, object]:
        time.sleep(pause)
        return {"n": state.n + 1, "seen": [state.n]}

    graph = (Graph(Loop, name="slow").node("tick", tick).edge(START, "tick")
             .route("tick", lambda s: "tick" if s.n < steps else END, ["tick", END]))
    return graph.compile(checkpointer=store)


def small_search(store: Store) -> int:
    """An MCTS over a small deceptive tree, stored as `toy`; its node count."""
    result = search(DeceptiveTree(depth=3, branching=3), "mcts", budget={"max_expansions": 12}, store=store,
                    run="toy", seed=1)
    return len(result.tree.nodes)


def big_tree(store: Store, size: int = 5000, branching: int = 4) -> None:
    """A stored search tree of `size` nodes (breadth first, `branching` children each), named `big`."""
    tree = Tree([])
    for i in range(1, size):
        parent = tree.nodes[(i - 1) // branching]
        tree.add(parent, action=i, state=[], reward=0.0, done=False)
        tree.nodes[i].value = (i % 97) / 97
        tree.nodes[i].visits = 1 + i % 5
    recorder = SearchRecorder(store, "big")
    recorder.open("bfs", {})
    recorder.commit(tree, {"calls": 0}, "done", {"stopped_by": "done"})


def solo_agent(store: Store) -> None:
    """The researcher on its own, recorded as `agent:solo`."""
    with recording(store, "agent:solo", "solo"):
        researcher().run("what is 2 + 3?")


def memory_answer(notes: int, links_per_note: int = 3) -> dict[str, object]:
    """What `/api/memory` answers for a memory of `notes` notes, each linked to `links_per_note` others."""
    rng = random.Random(0)
    made = [{"id": f"n{i}", "content": f"note {i} on topic {i % 50}", "keywords": [f"k{i % 50}", f"w{i % 7}"],
             "tags": [f"tag{i % 12}"], "context": "synthetic", "version": 1 + i % 3} for i in range(notes)]
    links = [{"source": f"n{i}", "target": f"n{rng.randrange(notes)}", "kind": "related", "reason": "shared keywords"}
             for i in range(notes) for _ in range(links_per_note)]
    return {"notes": made, "links": links}
