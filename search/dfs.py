"""Tree-of-Thoughts depth-first search with value pruning."""

from baobab.search.context import SearchContext
from baobab.search.tree import Node


async def dfs(ctx: SearchContext, *, threshold: float | None = None) -> None:
    """ToT DFS (Yao et al. 2023): go deeper into the best-valued child first; prune children valued below `threshold`.

    Backtracks when a subtree is finished or pruned; stops at the budget or at `target` (a common option).

    >>> await dfs(ctx, threshold=0.5)  # doctest: +SKIP
    """
    await _visit(ctx, ctx.tree.root, threshold)


async def _visit(ctx: SearchContext, node: Node, threshold: float | None) -> None:
    tree = ctx.tree
    await ctx.expand([node])
    children = tree.children(node)
    await ctx.evaluate(children)
    ctx.commit()
    for child in tree.ranked(children):
        if not child.done and (threshold is None or tree.score(child) >= threshold):
            await _visit(ctx, child, threshold)
