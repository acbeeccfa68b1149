"""The plain Python environment protocol: functional, so any node of a search tree can be continued.

States are values: `step(state, action)` returns a new state and never changes the old one, so search
continues from any node without cloning or replaying. States and actions must be JSON-serialisable
(lists, dicts, strings, numbers, booleans, None): trees are persisted and exported as JSON, and a
tuple comes back as a list, which is what `step` is given after a resume too.
"""

import inspect
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Transition:
    """What one action did: the next state, what was seen, the reward, whether the episode ended.

    `feedback` is the environment's explanation (a failed test, an illegal move) for reflections.

    >>> Transition([1], "moved", reward=0.5, done=True).done
    True
    """

    state: Any
    observation: str = ""
    reward: float = 0.0
    done: bool = False
    feedback: str = ""


class Environment(Protocol):
    """`reset`, `actions` and `step`, each plain or async (a coroutine is awaited).

    An environment that knows better than uniform priors and random rollouts may also define `propose`
    and `evaluate` with the signatures of a `Proposer` and an `Evaluator`: search uses them unless given
    others (a graph run samples its choice point's outputs and rolls out one run to the end).

    >>> class Count:
    ...     def reset(self): return 0
    ...     def actions(self, state): return [1, 2] if state < 3 else []
    ...     def step(self, state, action): return Transition(state + action, reward=float(state + action == 3),
    ...                                                      done=state + action >= 3)
    >>> Count().step(1, 2).reward
    1.0
    """

    def reset(self) -> Any:
        """The initial state (JSON-serialisable)."""

    def actions(self, state: Any) -> Any:
        """The legal actions in `state` (a list of JSON-serialisable values; empty when there are none)."""

    def step(self, state: Any, action: Any) -> Any:
        """The `Transition` that `action` leads to from `state`; `state` itself is left unchanged."""


async def resolve(value: T | Awaitable[T]) -> T:
    """`value`, awaited first if it is awaitable: environments and hooks may be sync or async.

    >>> import asyncio
    >>> asyncio.run(resolve(3))
    3
    """
    if inspect.isawaitable(value):
        return await value
    return value
