"""Strategies on a synthetic tree with a known optimum: which ones find the narrow path, which take the trap.

DeceptiveTree() has depth 5 and branching 3 (121 internal nodes, 243 leaves): the optimum leaf pays 1.0,
every leaf under the first action 0 pays 0.5 (the trap's plateau), the rest 0.1 per action shared
with the optimum; random rollouts rate the trap (0.5) far above the optimum's first step (about 0.15).
"""

from typing import Any

import pytest

from baobab.engine.budget import Spend
from baobab.search import DeceptiveTree, Node, Proposer, SearchResult, search

ENV = DeceptiveTree()
INTERNAL = sum(3**i for i in range(5))  # 121: what exhaustive search expands



def informed_priors(env: DeceptiveTree, good: float = 0.6) -> Proposer:
    """Priors that put `good` on the optimum's next action (what a capable model's proposer does)."""

    async def propose(state: list[int], path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        actions, on_path = env.actions(state), state == env.optimum[: len(state)]
        return [(a, good if on_path and a == env.optimum[len(state)] else (1 - good) / (len(actions) - 1))
                for a in actions]

    return propose


def actions(result: SearchResult) -> list[Any]:
    return [n.action for n in result.best[1:]]


def test_greedy_takes_the_trap() -> None:
    result = search(ENV, "greedy")
    assert result.reward == 0.5 and actions(result)[0] == ENV.trap
    assert result.expansions == 5 and result.stopped_by == "done"  # one expansion a level, no look back


@pytest.mark.parametrize("selection", ["uct", "puct"])
def test_mcts_finds_the_narrow_optimum_with_well_under_an_exhaustive_budget(selection: str) -> None:
    result = search(ENV, "mcts", budget={"max_expansions": 90}, selection=selection)
    assert result.reward == 1.0 and actions(result) == ENV.optimum
    assert result.expansions == 90 and result.stopped_by == "max_expansions"
    assert result.best[-1].done and result.best[-2].visits > 0  # a leaf found by expanding a visited node


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mcts_stops_at_the_target_and_is_reproducible(seed: int) -> None:
    first = search(ENV, "mcts", budget={"max_expansions": INTERNAL}, target=1.0, seed=seed)
    again = search(ENV, "mcts", budget={"max_expansions": INTERNAL}, target=1.0, seed=seed)
    assert first.stopped_by == "target" and first.reward == 1.0 and first.expansions < 90
    assert first.tree.to_json() == again.tree.to_json()


def test_puct_uses_the_priors() -> None:
    guided = search(ENV, "mcts", budget={"max_expansions": INTERNAL}, target=1.0, selection="puct",
                    proposer=informed_priors(ENV))
    assert guided.reward == 1.0 and guided.expansions == 5  # straight down the prior
    assert [round(n.prior, 2) for n in guided.best[1:]] == [0.6] * 5


def test_mcts_exhausts_a_small_tree_and_stops() -> None:
    env = DeceptiveTree(depth=3, branching=2, optimum=[1, 0, 1])
    result = search(env, "mcts")  # no budget: the tree is finite, every leaf is visited once
    assert result.stopped_by == "done" and result.reward == 1.0
    assert result.expansions == 7 and len(result.tree.nodes) == 15
    assert result.tree.root.visits == 1 + 8 + 6  # its own evaluation, 8 leaves, 6 other internal nodes


@pytest.mark.parametrize(("strategy", "options", "reward"), [
    ("beam", {"width": 2}, 0.5),  # the trap's nodes outrank the optimum's second step (0.4)
    ("beam", {"width": 4}, 1.0),  # wide enough to carry it until it leads (0.6 > 0.5 from depth 3)
    ("bfs", {"breadth": 4}, 1.0),
    ("bfs", {"breadth": 4, "threshold": 0.45}, 0.5),  # prunes the optimum's first steps (0.2, 0.4)
    ("greedy", {}, 0.5),
])
def test_level_wise_search_with_a_value_that_sees_the_path(strategy: str, options: dict[str, Any],
                                                          reward: float) -> None:
    result = search(ENV, strategy, evaluator=ENV.misleading_value, **options)
    assert result.reward == reward and result.stopped_by == "done"
    if reward == 1.0:
        assert actions(result) == ENV.optimum and result.expansions <= 1 + 4 * 4


def test_dfs_pruning_skips_hopeless_subtrees() -> None:
    pruned = search(ENV, "dfs", evaluator=ENV.misleading_value, threshold=0.1)
    full = search(ENV, "dfs", evaluator=ENV.misleading_value)
    assert pruned.reward == full.reward == 1.0
    assert pruned.expansions == 1 + 40 + 4  # the trap's subtree (it looks best), then the optimum's path only
    assert full.expansions == INTERNAL


def test_dfs_with_a_target_stops_at_the_first_solution() -> None:
    result = search(ENV, "dfs", evaluator=ENV.misleading_value, threshold=0.1, target=1.0)
    assert result.stopped_by == "target" and result.reward == 1.0 and result.expansions == 45


def test_best_of_n_samples_by_prior_and_shares_expansions() -> None:
    result = search(ENV, "best_of_n", n=8)
    leaves = [n for n in result.tree.nodes if n.done]
    assert result.stopped_by == "done" and result.best[-1].done
    assert result.reward == max(result.tree.returns(n) for n in leaves)
    assert result.expansions < 8 * 5  # some rollouts met on the way down (a shared root at least)
    guided = search(ENV, "best_of_n", n=4, proposer=informed_priors(ENV, good=0.98))
    assert guided.reward == 1.0


def test_k_limits_children_per_expansion_and_max_depth_limits_depth() -> None:
    result = search(ENV, "beam", width=2, k=2, max_depth=3)
    assert all(len(n.children) <= 2 for n in result.tree.nodes)
    assert max(n.depth for n in result.tree.nodes) == 3 and not any(n.done for n in result.tree.nodes)
