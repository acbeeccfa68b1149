"""A synthetic environment with a known optimum, for tests, examples and no-model controls."""

from baobab.engine.budget import Spend
from baobab.search.environment import Transition
from baobab.search.tree import Node


class DeceptiveTree:
    """A tree of `depth` choices among `branching` actions; rewards only at the leaves.

    The one leaf at the end of `optimum` pays 1.0. Every leaf under the first action `trap` pays
    `trap_reward` (a broad plateau that random rollouts and greedy choices rate highly); any other leaf
    pays `0.1` per leading action it shares with `optimum`. States are the lists of actions taken.

    >>> env = DeceptiveTree(depth=2, branching=3)
    >>> env.optimum
    [1, 0]
    >>> env.step([1], 0)
    Transition(state=[1, 0], observation='took 0', reward=1.0, done=True, feedback='')
    """

    def __init__(self, depth: int = 5, branching: int = 3, optimum: list[int] | None = None, trap: int = 0,
                 trap_reward: float = 0.5) -> None:
        self.depth, self.branching, self.trap, self.trap_reward = depth, branching, trap, trap_reward
        self.optimum = optimum if optimum is not None else [(2 * i + 1) % branching for i in range(depth)]
        if len(self.optimum) != depth or self.optimum[0] == trap:
            raise ValueError(f"optimum must be {depth} actions and not start with the trap {trap}")

    def reset(self) -> list[int]:
        """No action taken yet."""
        return []

    def actions(self, state: list[int]) -> list[int]:
        """Every action until the tree's depth is reached."""
        return list(range(self.branching)) if len(state) < self.depth else []

    def step(self, state: list[int], action: int) -> Transition:
        """Append `action`; a leaf pays its reward."""
        path = [*state, action]
        if len(path) < self.depth:
            return Transition(path, f"took {action}")
        return Transition(path, f"took {action}", reward=self.leaf_reward(path), done=True)

    def leaf_reward(self, path: list[int]) -> float:
        """1.0 at the optimum, the plateau under the trap, else 0.1 per action shared with the optimum."""
        if path == self.optimum:
            return 1.0
        if path[0] == self.trap:
            return self.trap_reward
        shared = next((i for i, (a, b) in enumerate(zip(path, self.optimum, strict=True)) if a != b), len(path))
        return 0.1 * shared

    async def misleading_value(self, state: list[int], path: list[Node], spend: Spend) -> float:
        """An Evaluator, ToT-style: sees the optimum's prefix (0.2 a step) but rates the trap higher at first (0.5)."""
        if state[:1] == [self.trap]:
            return 0.5
        return 0.2 * len(state) if state == self.optimum[: len(state)] else 0.0
