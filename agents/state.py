"""The state a team of agents shares in a graph (the task, what each agent said, who acts next), and a
state as models read it: text for prompts, an embedding for routers' features."""

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel

from baobab.graphs import append


class Said(BaseModel):
    """One agent's contribution to a team's work."""

    agent: str
    content: str


class TeamState(BaseModel):
    """A team's graph state: agents read `task` and `messages`, append to `messages`, set `output`.

    `next` is who acts next: a supervisor's pick or an agent's handoff ("" when nobody is named).
    """

    task: str = ""
    messages: Annotated[list[Said], append] = []
    next: str = ""
    output: Any = None
    rounds: int = 0  # supervisor turns taken


def describe_state(state: BaseModel) -> str:
    """A state as a prompt reads it: a team's task and what each agent said, else the state's JSON.

    >>> describe_state(TeamState(task="sum 2 and 2"))
    'Task: sum 2 and 2\n\nWork so far:\n(nothing yet)'
    """
    task, messages = getattr(state, "task", None), getattr(state, "messages", None)
    if isinstance(task, str) and isinstance(messages, list):
        said = "\n".join(f"- {getattr(m, 'agent', '?')}: {getattr(m, 'content', m)}" for m in messages)
        return f"Task: {task}\n\nWork so far:\n{said or '(nothing yet)'}"
    return f"State:\n{state.model_dump_json(indent=1)[:4000]}"


def embedding_features(embedder: Any = None) -> Callable[[BaseModel], list[float]]:
    """Features of a state for a `BanditRouter`: the embedding of `describe_state(state)`.

    `embedder`: an `Embedder` or its name (default: the installed all-MiniLM-L6-v2, loaded on first use).

    >>> router = BanditRouter("triage", reward=solved, features=embedding_features())  # doctest: +SKIP
    """
    from baobab.memory.embedders import load_embedder

    loaded: list[Any] = []

    def features(state: BaseModel) -> list[float]:
        if not loaded:
            loaded.append(load_embedder(embedder) if embedder is None or isinstance(embedder, str) else embedder)
        return [float(v) for v in loaded[0].embed([describe_state(state)])[0]]

    return features
