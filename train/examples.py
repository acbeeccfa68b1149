"""Chat examples from a search tree: each step of a successful path, and Agent-R recovery traces.

A step example is the proposer's prompt at a state and the move the successful path took from it. A recovery trace
(Agent-R: Yuan et al. 2025) replays a failed path up to its first failing step, says what went wrong, goes back to
the state before that step and follows the sibling path that succeeded. Its turns alternate as a search does: the
user shows a state (the proposer's prompt), the assistant moves. The failed prefix carries "weight": 0 (OpenAI's
chat format: shown, not learnt), the reflection and the corrected path "weight": 1.
"""

from typing import Any

from baobab.search.llm_hooks import action_label
from baobab.search.tree import Node
from baobab.train.outcomes import Outcomes
from baobab.train.prompts import Chat, TreePrompts

REFLECTION = "The move {move} was a mistake: {why}. I go back to the state before it and choose again."
NO_SUCCESS = "no way to succeed was found after it"


async def step_examples(prompts: TreePrompts, outcomes: Outcomes) -> list[Chat]:
    """One example per step of each successful path, root first (steps shared by two paths once).

    >>> await step_examples(PromptFormat(describe).for_tree(tree), Outcomes(tree))  # doctest: +SKIP
    [[{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", "content": "1"}], ...]
    """
    examples: list[Chat] = []
    seen: set[int] = set()
    for end in outcomes.successes():
        for step in prompts.tree.path(end)[1:]:
            parent = _parent(prompts, step)
            if step.id not in seen and await prompts.asked(parent):
                seen.add(step.id)
                examples.append([*await prompts.prompt(parent), _said(prompts.reply(step))])
    return examples


async def recovery_traces(prompts: TreePrompts, outcomes: Outcomes) -> list[Chat]:
    """One trace per first failing step (see `Outcomes.first_failures`), spliced onto its best sibling's success.

    >>> await recovery_traces(PromptFormat(describe).for_tree(tree), Outcomes(tree))  # doctest: +SKIP
    """
    tree = prompts.tree
    traces: list[Chat] = []
    for failing in outcomes.first_failures():
        before = _parent(prompts, failing)
        corrected = outcomes.to_success(outcomes.best(tree.children(before)))
        failed_path = tree.path(failing)
        chat = (await prompts.prompt(tree.root))[:1]  # the system message, once
        for step in failed_path[1:]:
            chat += [await _shown(prompts, _parent(prompts, step)), _said(prompts.reply(step), 0)]
        chat += [_ended(failing) if failing.done else await _shown(prompts, failing),
                 _said(reflection(prompts, outcomes, failing), 1), await _shown(prompts, before)]
        for step in corrected[:-1]:
            chat += [_said(prompts.reply(step), 1), await _shown(prompts, step)]
        traces.append([*chat, _said(prompts.reply(corrected[-1]), 1)])
    return traces


def reflection(prompts: TreePrompts, outcomes: Outcomes, failing: Node) -> str:
    """The lesson about `failing`: a stored reflection that blames it (a LEAFE note naming its step, or a failed
    end's own lesson), else a template naming the move and what the environment said."""
    tree = prompts.tree
    below = [failing]
    for node in below:  # the subtree, oldest first
        below += tree.children(node)
    for node in sorted(below, key=lambda n: n.id):
        if node.reflection and tree.blamed(node).id == failing.id:
            return node.reflection
    ends = [n for n in sorted(below, key=lambda n: n.id) if n.done and n.feedback]
    if failing.done:
        why = failing.feedback or f"it ended the task with a total reward of {tree.returns(failing):g}"
    else:
        why = f"{NO_SUCCESS} ({ends[0].feedback})" if ends else NO_SUCCESS
    move = prompts.reply(failing) if prompts.checkpoints else action_label(failing.action)
    return REFLECTION.format(move=move, why=why)


def _parent(prompts: TreePrompts, node: Node) -> Node:
    assert node.parent is not None  # a step, not the root
    return prompts.tree.nodes[node.parent]


async def _shown(prompts: TreePrompts, node: Node) -> dict[str, Any]:
    """The user turn showing `node`'s state: the proposer's prompt without its system message."""
    return (await prompts.prompt(node))[-1]


def _ended(node: Node) -> dict[str, Any]:
    """The user turn after a move that ended the episode: what the environment said."""
    said = "\n".join(t for t in (node.observation, node.feedback) if t) or "The episode ended."
    return {"role": "user", "content": said}


def _said(text: str, weight: int | None = None) -> dict[str, Any]:
    return {"role": "assistant", "content": text} | ({} if weight is None else {"weight": weight})
