"""Lookahead: simulate each candidate next step a few steps ahead, commit the best one step, re-plan."""

import random

from baobab.search.context import SearchContext
from baobab.search.tree import Node


async def lookahead(ctx: SearchContext, *, depth: int = 3, rollouts: int = 4, agree: float = 0.05) -> None:
    """Limited commitment (FLARE, "Why reasoning fails to plan") with rollouts stopped early (MAXS).

    At the committed node, each candidate next step (the proposer's) gets up to `rollouts` simulations of
    at most `depth` further steps through the shared tree: the first follows the best-valued child, the
    others sample children by prior. A rollout returns the value of where it ended (rewards on the way
    plus the evaluator's estimate, or the final reward); the candidate with the best return is committed
    and planning starts again from it. A candidate gets no more rollouts once it has had two or more and
    their returns all lie within `agree` (its futures agree: MAXS's stop, which saves the rest). Each
    return is also backed up into the candidate (`visits` - 1 rollouts; `value` their mean with the first
    estimate), so a resumed search replays its rollouts without counting them twice.

    >>> await lookahead(ctx, depth=4, rollouts=3, agree=0.1)  # doctest: +SKIP
    """
    if depth < 1 or rollouts < 1 or agree < 0:
        raise ValueError(f"lookahead needs depth >= 1, rollouts >= 1 and agree >= 0, not {depth}, {rollouts}, {agree}")
    tree, node = ctx.tree, ctx.tree.root
    while not node.done:
        await ctx.expand([node])
        candidates = tree.children(node)
        if not candidates:
            return
        await ctx.evaluate(candidates)
        ctx.commit()
        returns: dict[int, list[float]] = {c.id: [] for c in candidates}
        for turn in range(rollouts):
            todo = [c for c in candidates if not c.done and not _agreed(returns[c.id], agree)]
            if not todo:
                break
            for candidate, value in zip(todo, await _simulate(ctx, todo, turn, depth), strict=True):
                returns[candidate.id].append(value)
                if candidate.visits < 2 + turn:  # a search resumed over its stored tree replays, never re-counts
                    tree.record(candidate, value - tree.returns(node))
            ctx.commit()
        node = max(candidates, key=lambda c: (max(returns[c.id], default=tree.score(c)), c.prior, -c.id))


def _agreed(values: list[float], agree: float) -> bool:
    return len(values) >= 2 and max(values) - min(values) <= agree


async def _simulate(ctx: SearchContext, starts: list[Node], turn: int, depth: int) -> list[float]:
    """One rollout from each start, side by side a step at a time (their expansions batch); the ends' values."""
    tree, heads = ctx.tree, list(starts)
    rngs = [random.Random(f"{ctx.seed}:lookahead:{turn}:{start.id}") for start in starts]  # replayable
    for _ in range(depth):
        live = [h for h in heads if not h.done and not ctx.too_deep(h) and not (h.expanded and not h.children)]
        if not live:
            break
        await ctx.expand(live)
        await ctx.evaluate([child for head in live for child in tree.children(head)])
        moving = {h.id for h in live}
        for i, head in enumerate(heads):
            children = tree.children(head) if head.id in moving else []
            if not children:
                continue
            weights = [c.prior for c in children] if sum(c.prior for c in children) > 0 else None
            heads[i] = tree.ranked(children)[0] if turn == 0 else rngs[i].choices(children, weights)[0]
    # a dead end has no future: only the rewards on the way count
    return [tree.returns(h) if h.expanded and not h.children and not h.done else tree.score(h) for h in heads]
