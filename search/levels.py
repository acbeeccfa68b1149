"""Level-by-level search: beam search and Tree-of-Thoughts breadth-first search with value pruning."""

from baobab.search.context import SearchContext


async def beam(ctx: SearchContext, *, width: int = 3) -> None:
    """Beam search (Lowerre 1976): expand every node of the beam, keep the `width` best-valued children.

    >>> await beam(ctx, width=4)  # doctest: +SKIP
    """
    await _by_level(ctx, width, None, "beam", "width")


async def bfs(ctx: SearchContext, *, breadth: int = 5, threshold: float | None = None) -> None:
    """Tree-of-Thoughts BFS (Yao et al. 2023): per level keep the `breadth` best states valued `threshold` or more.

    >>> await bfs(ctx, breadth=5, threshold=0.3)  # doctest: +SKIP
    """
    await _by_level(ctx, breadth, threshold, "bfs", "breadth")


async def _by_level(ctx: SearchContext, keep: int, threshold: float | None, name: str, option: str) -> None:
    if keep < 1:
        raise ValueError(f"{name} needs {option} >= 1, not {keep}")
    tree, frontier = ctx.tree, [ctx.tree.root]
    while frontier:
        await ctx.expand(frontier)
        children = [c for node in frontier for c in tree.children(node)]
        await ctx.evaluate(children)
        ctx.commit()
        # finished children stay in the tree as candidates; the beam carries only those that can go on
        alive = [c for c in children if not c.done and (threshold is None or tree.score(c) >= threshold)]
        frontier = tree.ranked(alive)[:keep]
