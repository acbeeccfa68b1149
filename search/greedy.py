"""Greedy search: one path, always stepping to the child with the best value."""

from baobab.search.context import SearchContext
from baobab.search.tree import Node


async def greedy(ctx: SearchContext) -> None:
    """Expand the current node, evaluate its children, step to the best-scored one; never look back.

    The baseline every other strategy is measured against: a step-by-step agent is this policy.

    >>> await greedy(ctx)  # doctest: +SKIP
    """
    await descend(ctx, ctx.tree.root)


async def descend(ctx: SearchContext, node: Node, success: float | None = None) -> Node:
    """The greedy walk from `node`; returns where it stopped (an ended episode, a dead end, or `max_depth`).

    With `success`, a child that ends with a total reward of at least `success` is taken before any other.
    """
    tree = ctx.tree
    while not node.done:
        await ctx.expand([node])
        children = tree.children(node)
        if not children:
            return node
        await ctx.evaluate(children)
        ctx.commit()
        wins = [c for c in children if c.done and success is not None and tree.returns(c) >= success]
        node = tree.ranked(wins or children)[0]
    return node
