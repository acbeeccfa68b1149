"""A graph run as a search environment: states are checkpoints, actions the samples of the next choice point.

A *choice point* is a node that samples (an agent, an LLM call). Expanding a state forks its checkpoint
k times; each fork runs the choice point once and then the graph's other nodes up to the next choice
point (or END), and its last checkpoint is a child. So the nodes between two choice points run once
per sample, never once per fork of a later choice, and forks share everything before them. States and
actions are checkpoint ids (ints): the search tree persists, and `app.state(checkpoint=id)` reads any
node's graph state back. Model calls made inside the graph (agents) count against the search budget,
and the agents of a fork are shown the lessons of the failed branches near it: the search sets
`lessons_in_scope()` around each expansion and rollout, and the fork's nodes (tasks, threads) inherit it.
"""

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from baobab.engine.budget import BudgetExceeded, Spend, current_spend
from baobab.graphs import App, NodeError, RunResult
from baobab.search.environment import Transition
from baobab.search.tree import Node

Reward = Callable[[Any], float | None]
"""`reward(final_state)`: the graph state at END scored (None: no verdict, counted as 0)."""


class GraphEnvironment:
    """Search over runs of `app` (compiled with a checkpointer) on `input`, branching at `choice_points`.

    `reward` scores the state at END (a verifier node's verdict, read from the state, or any function);
    a node that fails ends its branch with reward 0 and the error as feedback. `k` samples per expansion
    unless the search gives its own `k`. `thread` names the run (forks are named after it); an existing one
    is continued from its last checkpoint. Forks run concurrently: under a model-call cap only as many start
    as calls are left, but forks that each make several calls (every call checks the cap, none reserves)
    may together pass it by up to one call per fork. Nodes that wait for a human (`ctx.interrupt`) have
    no place in a search.

    >>> env = GraphEnvironment(app, {"topic": "baobabs"}, choice_points=["draft"], reward=score)  # doctest: +SKIP
    >>> result = search(env, "mcts", budget={"max_model_calls": 30})  # doctest: +SKIP
    >>> app.state(checkpoint=result.best[-1].state)  # doctest: +SKIP
    """

    def __init__(self, app: App, input: Mapping[str, Any] | BaseModel | None = None, *,
                 choice_points: Sequence[str], reward: Reward, k: int = 3, thread: str | None = None) -> None:
        if app.checkpointer is None:
            raise ValueError("a graph search forks checkpoints: compile(checkpointer=...) the app first")
        unknown = sorted(set(choice_points) - set(app.graph.nodes))
        if unknown or not choice_points:
            raise ValueError(f"choice points {unknown} are not nodes of graph {app.graph.name!r} "
                             f"({sorted(app.graph.nodes)})" if unknown else "give at least one choice point")
        if k < 1:
            raise ValueError(f"k (samples per expansion) must be >= 1, not {k}")
        self.app, self.input, self.choice_points, self.reward, self.k = app, input, frozenset(choice_points), reward, k
        self.thread = thread or uuid.uuid4().hex
        self.checkpointer = app.checkpointer
        # one app that stops right after a choice point ran, one that stops before the next, one that never stops
        limit = app.recursion_limit
        self._choose = App(app.graph, self.checkpointer, interrupt_after=choice_points, recursion_limit=limit)
        self._settle = App(app.graph, self.checkpointer, interrupt_before=choice_points, recursion_limit=limit)
        self._finish = App(app.graph, self.checkpointer, recursion_limit=limit)

    async def reset(self) -> int:
        """Run the graph up to its first choice point (once: every fork starts there); that checkpoint.

        If the thread exists (a search of this environment ran before, or `thread` names a run paused
        before a choice point), its last checkpoint is the start: nothing is run again.
        """
        info = self.checkpointer.thread(self.thread)
        if info is not None:
            return self.checkpointer.latest(info.id)
        return _checkpoint(await self._settle.arun(self.input, thread=self.thread))

    async def actions(self, state: int) -> list[int]:
        """`k` samples of the next choice point from checkpoint `state` (one per distinct output)."""
        return [action for action, _ in await self.propose(state, [], None, None)]

    def step(self, state: int, action: int) -> Transition:
        """The sample `action` (a checkpoint after `state`): what the choice point said, and the reward at END."""
        loaded = self.checkpointer.load(action)
        thread = self.checkpointer.thread(loaded.info.thread)
        assert thread is not None  # a checkpoint's thread exists
        said: dict[str, Any] = {}
        for write in self.checkpointer.thread_updates(loaded.thread_id):
            if write.node in self.choice_points:
                said.update(json.loads(write.data))
        observation = json.dumps(said, default=str)
        if thread.status == "error":
            return Transition(action, observation, 0.0, True, str((thread.detail or {}).get("error", "")))
        if thread.status != "done":
            return Transition(action, observation)
        return Transition(action, observation, self.score(action), True)

    async def propose(self, state: int, path: list[Node], k: int | None,
                      spend: Spend | None) -> list[tuple[int, float]]:
        """A `Proposer`: `k` forks run concurrently; forks whose choice point said the same are one action,
        its prior the share of samples that said it. Fewer forks start when a model-call cap is that close."""
        if not self.checkpointer.load(state).info.next:
            return []  # the run has ended: nothing to choose
        n, left = k or self.k, _calls_left(spend)
        n = n if left is None else min(n, max(left, 1))  # at least one: its first call checks the cap itself
        with _charged(spend):
            outcomes = await asyncio.gather(*(self._sample(state) for _ in range(n)), return_exceptions=True)
        children = [c for c in outcomes if isinstance(c, int)]
        errors = [e for e in outcomes if isinstance(e, BaseException)]
        if errors and (not children or not all(isinstance(e, BudgetExceeded) for e in errors)):
            raise errors[0]  # a cap reached mid-expansion keeps the samples that finished
        by_output: dict[str, list[int]] = {}
        for child in children:
            by_output.setdefault(self.step(state, child).observation, []).append(child)
        return [(same[0], len(same) / len(children)) for same in by_output.values()]

    async def evaluate(self, state: int, path: list[Node], spend: Spend) -> float:
        """An `Evaluator`: one run forked from `state` to END (one sample per choice point), its reward."""
        branch = self.app.fork(state, thread=f"{self.thread}/{state}-rollout-{uuid.uuid4().hex[:8]}")
        try:
            with _charged(spend):
                return self.score(_checkpoint(await self._finish.aresume(branch)))
        except NodeError as exc:
            if isinstance(exc.__cause__, BudgetExceeded):
                raise exc.__cause__ from None
            return 0.0

    def score(self, checkpoint: int) -> float:
        """The reward of the state at `checkpoint`."""
        value = self.reward(self.app.state(checkpoint=checkpoint))
        return 0.0 if value is None else float(value)

    async def _sample(self, state: int) -> int:
        """Fork `state`, run its choice point and on to the next one; the fork's last checkpoint."""
        branch = self.app.fork(state, thread=f"{self.thread}/{state}-{uuid.uuid4().hex[:8]}")
        try:
            result = await self._choose.aresume(branch)
            if result.interrupt is not None and result.interrupt.when == "after":
                result = await self._settle.aresume(branch)
            return _checkpoint(result)
        except NodeError as exc:
            if isinstance(exc.__cause__, BudgetExceeded):
                raise exc.__cause__ from None
            info = self.checkpointer.thread(branch)
            assert info is not None
            return self.checkpointer.latest(info.id)  # a dead end: step() reads the error from the thread


def _checkpoint(result: RunResult) -> int:
    assert result.checkpoint is not None  # the app has a checkpointer
    return result.checkpoint


@contextlib.contextmanager
def _charged(spend: Spend | None) -> Iterator[None]:
    """Model calls made by the graph's nodes (agents) inside the block count against `spend`."""
    if spend is None:
        yield
        return
    token = current_spend.set(spend)
    try:
        yield
    finally:
        current_spend.reset(token)


def _calls_left(spend: Spend | None) -> int | None:
    """Model calls left under the tightest cap of `spend` and its parents (None: no cap)."""
    left = []
    while spend is not None:
        if spend.budget.max_model_calls is not None:
            left.append(spend.budget.max_model_calls - spend.calls)
        spend = spend.parent
    return min(left, default=None)
