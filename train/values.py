"""Value targets from a search tree: the judge's prompt at each visited state and what the search measured there.

`value` is the node's mean backed-up return (its own reward included: for tasks that pay at the end, the judge's
score / scale), `success_rate` the share of the ends seen below it that succeeded (None: no end seen), `visits`
how many returns the mean is over: a trainer may weight or filter by it.
"""

from typing import Any

from baobab.train.outcomes import Outcomes
from baobab.train.prompts import TreePrompts


def value_targets(prompts: TreePrompts, outcomes: Outcomes, min_visits: int = 1) -> list[dict[str, Any]]:
    """One record per node with at least `min_visits` visits, oldest first.

    >>> value_targets(PromptFormat(describe).for_tree(tree), Outcomes(tree))  # doctest: +SKIP
    [{"prompt": [...], "value": 0.5, "success_rate": 0.5, "visits": 4, "done": False}, ...]
    """
    return [{"prompt": prompts.judged(node), "value": node.value, "success_rate": outcomes.rate(node),
             "visits": node.visits, "done": node.done}
            for node in prompts.tree.nodes if node.visits >= max(min_visits, 1)]
