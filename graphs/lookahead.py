"""A router that tries before it commits: one branch per candidate target, a few steps ahead, scored.

At a decision it forks the run's state once per candidate (or a sample of them), runs each branch for
`depth` super-steps or until it ends, concurrently, scores each branch's state with `value`, and
routes to the best, taking over that branch's progress (its nodes do not run again) when the target is
the step's only next task. With a checkpointer the branches are threads forked from the run, left paused
where they stopped: the viewer shows them and `app.resume(branch)` continues one. Inside a branch the
router does not look ahead again; it follows `policy`. AgentSwing (see research.md) routes this way.
"""

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from baobab.graphs.node import END
from baobab.graphs.routing import Decision, RouteContext, Router

Value = Callable[[BaseModel], "float | Awaitable[float]"]


class LookaheadRouter(Router):
    """Route to the target whose branch, run `depth` steps ahead, reaches the best `value`.

    `budget` caps the super-steps one decision may spend on branches (each branch gets an equal share,
    at most `depth`); `sample` explores only that many candidates (drawn with `seed`); END, when
    a target, is scored as the state itself. `policy(state, targets)` routes inside branches (default: the
    first target). A branch that fails scores -inf.

    >>> router = LookaheadRouter(value=lambda s: s.score, depth=3)  # doctest: +SKIP
    >>> graph.route("choose", router, ["cautious", "bold"])  # doctest: +SKIP
    """

    def __init__(self, value: Value, *, depth: int = 2, budget: int | None = None, sample: int | None = None,
                 policy: Callable[[BaseModel, tuple[str, ...]], str] | None = None, seed: int = 0,
                 name: str = "lookahead") -> None:
        if depth < 1:
            raise ValueError(f"LookaheadRouter depth must be at least 1, got {depth}")
        if budget is not None and budget < 1:
            raise ValueError(f"LookaheadRouter budget must be at least 1 super-step, got {budget}")
        self.value, self.depth, self.budget, self.sample = value, depth, budget, sample
        self.policy, self.seed, self.name = policy, seed, name
        self.spent = 0  # node runs spent on branches, over all decisions

    async def decide(self, state: BaseModel, ctx: RouteContext) -> Decision:
        """Run a branch per candidate and route to the best-scored one (ties: the earlier target)."""
        if ctx.depth > 0 or ctx.explore is None:
            return Decision(self.policy(state, ctx.targets) if self.policy else ctx.targets[0], {}, "policy")
        candidates = [t for t in ctx.targets if t != END]
        if self.sample is not None and self.sample < len(candidates):
            rng = random.Random(f"{self.seed}:{ctx.thread}:{ctx.step}")
            candidates = sorted(rng.sample(candidates, self.sample), key=ctx.targets.index)
        steps = self.depth if self.budget is None else min(self.depth, self.budget // max(1, len(candidates)))
        scores: dict[str, float] = {}
        if END in ctx.targets:
            scores[END] = await self._value(state)
        if steps == 0:  # the budget cannot afford one step per branch: take the policy's choice
            return Decision(self.policy(state, ctx.targets) if self.policy else ctx.targets[0], scores,
                            f"budget {self.budget} < {len(candidates)} branches")
        explore = ctx.explore
        branches = await asyncio.gather(*(explore(target, steps) for target in candidates))
        notes = []
        for branch in branches:
            self.spent += branch.tasks
            scores[branch.target] = await self._value(branch.state) if branch.status != "error" else float("-inf")
            notes.append(f"{branch.target}: {branch.status} after {branch.tasks} node runs"
                         + (f" ({branch.thread})" if branch.thread else ""))
        best = max((t for t in ctx.targets if t in scores), key=scores.__getitem__)
        chosen = next((b for b in branches if b.target == best and b.status != "error"), None)
        return Decision(best, scores, f"lookahead {steps} steps; " + "; ".join(notes), adopt=chosen)

    async def _value(self, state: BaseModel) -> float:
        value: Any = self.value(state)
        return float(await value if inspect.isawaitable(value) else value)
