"""The state a team of agents shares in a graph: the task, what each agent said, who acts next."""

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
