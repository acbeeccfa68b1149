"""Lookahead (FLARE) with early-stopped rollouts (MAXS) on a tree whose first step misleads a greedy policy."""

import pytest

from baobab.engine.budget import Spend
from baobab.search import DeceptiveTree, Evaluator, Node, SearchResult, search

ENV = DeceptiveTree()  # optimum [1, 0, 2, 1, 0]; every leaf under the first action 0 pays 0.5



def constant(value: float) -> Evaluator:
    async def evaluate(state: list[int], path: list[Node], spend: Spend) -> float:
        return value

    return evaluate


def rollouts(result: SearchResult, node: Node) -> list[int]:
    """How many rollouts each candidate of `node` got: its visits after the first evaluation."""
    return [child.visits - 1 for child in result.tree.children(node)]


def test_lookahead_commits_the_step_that_greedy_misjudges() -> None:
    assert search(ENV, "greedy", evaluator=ENV.misleading_value).reward == 0.5
    result = search(ENV, "lookahead", evaluator=ENV.misleading_value, depth=2, rollouts=3)
    assert result.reward == 1.0 and [n.action for n in result.best[1:]] == ENV.optimum
    assert result.stopped_by == "done" and result.best[1].action == 1  # the first commitment was the right one
    # the optimum's first step: the best rollout saw 0.6 two steps on, beating the trap's 0.5
    first = result.best[1]
    assert first.visits == 4 and first.value < 0.5  # its mean return is lower: the best rollout decided


def test_rollouts_stop_once_a_candidates_futures_agree() -> None:
    result = search(ENV, "lookahead", evaluator=ENV.misleading_value, depth=2, rollouts=4)
    # the trap (every future 0.5) and action 2 (every future 0) settle after two rollouts; action 1 does not
    assert rollouts(result, result.tree.root) == [2, 4, 2]
    flat = search(DeceptiveTree(depth=3), "lookahead", evaluator=constant(0.3), depth=1, rollouts=6)
    assert rollouts(flat, flat.tree.root) == [2, 2, 2]
    never = search(DeceptiveTree(depth=3), "lookahead", evaluator=constant(0.3), depth=1, rollouts=1)
    assert rollouts(never, never.tree.root) == [1, 1, 1]


@pytest.mark.parametrize("limit", [2, 7])
def test_lookahead_keeps_to_the_budget(limit: int) -> None:
    result = search(ENV, "lookahead", evaluator=ENV.misleading_value, budget={"max_expansions": limit}, depth=3)
    assert result.expansions == limit and result.stopped_by == "max_expansions" and len(result.best) >= 2


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match=r"lookahead needs depth >= 1, rollouts >= 1 and agree >= 0, not 0, 4, 0\.05"):
        search(ENV, "lookahead", depth=0)
