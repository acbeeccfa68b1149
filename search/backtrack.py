"""Backtracking: on failure, note what the environment said, return to an earlier decision, try again."""

from baobab.search.context import SearchContext
from baobab.search.greedy import descend
from baobab.search.hooks import Chooser, Reflector, feedback_note
from baobab.search.tree import Node, Tree


async def backtrack(ctx: SearchContext, *, success: float = 1.0, summarise: Reflector | None = None,
                    choose: Chooser | None = None) -> None:
    """Backtracking with experience from feedback (LEAFE): greedy attempts, each failure leaves an experience note.

    An attempt walks greedily until the episode ends; it succeeds at a total reward of `success` or more.
    A failure (a lower reward, a dead end, `max_depth`) gets an experience note on its last node:
    `summarise`'s (e.g. `llm_reflector`) or the environment's feedback along the path (`feedback_note`).
    Then the search returns to an untried alternative of a decision already taken: `choose`'s pick
    (e.g. `llm_chooser`) among the options in the default order, or the first of them. States are
    functional, so it continues from there as from a checkpoint. The notes reach the proposer through
    `lessons()`, the agents of a graph run through `lessons_in_scope()`, and the result
    (`SearchResult.experiences`). Stops at a success, when no alternative is left, or at the budget.

    The default order reads the notes. A note that names the step where the failure began (a `Lesson`
    with a `step`, e.g. `llm_reflector(..., locate=True)`) is LEAFE's rollback point (Ge et al. 2026,
    "Internalizing Agency from Reflective Experience"): everything below that step is expected to fail
    the same way, so alternatives to the step itself (its untried siblings) come first and those below it
    last; demoted, not pruned, so a wrong verdict costs expansions, never the solution. Among equals,
    and with notes that name no step, the best-valued alternative comes first, the deepest among equals.

    >>> await backtrack(ctx, success=1.0, summarise=llm_reflector(llm, describe, locate=True))  # doctest: +SKIP
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
    blamed = [tree.blamed(f) for f in failed if f.failed_at is not None]
    options.sort(key=lambda n: (*_verdict(tree, n, blamed), -tree.score(n), -n.depth, -n.prior, n.id))
    if choose is None:
        return options[0]
    index = await ctx.ask(choose, tree.path(end), [tree.path(o) for o in options])
    return options[index] if 0 <= index < len(options) else options[0]


def _verdict(tree: Tree, option: Node, blamed: list[Node]) -> tuple[bool, bool]:
    """How the notes rate returning to `option` (False first): (it lies below a step they blame, it is no
    alternative to one)."""
    below = {n.id for n in tree.path(option)}
    return any(b.id in below for b in blamed), not any(b.parent == option.parent for b in blamed)
