"""Backtracking: on failure, note what the environment said, return to an earlier decision, try again."""

from baobab.search.context import SearchContext
from baobab.search.greedy import descend
from baobab.search.hooks import Chooser, Reflector, feedback_note
from baobab.search.tree import Node


async def backtrack(ctx: SearchContext, *, success: float = 1.0, summarise: Reflector | None = None,
                    choose: Chooser | None = None) -> None:
    """Backtracking with experience from feedback (LEAFE): greedy attempts, each failure leaves an experience note.

    An attempt walks greedily until the episode ends; it succeeds at a total reward of `success` or more.
    A failure (a lower reward, a dead end, `max_depth`) gets an experience note on its last node:
    `summarise`'s (e.g. `llm_reflector`) or the environment's feedback along the path (`feedback_note`).
    Then the search returns to an untried alternative of a decision already taken: `choose`'s pick
    (e.g. `llm_chooser`) or the best-valued one, the deepest among equals; states are functional, so
    it continues from there as from a checkpoint. The notes reach the proposer through `lessons()` and
    the result (`SearchResult.experiences`). Stops at a success, when no alternative is left, or at the budget.

    >>> await backtrack(ctx, success=1.0, summarise=llm_reflector(llm, describe))  # doctest: +SKIP
    """
    tree = ctx.tree
    # a resumed search goes on from the choice after its last failure: the notes mark the attempts made
    failed = [n for n in tree.nodes if n.reflection]
    node = await _return_point(ctx, choose, failed[-1]) if failed else tree.root
    while node is not None:
        end = await descend(ctx, node, success)
        if end.done and tree.returns(end) >= success:
            return
        await ctx.reflect([end], summarise or feedback_note)
        ctx.commit()
        node = await _return_point(ctx, choose, end)


async def _return_point(ctx: SearchContext, choose: Chooser | None, end: Node) -> Node | None:
    """The untried alternative to continue from after `end` failed: a child of a node on a failed path."""
    tree = ctx.tree
    failed = [n for n in tree.nodes if n.reflection]
    tried = {tree.root.id} | {n.id for f in failed for n in tree.path(f)}
    options = [c for i in sorted(tried) for c in tree.children(tree.nodes[i])
               if c.id not in tried and not c.done and not ctx.too_deep(c)]
    if not options:
        return None
    options.sort(key=lambda n: (-tree.score(n), -n.depth, -n.prior, n.id))
    if choose is None:
        return options[0]
    index = await ctx.ask(choose, tree.path(end), [tree.path(o) for o in options])
    return options[index] if 0 <= index < len(options) else options[0]
