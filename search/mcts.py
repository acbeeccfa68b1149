"""Monte Carlo tree search: UCT or PUCT selection, batched concurrent expansions, backed-up returns."""

import math
from collections import Counter

from baobab.search.context import SearchContext
from baobab.search.hooks import Reflector
from baobab.search.tree import Node, Tree

SELECTIONS = ("uct", "puct")


async def mcts(ctx: SearchContext, *, c: float = 1.4, selection: str = "uct", batch: int = 1,
               reflect: Reflector | None = None, success: float = 1.0) -> None:
    """MCTS with UCT (Kocsis & Szepesvari 2006) or PUCT (Rosin 2011; Silver et al. 2017) selection.

    Each iteration selects up to `batch` distinct leaves (a virtual loss spreads them apart), expands
    them concurrently through the proposer (whose priors PUCT uses), evaluates each new leaf (its
    reward if it ended, else the evaluator's estimate) and backs the return up to the root. It runs
    until the budget, `target`, or until every leaf has ended (the tree is exhausted). Values should be
    on the scale of rewards near [0, 1] for the default `c`.

    With `reflect`, each terminal leaf whose total reward is below `success` gets a written lesson
    (LATS: Zhou et al. 2024, "Language Agent Tree Search"); a proposer reads them through `lessons()`,
    the agents sampled in a graph run those of their node's ancestors and siblings (`lessons_in_scope()`).

    >>> await mcts(ctx, c=1.0, selection="puct", batch=4)  # doctest: +SKIP
    >>> await mcts(ctx, reflect=llm_reflector(llm, describe))  # doctest: +SKIP
    """
    if selection not in SELECTIONS:
        raise ValueError(f"mcts selection must be one of {list(SELECTIONS)}, not {selection!r}")
    if batch < 1:
        raise ValueError(f"mcts needs batch >= 1, not {batch}")
    tree, closed = ctx.tree, set[int]()
    for node in reversed(tree.nodes):  # children have larger ids: one pass closes bottom-up
        _close(ctx, closed, node)
    while tree.root.id not in closed:
        leaves = _select_batch(tree, closed, c, selection == "puct", batch)
        fresh = [leaf for leaf in leaves if not leaf.visits]
        try:
            await ctx.expand(leaves)
            await ctx.evaluate(leaves)
        finally:  # what finished before a stop is backed up and kept
            for leaf in fresh:
                if leaf.visits:
                    _backup(tree, leaf)
            for leaf in leaves:
                _close(ctx, closed, leaf)
        if reflect is not None:
            await ctx.reflect([n for n in fresh if n.done and n.visits and tree.returns(n) < success], reflect)
        ctx.commit()


def _select_batch(tree: Tree, closed: set[int], c: float, puct: bool, batch: int) -> list[Node]:
    leaves: list[Node] = []
    busy: set[int] = set()
    pending: Counter[int] = Counter()  # virtual visits (of return 0) on the paths already chosen
    while len(leaves) < batch:
        leaf = _select(tree, closed, busy, pending, c, puct)
        if leaf is None:
            break
        leaves.append(leaf)
        busy.add(leaf.id)
        pending.update(n.id for n in tree.path(leaf))
    return leaves


def _select(tree: Tree, closed: set[int], busy: set[int], pending: Counter[int], c: float,
            puct: bool) -> Node | None:
    node = tree.root
    while node.expanded and not node.done:
        options = [child for child in tree.children(node) if child.id not in closed and child.id not in busy]
        if not options:
            return None
        parent_visits = node.visits + pending[node.id]
        node = max(options, key=lambda n: _score(n, pending[n.id], parent_visits, c, puct))
    return node


def _score(node: Node, pending: int, parent_visits: int, c: float, puct: bool) -> float:
    visits = node.visits + pending
    mean = node.value * node.visits / visits if visits else 0.0  # unvisited: 0, so PUCT's prior alone draws it
    if puct:
        return mean + c * node.prior * math.sqrt(parent_visits) / (1 + visits)
    if not visits:
        return math.inf
    return mean + c * math.sqrt(math.log(max(parent_visits, 1)) / visits)


def _backup(tree: Tree, leaf: Node) -> None:
    returned, node = leaf.value, leaf
    while node.parent is not None:
        node = tree.nodes[node.parent]
        returned += node.reward
        tree.record(node, returned)


def _close(ctx: SearchContext, closed: set[int], node: Node | None) -> None:
    """Close `node` and then its ancestors while nothing is left to learn below them."""
    tree = ctx.tree
    while node is not None and node.id not in closed:
        ended = bool(node.visits) and (node.done or ctx.too_deep(node))
        if not ended and not (node.expanded and all(i in closed for i in node.children)):
            return
        closed.add(node.id)
        node = tree.nodes[node.parent] if node.parent is not None else None
