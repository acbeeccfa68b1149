"""Best-of-n: independent rollouts from the root, each action drawn by the proposer's priors."""

import random

from baobab.search.context import SearchContext
from baobab.search.tree import Node


async def best_of_n(ctx: SearchContext, *, n: int = 8) -> None:
    """Run `n` rollouts side by side, one step each at a time; rollouts that meet share their expansions.

    Each step draws a child with probability proportional to its prior (seeded per rollout); the best
    trajectory is the best terminal reached. No values are needed, so the evaluator is never called.

    >>> await best_of_n(ctx, n=4)  # doctest: +SKIP
    """
    if n < 1:
        raise ValueError(f"best_of_n needs n >= 1, not {n}")
    rngs = [random.Random(f"{ctx.seed}:best_of_n:{i}") for i in range(n)]
    heads: list[Node | None] = [ctx.tree.root] * n
    while any(h is not None for h in heads):
        await ctx.expand([h for h in heads if h is not None])
        ctx.commit()
        for i, head in enumerate(heads):
            children = ctx.tree.children(head) if head is not None and not head.done else []
            heads[i] = rngs[i].choices(children, weights=[c.prior for c in children])[0] if children else None
