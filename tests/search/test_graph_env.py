"""Search over graph runs: checkpoints as states, forks of choice points as actions, a shared prefix."""

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from baobab.agents import Agent, pipeline
from baobab.engine import ScriptedLLM
from baobab.graphs import END, START, App, Graph
from baobab.search import GraphEnvironment, search

# A trap like DeceptiveTree's: every polish of draft "a" is fair, one polish of draft "b" is best
REWARDS = {"ax": 0.5, "ay": 0.5, "az": 0.5, "bx": 0.1, "by": 0.1, "bz": 1.0, "cx": 0.2, "cy": 0.2, "cz": 0.2}


class Essay(BaseModel):
    topic: str = ""
    outline: str = ""
    draft: str = ""
    notes: str = ""
    final: str = ""


def essay_app(url: str, drafts: Iterator[str] | None = None) -> tuple[App, Counter[str]]:
    """plan -> draft (samples a, b, c in turn) -> review -> polish (samples x, y, z in turn) -> END."""
    calls: Counter[str] = Counter()
    drafts = drafts if drafts is not None else itertools.cycle("abc")
    polishes = itertools.cycle("xyz")

    def counted(name: str, fn: Callable[[Essay], dict[str, Any]]) -> Callable[[Essay], dict[str, Any]]:
        def node(state: Essay) -> dict[str, Any]:
            calls[name] += 1
            return fn(state)
        return node

    graph = (Graph(Essay, name="essay")
             .node("plan", counted("plan", lambda s: {"outline": f"outline of {s.topic}"}))
             .node("draft", counted("draft", lambda s: {"draft": next(drafts)}))
             .node("review", counted("review", lambda s: {"notes": f"review of {s.draft}"}))
             .node("polish", counted("polish", lambda s: {"final": s.draft + next(polishes)}))
             .edge(START, "plan").edge("plan", "draft").edge("draft", "review").edge("review", "polish")
             .edge("polish", END))
    return graph.compile(checkpointer=url), calls


def score(state: Essay) -> float:
    return REWARDS.get(state.final, 0.0)


def test_mcts_over_the_graph_finds_the_best_branch_behind_the_trap(store_url: str) -> None:
    app, _ = essay_app(store_url)
    env = GraphEnvironment(app, {"topic": "baobabs"}, choice_points=["draft", "polish"], reward=score, k=3)
    result = search(env, "mcts", budget={"max_expansions": 10})
    assert result.reward == 1.0 and result.stopped_by == "done"  # the 9 endings are all tried, then it stops
    assert app.state(checkpoint=result.best[-1].state).final == "bz"  # type: ignore[attr-defined]
    assert [n.observation for n in result.best[1:]] == ['{"draft": "b"}', '{"final": "bz"}']


@pytest.mark.parametrize("strategy", ["best_of_n", "greedy", "beam"])
def test_one_choice_point_every_strategy_keeps_the_best_of_its_samples(store_url: str, strategy: str) -> None:
    app, _ = essay_app(store_url)
    env = GraphEnvironment(app, {"topic": "baobabs"}, choice_points=["draft"], reward=score, k=3)
    result = search(env, strategy)
    final = app.state(checkpoint=result.best[-1].state)
    assert final.final in ("ax", "bx", "cx", "ay", "by", "cy", "az", "bz", "cz")  # type: ignore[attr-defined]
    assert result.reward == max(n.reward for n in result.tree.nodes)  # the best ending the samples reached
    assert len(result.tree.children(result.tree.root)) == 3


def test_forks_share_the_prefix_and_each_sample_runs_the_nodes_after_it_once(store_url: str) -> None:
    app, calls = essay_app(store_url)
    env = GraphEnvironment(app, {"topic": "baobabs"}, choice_points=["draft", "polish"], reward=score, k=3)
    result = search(env, "best_of_n", n=4)
    drafted = [n for n in result.tree.children(result.tree.root) if n.expanded]
    assert calls["plan"] == 1  # before the first choice point: run once, every fork starts after it
    assert calls["draft"] == calls["review"] == 3  # review runs per draft, never per polish of that draft
    assert calls["polish"] == 3 * len(drafted) >= 3


def test_samples_that_say_the_same_are_one_action_with_their_share_as_prior(store_url: str) -> None:
    app, _ = essay_app(store_url, drafts=iter("aab"))
    env = GraphEnvironment(app, {"topic": "baobabs"}, choice_points=["draft"], reward=score, k=3)
    tree = search(env, "greedy").tree
    children = tree.children(tree.root)
    assert [(c.observation, round(c.prior, 3)) for c in children] == [('{"draft": "a"}', 0.667),
                                                                     ('{"draft": "b"}', 0.333)]


def test_a_failing_sample_is_a_dead_end_with_its_error_as_feedback(store_url: str) -> None:
    def drafts() -> Iterator[str]:
        yield "a"
        raise RuntimeError("model said nothing")
    app, _ = essay_app(store_url, drafts=itertools.chain(drafts(), itertools.cycle("b")))
    env = GraphEnvironment(app, {"topic": "t"}, choice_points=["draft"], reward=score, k=3)
    tree = search(env, "greedy").tree
    failed = [n for n in tree.children(tree.root) if n.feedback]
    assert len(failed) == 1 and failed[0].done and failed[0].reward == 0.0
    assert "RuntimeError: model said nothing" in failed[0].feedback


def test_the_tree_persists_checkpoint_ids_and_a_finished_run_is_not_run_again(store_url: str) -> None:
    app, calls = essay_app(store_url)
    env = GraphEnvironment(app, {"topic": "baobabs"}, choice_points=["draft", "polish"], reward=score, k=3)
    first = search(env, "mcts", budget={"max_expansions": 10}, store=store_url, run="essay")
    ran = calls.copy()
    again = search(env, "mcts", budget={"max_expansions": 10}, store=store_url, run="essay")
    assert calls == ran and again.tree.to_json() == first.tree.to_json()
    best = again.best[-1]
    assert isinstance(best.state, int) and app.state(checkpoint=best.state).final == "bz"  # type: ignore[attr-defined]


def test_model_calls_of_the_graphs_agents_count_against_the_search_budget(store_url: str) -> None:
    writer = Agent("writer", model=ScriptedLLM(["fair", "best", "poor"], cycle=True))
    app = pipeline([writer]).compile(checkpointer=store_url)
    env = GraphEnvironment(app, {"task": "Write"}, choice_points=["writer"],
                           reward=lambda s: {"best": 1.0, "fair": 0.5}.get(s.output), k=3)
    full = search(env, "best_of_n", n=1)
    assert (full.model_calls, full.reward) == (3, 1.0)
    capped = search(env, "best_of_n", n=1, budget={"max_model_calls": 2})
    assert capped.model_calls == 2 and len(capped.tree.children(capped.tree.root)) == 2


def test_bad_choice_points_and_apps_without_checkpointer_are_refused(store_url: str) -> None:
    app, _ = essay_app(store_url)
    with pytest.raises(ValueError, match=r"choice points \['drat'\] are not nodes of graph 'essay'"):
        GraphEnvironment(app, {}, choice_points=["drat"], reward=score)
    with pytest.raises(ValueError, match=r"compile\(checkpointer=\.\.\.\)"):
        GraphEnvironment(app.graph.compile(), {}, choice_points=["draft"], reward=score)


def test_a_search_that_crashed_resumes_from_its_stored_tree_and_the_checkpoints_it_forked(store_url: str) -> None:
    def crashing(state: Essay) -> float:
        if state.final == "bz":
            raise RuntimeError("the judge crashed")
        return score(state)

    app, calls = essay_app(store_url)
    env = GraphEnvironment(app, {"topic": "t"}, choice_points=["draft", "polish"], reward=crashing, thread="essay")
    with pytest.raises(RuntimeError, match="the judge crashed"):
        search(env, "mcts", budget={"max_expansions": 10}, store=store_url, run="r")
    assert calls["plan"] == 1 and calls["draft"] >= 3
    fresh, again = essay_app(store_url)  # as a new process would: a new app on the same store
    env = GraphEnvironment(fresh, {"topic": "t"}, choice_points=["draft", "polish"], reward=score, thread="essay")
    result = search(env, "mcts", budget={"max_expansions": 10}, store=store_url, run="r")
    assert result.reward == 1.0 and fresh.state(checkpoint=result.best[-1].state).final == "bz"  # type: ignore[attr-defined]
    assert again["plan"] == again["draft"] == 0  # the drafts stored before the crash are forked, not redrafted
