"""Lessons are read, not only written: agents in a graph search see the lessons in scope of their sample, and
backtracking returns to the step a lesson blames (LEAFE)."""

import asyncio
import itertools
import json
import random
import re
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

import pytest
from pydantic import BaseModel

from baobab.agents import Agent, TeamState
from baobab.engine import Request, ScriptedLLM
from baobab.engine.budget import Spend
from baobab.graphs import END, START, Graph, append
from baobab.search import GraphEnvironment, Node, Transition, Tree, search
from baobab.search.context import lessons_for, lessons_in_scope, remote_expansion
from baobab.search.llm_hooks import Lesson, llm_reflector

T = TypeVar("T")
WORK = re.compile(r"^- writer: (.*)$", re.MULTILINE)


async def hopeful(state: Any, path: list[Node], spend: Spend) -> float:
    """An evaluator with no opinion: every unfinished state looks the same."""
    return 0.5


def test_agents_in_a_graph_search_see_the_lessons_of_their_siblings_and_ancestors(store_url: str) -> None:
    """writer (an agent, the choice point) writes up to three times; "oops" ends the run as a failure."""
    replies = {0: itertools.cycle(["oops", "oops", "A", "B"]), 1: itertools.cycle(["oops", "oops", "oops", "go"]),
               2: itertools.cycle(["done", "oops"])}
    written: list[tuple[list[str], str]] = []  # (outputs of the failed run, its lesson), in the order written
    asked: list[tuple[list[str], str, int]] = []  # (outputs so far, the system prompt, lessons written by then)

    def reply(request: Request) -> str:
        messages = request.messages or []
        said = WORK.findall(messages[-1].content or "")
        asked.append((said, messages[0].content or "", len(written)))
        return next(replies[len(said)])

    async def reflect(path: list[Node], spend: Spend) -> str:
        outputs = [json.loads(n.observation)["output"] for n in path[1:]]
        written.append((outputs, f"lesson {len(written) + 1}: after {outputs[:-1]} never answer {outputs[-1]}"))
        return written[-1][1]

    def next_turn(state: Any) -> str:  # the graph's state, a TeamState
        return END if state.output == "oops" or len(state.messages) >= 3 else "writer"

    writer = Agent("writer", model=ScriptedLLM(reply))
    graph = Graph(TeamState, name="attempts").node("writer", writer).edge(START, "writer")
    graph.route("writer", next_turn, ["writer", END])
    env = GraphEnvironment(graph.compile(checkpointer=store_url), {"task": "Write"}, choice_points=["writer"],
                           reward=lambda s: float(s.output == "done"), k=4)
    result = search(env, "mcts", evaluator=hopeful, reflect=reflect, selection="puct")
    assert result.stopped_by == "done" and result.reward == 1.0
    assert written[0][0] == ["oops"]  # the first sample of the choice point failed, first reflected
    first = written[0][1]
    later = [(said, system) for said, system, known in asked if known >= 1]
    assert later and all(first in system for _, system in later)  # a root-level failure: every later sample
    for i, (outputs, lesson) in enumerate(written[1:], start=2):  # failures one step down: their branch only
        after = [(said, system) for said, system, known in asked if known >= i]
        assert all((lesson in system) == (said[:1] == outputs[:1]) for said, system in after), lesson
    siblings = [s for s, system, known in asked if known >= 2 and s[:1] == written[1][0][:1]]
    unrelated = [s for s, system, known in asked if known >= 2 and s[:1] != written[1][0][:1]]
    assert siblings and unrelated  # both kinds of sample ran after the second lesson: the checks above saw them
    for _, system, _ in asked:
        section = system.partition("Lessons from earlier attempts:")[2]
        assert len(section.split("\n- ")) - 1 <= 5 and len(section.split()) <= 200


def test_the_lessons_in_scope_are_bounded_newest_first_and_deduplicated() -> None:
    tree = Tree([])
    a, b = tree.add(tree.root, action="a", state=["a"]), tree.add(tree.root, action="b", state=["b"])
    under_a = [tree.add(a, action=i, state=["a", i], done=True) for i in range(8)]
    under_b = tree.add(b, action=0, state=["b", 0], done=True)
    tree.annotate(under_b, "b's child failed")
    for i, node in enumerate(under_a):  # the same lesson twice, then long ones
        tree.annotate(node, "keep it short" if i < 2 else f"lesson {i}: " + "word " * 60)
    shown = lessons_for(tree, under_a[-1])  # a sample below a's last child: a's children are its siblings
    assert shown[0].startswith("lesson 7:") and "b's child failed" not in shown
    assert len(shown) <= 5 and sum(len(s.split()) for s in shown) <= 200
    assert lessons_for(tree, b) == ["b's child failed"]  # ... and a's children's lessons are not b's business
    tree.annotate(under_a[0], "the first step was wrong", failed_at=1)  # blames a: a lesson about the root's choice
    assert "the first step was wrong" in lessons_for(tree, b)
    small = Tree([])
    for i in range(3):
        small.annotate(small.add(small.root, action=i, state=[i], done=True), "keep it short")
    assert lessons_for(small, small.root) == ["keep it short"]
    assert lessons_in_scope() == []  # outside a search's expansion


def test_a_remote_expansion_runs_with_the_lessons_it_was_given() -> None:
    class Env:
        def reset(self) -> list[int]:
            return []

        def actions(self, state: list[int]) -> list[int]:
            return [0]

        def step(self, state: list[int], action: int) -> Transition:
            return Transition([*state, action], observation=" | ".join(lessons_in_scope()))

    env = Env()

    async def propose(state: Any, path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        return [(0, 1.0)]

    done = asyncio.run(remote_expansion(env, propose, [], [], None, Spend(), [], ["x failed", "y failed"]))
    assert done["steps"][0][2]["observation"] == "x failed | y failed"


class Seen(BaseModel):
    picked: int = 0
    seen: Annotated[list[str], append] = []


def test_the_lessons_reach_nodes_in_threads_and_agents_run_from_sync_code(store_url: str) -> None:
    """A fork's parallel sync nodes run in threads; one runs an agent through its sync API (a loop of its own)."""
    echo = Agent("helper", model=ScriptedLLM(lambda r: (r.messages or [])[0].content or ""))
    graph = (Graph(Seen, name="threads").node("pick", lambda s: {"picked": 1})
             .node("left", lambda s: {"seen": [f"left: {lessons_in_scope()}"]})
             .node("right", lambda s: {"seen": ["right: " + echo.run("go").text]})
             .edge(START, "pick").edge("pick", "left").edge("pick", "right").edge(["left", "right"], END))
    app = graph.compile(checkpointer=store_url)
    env = GraphEnvironment(app, {}, choice_points=["pick"], reward=lambda s: 0.0, k=1)
    root = asyncio.run(_ran(env.reset()))
    done = asyncio.run(remote_expansion(env, env.propose, root, [], 1, Spend(), [], ["x failed"]))
    seen = sorted(app.state(checkpoint=done["steps"][0][0]).seen)  # type: ignore[attr-defined]
    assert seen[0] == "left: ['x failed']"
    assert seen[1] == "right: You are helper.\n\nLessons from earlier attempts:\n- x failed"


class Lock:
    """A lock of `depth` dials with `width` positions: one early dial (by seed) must be at its key; the others are
    free. Only the end says whether it opened; its feedback names the dial that was wrong."""

    def __init__(self, seed: int, depth: int = 5, width: int = 3) -> None:
        rng = random.Random(seed)
        self.depth, self.width = depth, width
        self.dial, self.key = rng.randrange(depth - 2), rng.randrange(1, width)  # never the last choice, nor 0

    def reset(self) -> list[int]:
        return []

    def actions(self, state: list[int]) -> list[int]:
        return list(range(self.width)) if len(state) < self.depth else []

    def step(self, state: list[int], action: int) -> Transition:
        path = [*state, action]
        if len(path) < self.depth:
            return Transition(path)
        opened = path[self.dial] == self.key
        return Transition(path, reward=float(opened), done=True,
                          feedback="" if opened else f"jammed: dial {self.dial + 1} was wrong")


async def blind(state: Any, path: list[Node], spend: Spend) -> float:
    """Nothing shows before the end."""
    return 0.0


async def locate(path: list[Node], spend: Spend) -> str:
    """An experience note that says where the failure began: the step the feedback names."""
    found = re.search(r"dial (\d+)", path[-1].feedback)
    return Lesson(path[-1].feedback, step=int(found.group(1)) if found else None)


def test_backtracking_returns_to_the_step_a_lesson_blames_and_needs_fewer_expansions() -> None:
    counts = []
    for seed in range(8):
        env = Lock(seed)
        plain = search(env, "backtrack", evaluator=blind)  # notes from feedback: no step named
        located = search(env, "backtrack", evaluator=blind, summarise=locate)
        for result in (plain, located):
            assert result.reward == 1.0 and result.best[1 + env.dial].action == env.key
        assert located.expansions < plain.expansions, (seed, located.expansions, plain.expansions)
        # each failure costs one fresh descent below the blamed dial: at most width - 1 of them
        assert located.expansions <= env.depth + (env.width - 1) * (env.depth - 1 - env.dial)
        assert {n.failed_at for n in located.tree.nodes if n.reflection} == {env.dial + 1}
        counts.append((located.expansions, plain.expansions))
    assert sum(w for w, _ in counts) * 2 <= sum(p for _, p in counts), counts


def test_without_a_named_step_the_return_point_is_unchanged() -> None:
    env = Lock(0)
    quiet = search(env, "backtrack", evaluator=blind, summarise=_no_step)
    assert quiet.expansions == search(env, "backtrack", evaluator=blind).expansions
    assert all(n.failed_at is None for n in quiet.tree.nodes)


async def _no_step(path: list[Node], spend: Spend) -> str:
    return Lesson("it failed somewhere", step=None)


@pytest.mark.parametrize(("answer", "lesson", "step"), [
    ('{"step": 1, "lesson": "the first dial was wrong"}', "the first dial was wrong", 1),
    ('{"step": 9, "lesson": "out of range"}', "out of range", None),
    ("not JSON at all", "not JSON at all", None),
])
def test_a_model_reflector_can_name_the_step_where_the_failure_began(answer: str, lesson: str,
                                                                      step: int | None) -> None:
    llm = ScriptedLLM([answer])
    reflect = llm_reflector(llm, lambda s, p: f"dials {s}", locate=True)
    tree = Tree([])
    first = tree.add(tree.root, action=0, state=[0], observation="set 0")
    end = tree.add(first, action=2, state=[0, 2], done=True, feedback="jammed")
    written: str = asyncio.run(_ran(reflect(tree.path(end), Spend())))
    assert (str(written), getattr(written, "step", None)) == (lesson, step)
    prompt = (llm.requests[0].messages or [])[1].content or ""
    assert "1. 0: set 0" in prompt and "2. 2" in prompt  # the steps are numbered for the model to name one


async def _ran(value: Awaitable[T]) -> T:
    return await value


def test_the_tree_keeps_where_the_failure_began() -> None:
    ctx_tree = Tree([])
    node = ctx_tree.add(ctx_tree.root, action=0, state=[0], done=True)
    ctx_tree.annotate(node, "wrong", failed_at=1)
    again = Tree.from_json(ctx_tree.to_json())
    assert again.nodes[1].failed_at == 1 and again.blamed(again.nodes[1]).id == 1
