"""Where a model plugs into search: a proposer (which actions, with priors), an evaluator (values), a reflector.

Each receives the search's `Spend`: a hook that calls a model wraps it in `BudgetedLLM(llm, spend)` so
that model calls, tokens and dollars count against the search budget.
"""

import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

from baobab.engine.budget import Spend
from baobab.search.environment import Environment, Transition, resolve
from baobab.search.tree import Node

Proposer = Callable[[Any, list[Node], int | None, Spend], Awaitable[list[tuple[Any, float]]]]
"""`await propose(state, path, k, spend)`: up to `k` actions (all when `k` is None) with their priors."""

Evaluator = Callable[[Any, list[Node], Spend], Awaitable[float]]
"""`await evaluate(state, path, spend)`: the estimated rewards still to come from a non-terminal state.

It may return a float with a `critique` attribute (see `baobab.search.llm_hooks.Judgement`): the tree keeps it."""

Reflector = Callable[[list[Node], Spend], Awaitable[str]]
"""`await reflect(path, spend)`: a short lesson from the failed trajectory `path` (root first), for later attempts."""

Chooser = Callable[[list[Node], list[list[Node]], Spend], Awaitable[int]]
"""`await choose(failed_path, options, spend)`: the index of the option (a path to a state) to return to."""


async def feedback_note(path: list[Node], spend: Spend) -> str:
    """The model-free reflector: the actions taken, what the environment said along the way, the total reward.

    >>> import asyncio
    >>> from baobab.engine.budget import Spend
    >>> leaf = Node(2, 1, "b", [], feedback="wall ahead", reward=0.0, done=True)
    >>> asyncio.run(feedback_note([Node(0, None, None, []), Node(1, 0, "a", []), leaf], Spend()))
    'after ["a", "b"] (total reward 0): wall ahead'
    """
    actions = json.dumps([n.action for n in path[1:]])
    said = "; ".join(n.feedback for n in path if n.feedback) or path[-1].observation or "no feedback"
    return f"after {actions} (total reward {sum(n.reward for n in path):g}): {said}"


def uniform_proposer(env: Environment, seed: int = 0) -> Proposer:
    """The environment's legal actions with a uniform prior; `k` of them, sampled reproducibly, when fewer.

    >>> import asyncio
    >>> from baobab.engine.budget import Spend
    >>> from baobab.search.toys import DeceptiveTree
    >>> asyncio.run(uniform_proposer(DeceptiveTree(branching=2))([], [], None, Spend()))
    [(0, 0.5), (1, 0.5)]
    """

    async def propose(state: Any, path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        actions = list(await resolve(env.actions(state)))
        if k is not None and k < len(actions):
            actions = _rng(seed, state).sample(actions, k)
        return [(action, 1 / len(actions)) for action in actions]

    return propose


def rollout_evaluator(env: Environment, *, depth: int = 50, rollouts: int = 1, seed: int = 0) -> Evaluator:
    """The mean reward of `rollouts` random playouts of at most `depth` legal actions (seeded by the state).

    >>> import asyncio
    >>> from baobab.engine.budget import Spend
    >>> from baobab.search.toys import DeceptiveTree
    >>> asyncio.run(rollout_evaluator(DeceptiveTree())([0], [], Spend()))  # the trap's plateau
    0.5
    """

    async def evaluate(state: Any, path: list[Node], spend: Spend) -> float:
        rng, total = _rng(seed, state), 0.0
        for _ in range(rollouts):
            current = state
            for _ in range(depth):
                actions = list(await resolve(env.actions(current)))
                if not actions:
                    break
                step: Transition = await resolve(env.step(current, rng.choice(actions)))
                current, total = step.state, total + step.reward
                if step.done:
                    break
        return total / rollouts

    return evaluate


def _rng(seed: int, state: Any) -> random.Random:
    # seeded by the state, not by call order: concurrent or resumed searches draw the same numbers
    return random.Random(f"{seed}:{json.dumps(state, sort_keys=True)}")
