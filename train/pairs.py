"""Preference pairs from a search tree: at a state, a move that led to success over a sibling that was seen to fail.

In the conversational form DPO trainers read (TRL): {"prompt": messages, "chosen": [answer], "rejected": [answer]}.
Only outcomes make a pair (a success below one sibling, a failure and no success below the other), never value
estimates alone, which a weak judge gets wrong as often as right.
"""

from typing import Any

from baobab.train.outcomes import Outcomes
from baobab.train.prompts import TreePrompts


async def preference_pairs(prompts: TreePrompts, outcomes: Outcomes) -> list[dict[str, Any]]:
    """For each state (oldest first), each failed child (oldest first) against the best child that succeeded.

    >>> await preference_pairs(PromptFormat(describe).for_tree(tree), Outcomes(tree))  # doctest: +SKIP
    [{"prompt": [...], "chosen": [{"role": "assistant", "content": "1"}], "rejected": [...]}]
    """
    tree = prompts.tree
    pairs: list[dict[str, Any]] = []
    for node in tree.nodes:
        children = tree.children(node)
        worse = [c for c in children if outcomes.failed(c)]
        if not worse or not any(c.id in outcomes.won for c in children):
            continue
        better = prompts.reply(outcomes.best(children))
        prompt = await prompts.prompt(node)
        pairs += [{"prompt": prompt, "chosen": [{"role": "assistant", "content": better}],
                   "rejected": [{"role": "assistant", "content": prompts.reply(c)}]} for c in worse]
    return pairs
