"""A router that learns which target pays: a contextual bandit (LinUCB or Thompson sampling) over the targets.

Each decision reads features of the state, scores every target by a ridge regression of the rewards
it earned in similar states plus an exploration term, and takes the best. The reward of a decision is
`reward(state)` at the router's next decision in the same thread or when the run ends, whichever comes
first. Observations are appended to the store's `router_rewards` table and replayed in order, so a
router of the same name learns across runs and processes (no read-modify-write to race on). A
`decay` below 1 forgets old rewards geometrically, so the router recovers when the best target changes.
"""

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel
from sqlalchemy import insert, select

from baobab.graphs.routing import Decision, RouteContext, Router
from baobab.store import Store
from baobab.store.schema import router_rewards

Features = Callable[[BaseModel], Sequence[float]]


class BanditRouter(Router):
    """Route to the target a contextual bandit expects to pay most, exploring the uncertain ones.

    `reward(state)` scores the outcome (best kept within about [0, 1]); `features(state)` gives the context
    (a constant bias is added; without `features` it is a plain multi-armed bandit). `method`: "linucb"
    (mean + `alpha` standard errors, default 1; Li et al. 2010) or "thompson" (a draw from the
    posterior, scale `alpha`, default 0.5; Agrawal and Goyal 2013). `decay` < 1 discounts old
    observations (D-LinUCB; Russac et al. 2019). Observations persist in `store` (default: the app's
    checkpointer store, else memory only).

    >>> router = BanditRouter("pick-solver", reward=lambda s: float(s.solved))  # doctest: +SKIP
    >>> graph.route("plan", router, ["solver_a", "solver_b"])  # doctest: +SKIP
    """

    def __init__(self, name: str, *, reward: Callable[[BaseModel], float], features: Features | None = None,
                 method: Literal["linucb", "thompson"] = "linucb", alpha: float | None = None, decay: float = 0.99,
                 ridge: float = 1.0, store: Store | str | None = None, seed: int | None = 0) -> None:
        if method not in ("linucb", "thompson"):
            raise ValueError(f"BanditRouter method must be 'linucb' or 'thompson', got {method!r}")
        if not 0 < decay <= 1:
            raise ValueError(f"BanditRouter decay must be in (0, 1], got {decay}")
        self.name, self.reward, self.features, self.method = name, reward, features, method
        # defaults that settled fastest on tests/graphs' switching arms without getting stuck
        self.alpha = alpha if alpha is not None else 1.0 if method == "linucb" else 0.5
        self.decay, self.ridge = decay, ridge
        self.store: Store | None = Store(store) if isinstance(store, str) else store
        self._rng = np.random.default_rng(seed if seed is not None else random.randrange(2**32))
        self._a: dict[str, np.ndarray] = {}  # per arm: ridge Gram matrix of the features
        self._b: dict[str, np.ndarray] = {}  # per arm: reward-weighted feature sum
        self._dim: int | None = None
        self._seen = 0  # the last router_rewards id replayed
        self._pending: dict[str, list[tuple[str, list[float]]]] = {}  # thread -> decisions awaiting reward
        self._lock = asyncio.Lock()
        self.observations = 0

    async def decide(self, state: BaseModel, ctx: RouteContext) -> Decision:
        """Reward this thread's earlier decisions with `state`, then pick the target with the best score."""
        if self.store is None and ctx.app.checkpointer is not None:
            self.store = ctx.app.checkpointer.store
        x = self._context(state)
        async with self._lock:
            if ctx.depth == 0:
                await self._settle(state, ctx.thread)
            await asyncio.to_thread(self._sync)
            explore = ctx.depth == 0  # inside a lookahead branch: exploit, learn nothing
            scores = {arm: self._score(arm, x, explore) for arm in ctx.targets}
        choice = max(scores, key=scores.__getitem__)
        if ctx.depth == 0:
            self._pending.setdefault(ctx.thread, []).append((choice, x))
        return Decision(choice, scores, f"{self.method}: {self.observations} rewards seen")

    async def finish(self, state: BaseModel, thread: str) -> None:
        """The run ended: its open decisions earn `reward(state)`."""
        async with self._lock:
            await self._settle(state, thread)

    def means(self, state: BaseModel, targets: Sequence[str]) -> dict[str, float]:
        """The reward each target is expected to earn in `state`, as learned so far (no exploration)."""
        self._sync()
        x = self._context(state)
        return {arm: float(self._theta(arm) @ np.asarray(x)) for arm in targets}

    # ---- learning ---------------------------------------------------------------------------------

    async def _settle(self, state: BaseModel, thread: str) -> None:
        pending = self._pending.pop(thread, [])
        if not pending:
            return
        value = float(self.reward(state))
        rows = [{"router": self.name, "arm": arm, "features": json.dumps(x), "reward": value, "thread": thread,
                 "created": time.time()} for arm, x in pending]
        if self.store is None:
            for arm, x in pending:
                self._learn(arm, x, value)
            return
        store = self.store

        def write() -> None:
            with store.transaction() as conn:
                conn.execute(insert(router_rewards), rows)

        await asyncio.to_thread(write)

    def _sync(self) -> None:
        """Replay the observations stored since the last sync (this process's and others', in id order)."""
        if self.store is None:
            return
        with self.store.transaction() as conn:
            rows = conn.execute(select(router_rewards.c.id, router_rewards.c.arm, router_rewards.c.features,
                                       router_rewards.c.reward)
                                .where(router_rewards.c.router == self.name, router_rewards.c.id > self._seen)
                                .order_by(router_rewards.c.id)).all()
        for ident, arm, features, reward in rows:
            self._learn(arm, json.loads(features), reward)
            self._seen = ident

    def _learn(self, arm: str, x: list[float], reward: float) -> None:
        if self._dim is None:
            self._dim = len(x)
        elif len(x) != self._dim:
            raise ValueError(f"router {self.name!r}: features have {len(x) - 1} values, earlier ones "
                             f"{self._dim - 1}; a router's features must keep their length")
        self._arm(arm)
        if self.decay < 1:  # every arm forgets a little at each observation, towards the prior
            prior = (1 - self.decay) * self.ridge * np.eye(self._dim)
            for name in self._a:
                self._a[name] = self.decay * self._a[name] + prior
                self._b[name] = self.decay * self._b[name]
        v = np.asarray(x)
        self._a[arm] += np.outer(v, v)
        self._b[arm] += reward * v
        self.observations += 1

    # ---- scoring ----------------------------------------------------------------------------------

    def _context(self, state: BaseModel) -> list[float]:
        x = [float(v) for v in self.features(state)] if self.features is not None else []
        x.append(1.0)  # the bias: each arm's mean reward
        if self._dim is not None and len(x) != self._dim:
            raise ValueError(f"router {self.name!r}: features gave {len(x) - 1} values, earlier ones "
                             f"{self._dim - 1}; a router's features must keep their length")
        self._dim = len(x)
        return x

    def _arm(self, arm: str) -> None:
        if arm not in self._a:
            assert self._dim is not None
            self._a[arm] = self.ridge * np.eye(self._dim)
            self._b[arm] = np.zeros(self._dim)

    def _theta(self, arm: str) -> np.ndarray:
        self._arm(arm)
        return np.linalg.solve(self._a[arm], self._b[arm])

    def _score(self, arm: str, x: list[float], explore: bool) -> float:
        theta, v = self._theta(arm), np.asarray(x)
        if not explore:
            return float(theta @ v)
        inverse = np.linalg.inv(self._a[arm])
        if self.method == "thompson":
            draw = self._rng.multivariate_normal(theta, self.alpha**2 * inverse)
            return float(draw @ v)
        return float(theta @ v + self.alpha * np.sqrt(v @ inverse @ v))
