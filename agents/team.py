"""Teams of agents, built as graphs over a `TeamState` (so they checkpoint, resume and fork like any graph).

- `pipeline`: each agent in turn, each seeing what the earlier ones said.
- `supervisor`: a model picks the next agent (or to finish) from the agents' descriptions, after each turn.
- `handoffs`: agents pass control to each other with `transfer_to_<name>` tools; no handoff ends the run.
"""

import itertools
from collections.abc import Sequence
from typing import Any

from baobab.agents.agent import Agent
from baobab.agents.llm_router import (
    FINISH,
    FINISHED,
    Example,
    automatic_examples,
    choose_option,
    shown_examples,
    work_done,
)
from baobab.agents.state import TeamState, describe_state
from baobab.engine import DEFAULT_MODEL, LLM
from baobab.graphs import END, START, Graph


def pipeline(agents: Sequence[Agent], *, name: str = "pipeline") -> Graph:
    """A graph running `agents` one after another.

    >>> app = pipeline([researcher, writer]).compile()  # doctest: +SKIP
    >>> app.run({"task": "Explain baobabs"}).state.output  # doctest: +SKIP
    """
    graph = _with_agents(Graph(TeamState, name=name), agents)
    names = [START, *(a.name for a in agents), END]
    for source, target in itertools.pairwise(names):
        graph.edge(source, target)
    return graph


def supervisor(agents: Sequence[Agent], *, model: str | LLM = DEFAULT_MODEL, max_rounds: int = 8,
               examples: Sequence[Example] | None = None, name: str = "team") -> Graph:
    """A graph where a supervisor model picks who acts next after every turn, until it says FINISH.

    `examples` are (task or state, agent name or END) pairs shown before the state; by default one per
    agent (its first worked example's task, else its description) and one finished state. FINISH is
    offered once some agent has spoken.

    >>> app = supervisor([researcher, writer], model="openai/gpt-4o-mini").compile()  # doctest: +SKIP
    >>> supervisor([calculator, poet], examples=[("What is 6 * 7?", "calculator")])  # doctest: +SKIP
    """
    graph = _with_agents(Graph(TeamState, name=name), agents)
    graph.node("supervisor", Supervisor(agents, model, max_rounds, examples))
    graph.edge(START, "supervisor")
    for agent in agents:
        graph.edge(agent.name, "supervisor")
    return graph.route("supervisor", _next_or_end, [*(a.name for a in agents), END])


def handoffs(agents: Sequence[Agent], *, name: str = "handoffs") -> Graph:
    """A graph starting with the first agent, where each agent may hand off to those in its `handoffs`.

    >>> triage = Agent("triage", handoffs=["billing", "support"])  # doctest: +SKIP
    >>> app = handoffs([triage, billing, support]).compile()  # doctest: +SKIP
    """
    names = {a.name for a in agents}
    for agent in agents:
        unknown = sorted(set(agent.handoffs) - names)
        if unknown:
            raise ValueError(f"agent {agent.name!r} hands off to {unknown}, which are not in the team {sorted(names)}")
    graph = _with_agents(Graph(TeamState, name=name), agents).edge(START, agents[0].name)
    for agent in agents:
        if agent.handoffs:
            graph.route(agent.name, _next_or_end, [*agent.handoffs, END])
        else:
            graph.edge(agent.name, END)
    return graph


class Supervisor:
    """The supervisor node: asks a model (JSON constrained to the agents' names) who acts next."""

    def __init__(self, agents: Sequence[Agent], model: str | LLM, max_rounds: int,
                 examples: Sequence[Example] | None = None) -> None:
        self.agents, self.model, self.max_rounds = list(agents), model, max_rounds
        described = {a.name: a.description for a in self.agents}
        tasks = {a.name: a.examples[0].task for a in self.agents if a.examples}
        self.examples = automatic_examples(described, tasks, finish=True) if examples is None else list(examples)
        shown_examples(self.examples, [*described, END], name="supervisor")  # a wrong name fails here, not mid-run

    async def __call__(self, state: TeamState) -> dict[str, Any]:
        if state.rounds >= self.max_rounds:
            return {"next": "", "rounds": state.rounds}
        finish = work_done(state)  # offered from the start, FINISH took nearly every task on a small model
        offered = [*(a.name for a in self.agents), *([END] if finish else [])]
        options = {a.name: a.description for a in self.agents} | ({FINISH: FINISHED} if finish else {})
        picked, _ = await choose_option(self.model, options, describe_state(state), name="supervisor",
                                        examples=shown_examples(self.examples, offered, name="supervisor"),
                                        max_tokens=32)
        return {"next": "" if picked == FINISH else picked, "rounds": state.rounds + 1}


def _with_agents(graph: Graph, agents: Sequence[Agent]) -> Graph:
    if not agents:
        raise ValueError("a team needs at least one agent")
    for agent in agents:
        graph.node(agent.name, agent)
    return graph


def _next_or_end(state: Any) -> str:
    return str(state.next) or END
