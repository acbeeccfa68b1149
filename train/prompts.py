"""How the proposer asked, so that a dataset asks the same way: its messages at a state, the answer naming a move.

The messages are built by the proposer's own code (`baobab.search.llm_hooks.proposal_messages`), with no lessons
shown (a search's prompts before any reflection is written) and, unless `critique`, no judge's assessment (MCTS
expands a leaf before judging it, so its proposer never saw one; greedy, beam and lookahead did).
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from baobab.engine import Message
from baobab.search.environment import Environment, resolve
from baobab.search.llm_hooks import (
    JUDGE,
    PROPOSE,
    Describe,
    action_label,
    judge_messages,
    proposal_answer,
    proposal_messages,
)
from baobab.search.tree import Node, Tree

Chat = list[dict[str, Any]]
"""Messages in the OpenAI chat format: {"role": ..., "content": ...}."""

EnvFor = Environment | Callable[[Any], Environment]
"""The environment whose legal actions the proposer listed, or a function of the task (the root state) making it."""


@dataclass(frozen=True)
class PromptFormat:
    """The proposer to imitate: `describe` as given to it, and `env` for a `legal_actions_proposer` (its prompt lists
    the legal actions, its answer is {"action": ...}) or None for an `llm_proposer` with `instructions`.

    `answer(child)` overrides the text that names a child's move (the default is the proposer's: the action's
    label; for a graph run's tree, whose actions are checkpoint ids, what the choice point said).

    >>> fmt = PromptFormat(describe, env=lambda numbers: Game24(" ".join(numbers)))  # doctest: +SKIP
    """

    describe: Describe
    env: EnvFor | None = None
    instructions: str = PROPOSE
    answer: Callable[[Node], str] | None = None
    critique: bool = False
    judge: str = JUDGE
    scale: float = 10.0

    def for_tree(self, tree: Tree, checkpoints: bool = False) -> "TreePrompts":
        """The prompts of one tree (its task picks the environment)."""
        return TreePrompts(self, tree, _environment(self.env, tree.root.state), checkpoints)


class TreePrompts:
    """A `PromptFormat` applied to one tree: prompts at its nodes and answers naming its moves.

    >>> prompts = PromptFormat(describe).for_tree(tree)  # doctest: +SKIP
    >>> await prompts.prompt(tree.root), prompts.reply(tree.nodes[1])  # doctest: +SKIP
    """

    def __init__(self, fmt: PromptFormat, tree: Tree, env: Environment | None, checkpoints: bool) -> None:
        self.fmt, self.tree, self.env, self.checkpoints = fmt, tree, env, checkpoints
        self._legal: dict[int, list[str]] = {}

    async def legal(self, node: Node) -> list[str] | None:
        """The labels of the legal actions the proposer listed at `node` (None: a free-text proposer)."""
        if self.env is None:
            return None
        if node.id not in self._legal:  # as the proposer lists them: labels, repeats dropped, in the env's order
            found = await resolve(self.env.actions(node.state))
            self._legal[node.id] = list(dict.fromkeys(action_label(a) for a in found))
        return self._legal[node.id]

    async def asked(self, node: Node) -> bool:
        """Whether the proposer asks the model at `node`: a legal-actions proposer takes a forced move unasked."""
        legal = await self.legal(node)
        return legal is None or len(legal) > 1

    async def prompt(self, node: Node) -> Chat:
        """The proposer's messages at `node`'s state."""
        path = self._path(node)
        legal = await self.legal(node)
        return _chat(proposal_messages(self.fmt.describe, node.state, path, legal=legal,
                                       instructions=self.fmt.instructions, notes=[]))

    def reply(self, child: Node) -> str:
        """The answer that names the move to `child`."""
        if self.fmt.answer is not None:
            return self.fmt.answer(child)
        if self.checkpoints:  # the action is a checkpoint id: the move is what the choice point said
            return child.observation
        return proposal_answer(child.action, legal=self.env is not None)

    def judged(self, node: Node) -> Chat:
        """The judge's messages at `node`'s state (`llm_judge`'s)."""
        return _chat(judge_messages(self.fmt.describe, node.state, self.tree.path(node), scale=self.fmt.scale,
                                    instructions=self.fmt.judge))

    def _path(self, node: Node) -> list[Node]:
        path = self.tree.path(node)
        if not self.fmt.critique and path[-1].critique:  # the proposer did not see it (see the module's note)
            path[-1] = dataclasses.replace(path[-1], critique="")
        return path


def _environment(env: EnvFor | None, task: Any) -> Environment | None:
    """`env`, or what it makes for `task` if it is a factory (a class, or a callable with no `actions`)."""
    if env is None or (not isinstance(env, type) and callable(getattr(env, "actions", None))):
        return cast(Environment | None, env)
    return cast(Callable[[Any], Environment], env)(task)


def _chat(messages: list[Message]) -> Chat:
    return [{"role": m.role, "content": m.content or ""} for m in messages]
