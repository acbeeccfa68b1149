"""Greedy search: one path, always stepping to the child with the best value."""

from baobab.search.context import SearchContext


async def greedy(ctx: SearchContext) -> None:
    """Expand the current node, evaluate its children, step to the best-scored one; never look back.

    The baseline every other strategy is measured against: a step-by-step agent is this policy.

    >>> await greedy(ctx)  # doctest: +SKIP
    """
    tree, node = ctx.tree, ctx.tree.root
    while not node.done:
        await ctx.expand([node])
        children = tree.children(node)
        if not children:
            return
        await ctx.evaluate(children)
        ctx.commit()
        node = tree.ranked(children)[0]
