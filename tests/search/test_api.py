"""The entry point: clear errors, sync or async environments, concurrent expansions."""

import asyncio
import time
from typing import Any

import pytest

from baobab.engine.budget import Spend
from baobab.search import DeceptiveTree, Node, Transition, asearch, search

ENV = DeceptiveTree()


def test_unknown_strategy_and_option_name_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown search strategy 'astar'; valid: \['backtrack', 'beam', 'best_of_n'"):
        search(ENV, "astar")
    valid = "'batch', 'c', 'k', 'max_depth', 'reflect', 'selection', 'success', 'target'"
    with pytest.raises(ValueError, match=rf"unknown option\(s\) \['width'\] for search strategy 'mcts'; "
                                         rf"valid: \[{valid}\]"):
        search(ENV, "mcts", width=3)
    with pytest.raises(ValueError, match=r"selection must be one of \['uct', 'puct'\], not 'ucb'"):
        search(ENV, "mcts", selection="ucb")
    with pytest.raises(ValueError, match=r"k \(children per expansion\) must be >= 1 or None, not 0"):
        search(ENV, "beam", k=0)
    with pytest.raises(ValueError, match="store= needs run="):
        search(ENV, "greedy", store="sqlite://")


class AsyncWalk:
    """An async environment whose states are tuples and whose actions are dicts."""

    async def reset(self) -> tuple[int, ...]:
        return ()

    async def actions(self, state: list[int]) -> list[dict[str, int]]:
        return [{"go": 0}, {"go": 1}] if len(state) < 3 else []

    async def step(self, state: list[int], action: dict[str, int]) -> Transition:
        nxt = (*state, action["go"])
        return Transition(nxt, f"at {nxt}", reward=float(sum(nxt) == 3), done=len(nxt) == 3)


def test_async_environments_with_json_states_and_actions() -> None:
    result = search(AsyncWalk(), "bfs", breadth=8)
    assert result.reward == 1.0 and [n.action for n in result.best[1:]] == [{"go": 1}] * 3
    assert result.best[-1].state == [1, 1, 1] and result.best[-1].observation == "at (1, 1, 1)"
    assert all(isinstance(n.state, list) for n in result.tree.nodes)  # as JSON gives them back after a resume


def test_states_and_actions_must_be_json() -> None:
    class Bad(DeceptiveTree):
        def actions(self, state: list[int]) -> list[Any]:
            return [object()]

    with pytest.raises(TypeError, match="search actions must be JSON-serialisable"):
        search(Bad(), "greedy")


def test_a_batch_of_expansions_runs_concurrently() -> None:
    flight = {"now": 0, "max": 0}

    async def slow(state: list[int], path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        flight["now"] += 1
        flight["max"] = max(flight["max"], flight["now"])
        await asyncio.sleep(0.05)
        flight["now"] -= 1
        return [(a, 1 / 3) for a in ENV.actions(state)]

    start = time.monotonic()
    result = search(ENV, "mcts", budget={"max_expansions": 13}, batch=4, proposer=slow)
    assert flight["max"] == 4 and result.expansions == 13
    assert time.monotonic() - start < 13 * 0.05 / 2  # one after another would take 0.65 s
    flight["max"] = 0
    search(ENV, "mcts", budget={"max_expansions": 5}, proposer=slow)
    assert flight["max"] == 1


def test_asearch_inside_a_running_loop() -> None:
    async def main() -> float:
        return (await asearch(ENV, "beam", width=4, budget={"max_expansions": 30})).reward

    assert asyncio.run(main()) == 0.5  # random rollouts rate the trap's plateau highest
    with pytest.raises(RuntimeError, match="use its async form"):
        asyncio.run(_sync_inside_loop())


async def _sync_inside_loop() -> None:
    search(ENV, "greedy")
