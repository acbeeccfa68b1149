"""Budgets are never exceeded, the search stops cleanly and returns the best trajectory found so far."""

import asyncio
import time
from typing import Any

import pytest

from baobab.engine.budget import Budget, BudgetExceeded, Spend
from baobab.engine.types import Usage
from baobab.search import STRATEGIES, DeceptiveTree, Node, Proposer, asearch, search

ENV = DeceptiveTree()


def charging(env: DeceptiveTree, tokens: int = 10, delay: float = 0.0) -> Proposer:
    """A fake model proposer: one model call per expansion, refused once the spend is used up."""

    async def propose(state: list[int], path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        spend.check()  # what BudgetedLLM does before every request
        await asyncio.sleep(delay)
        spend.charge(Usage(prompt_tokens=tokens, completion_tokens=tokens))
        return [(a, 1 / env.branching) for a in env.actions(state)]

    return propose


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("limit", [1, 3, 4])
def test_max_expansions_is_exact_for_every_strategy(strategy: str, limit: int) -> None:
    result = search(ENV, strategy, budget={"max_expansions": limit})
    assert result.expansions == limit == sum(n.expanded for n in result.tree.nodes)
    assert result.stopped_by == "max_expansions"
    assert result.best[0] is result.tree.root and len(result.best) >= 2  # the best so far, not nothing


@pytest.mark.parametrize("batch", [1, 4])
def test_max_expansions_is_exact_with_concurrent_batches(batch: int) -> None:
    result = search(ENV, "mcts", budget={"max_expansions": 10}, batch=batch, proposer=charging(ENV, delay=0.001))
    assert result.expansions == 10 and result.model_calls == 10


def test_max_seconds_stops_in_flight_expansions_on_time() -> None:
    start = time.monotonic()
    result = search(ENV, "mcts", budget={"max_seconds": 0.3}, batch=2, proposer=charging(ENV, delay=0.04))
    elapsed = time.monotonic() - start
    assert result.stopped_by == "max_seconds" and 0.3 <= elapsed < 0.3 + 0.2  # in-flight calls are cancelled
    assert 4 <= result.expansions <= 2 * 0.3 / 0.04 and len(result.best) >= 2


def test_a_model_call_limit_is_exact_even_with_concurrent_expansions() -> None:
    result = search(ENV, "beam", budget={"max_model_calls": 6}, width=3, proposer=charging(ENV))
    assert result.stopped_by == "max_model_calls" and "budget of 6 model calls" in result.detail
    assert result.model_calls == result.expansions == 6  # root, 3, then 2 of the third level's 3
    assert result.usage.prompt_tokens == 60 and len(result.best) >= 3
    assert all(n.cost == 1 for n in result.tree.nodes[1:])  # each node was made by one model call


def test_a_token_limit_stops_after_the_batch_that_crossed_it() -> None:
    result = search(ENV, "beam", budget={"max_tokens": 100}, width=3, proposer=charging(ENV))
    # tokens are known only once a call returns: the three calls of level 3 started at 80 tokens
    assert result.stopped_by == "max_tokens" and result.model_calls == result.expansions == 7
    assert result.usage.prompt_tokens + result.usage.completion_tokens == 140


def test_an_expansion_refused_midway_by_the_budget_is_discarded() -> None:
    async def two_calls(state: list[int], path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        for _ in range(2):  # e.g. a draft, then a critique
            spend.check()
            await asyncio.sleep(0.01)
            spend.charge(Usage())
        return [(a, 1 / ENV.branching) for a in ENV.actions(state)]

    result = search(ENV, "mcts", budget={"max_model_calls": 4}, batch=3, proposer=two_calls)
    # the root took 2 calls, leaving room for 2 of the batch; both pass their first check, one its second
    assert result.stopped_by == "max_model_calls" and result.model_calls == 5
    assert result.expansions == 2 and len(result.tree.nodes) == 1 + 3 + 3  # the refused one left no children


def test_an_enclosing_spend_limits_the_search_too() -> None:
    outer = Spend(Budget(max_model_calls=4), "agent")
    result = search(ENV, "mcts", spend=outer, proposer=charging(ENV))
    assert result.stopped_by == "budget" and "agent: budget of 4" in result.detail
    assert outer.calls == result.model_calls == 4


def test_a_search_budget_is_validated_like_any_budget() -> None:
    with pytest.raises(ValueError, match="max_expansions"):
        search(ENV, "greedy", budget={"max_expansions": 0})
    with pytest.raises(ValueError, match="max_expanshuns"):
        search(ENV, "greedy", budget={"max_expanshuns": 3})


def test_budget_exceeded_outside_the_proposer_propagates_as_a_stop_not_a_crash() -> None:
    async def refuse(state: list[int], path: list[Node], spend: Spend) -> float:
        raise BudgetExceeded("judge: budget of 0 model calls reached")

    result = asyncio.run(asearch(ENV, "greedy", evaluator=refuse))
    assert result.stopped_by == "budget" and result.expansions == 1 and len(result.best) == 2
