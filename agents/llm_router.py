"""A model as router: it reads the options' descriptions, worked examples and the state, and names one option.

The answer is JSON whose `choice` is an enum of the option names, decoded under that schema, so even
a 135M model always returns a valid target; an optional short `reason` is recorded with the decision.
What made SmolLM2-135M route (measured on a development set of arithmetic, poem and translation tasks):
worked examples as earlier chat turns (one situation -> choice per option), the state right before the
answer, and FINISH offered only once the state shows work was done (offered from the start, it took
nearly every task). Examples built from the descriptions did better than hand-written ones. Measured: 21 of
28 development tasks routed right (arithmetic 10/12, poems 4/8, translations 3/4, answered -> FINISH 4/4)
against 9 of 28 before; so a 135M model routes often but not reliably, and a larger model does better.
"""

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from baobab.agents.agent import shared_model
from baobab.agents.state import Said, TeamState, describe_state
from baobab.engine import DEFAULT_MODEL, LLM
from baobab.engine.budget import BudgetedLLM, Spend, current_spend
from baobab.graphs import END, Decision, RouteContext, Router

FINISH = "FINISH"  # how END is shown to a model
ROUTE = "For each situation, name the option that should act next."
FINISHED = "the task has been answered: the work so far contains the answer"
Example = tuple[str | BaseModel, str]  # (a task or a state, the target to choose; END to finish)


async def choose_option(model: str | LLM, options: Mapping[str, str], context: str, *, question: str = ROUTE,
                        examples: Sequence[tuple[str, str]] = (), reason: bool = False, max_tokens: int = 96,
                        name: str = "router") -> tuple[str, str | None]:
    """Ask `model` to pick one of `options` (name -> description) given `context`; returns (name, reason).

    `examples` are (situation, option name) pairs shown first as earlier turns of the conversation. The
    reply is decoded under a JSON schema whose `choice` must be one of the names; the call is charged to
    the current budget.

    >>> await choose_option("scripted:{\\"choice\\": \\"a\\"}", {"a": "first", "b": "second"}, "",
    ...                     examples=[("Task: go first", "a")])  # doctest: +SKIP
    ('a', None)
    """
    names = list(options)
    unknown = sorted({choice for _, choice in examples} - set(names))
    if unknown:
        raise ValueError(f"{name}: examples choose {unknown}; expected one of {names}")
    listing = "\n".join(f"- {n}: {d}" if d else f"- {n}" for n, d in options.items())
    messages = [{"role": "system", "content": f"Options:\n{listing}\n\n{question}"}]
    for situation, choice in examples:
        messages += [{"role": "user", "content": situation},
                     {"role": "assistant", "content": json.dumps({"choice": choice})}]
    messages.append({"role": "user", "content": context.strip() or "(no state)"})
    properties: dict[str, Any] = {"choice": {"enum": names}}
    if reason:
        properties["reason"] = {"type": "string", "maxLength": 200}
    spend = current_spend.get() or Spend(name=name)
    completion = await BudgetedLLM(shared_model(model), spend).complete(
        messages=messages, temperature=0, max_tokens=max_tokens,
        response_format={"type": "json_schema", "json_schema": {"name": "route", "schema": {
            "type": "object", "properties": properties, "required": list(properties)}}})
    try:
        answer = json.loads(completion.text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name}: the model's answer {completion.text!r} is not JSON ({exc})") from exc
    picked = answer.get("choice") if isinstance(answer, dict) else None
    if picked not in names:
        raise ValueError(f"{name}: the model answered {completion.text!r}; expected choice to be one of {names}")
    why = answer.get("reason")
    return str(picked), str(why) if why is not None else None


def work_done(state: BaseModel) -> bool:
    """Whether FINISH may be offered: a team state once someone spoke or an output was set; any other state.

    >>> work_done(TeamState(task="2 + 2?")), work_done(TeamState(task="2 + 2?", output="4"))
    (False, True)
    """
    messages = getattr(state, "messages", None)
    if not isinstance(messages, list):
        return True
    return bool(messages) or getattr(state, "output", None) is not None


def automatic_examples(options: Mapping[str, str], tasks: Mapping[str, str] | None = None, *,
                       finish: bool = False) -> list[Example]:
    """One example per option: its sample task from `tasks` (e.g. an agent's first worked example), else its
    description as an order ("writes poems" -> "Writes poems."); with `finish`, a state where the first
    option answered -> END.

    >>> automatic_examples({"poet": "writes poems"}, finish=True)[0]
    ('Writes poems.', 'poet')
    """
    samples = tasks or {}
    examples: list[Example] = [(samples.get(n) or f"{(d or n)[0].upper()}{(d or n)[1:].rstrip('.')}.", n)
                               for n, d in options.items()]
    if finish and options:
        first, _ = examples[0]
        examples.append((TeamState(task=str(first), messages=[Said(agent=next(iter(options)),
                                                                   content="(the answer)")]), END))
    return examples


def shown_examples(examples: Sequence[Example], offered: Sequence[str], *, name: str,
                   describe: Callable[[BaseModel], str] = describe_state) -> list[tuple[str, str]]:
    """`examples` as (situation text, label): tasks read as team states with nothing done yet (team states
    as `describe_state` writes them, other states by `describe`), END as FINISH; examples of FINISH are
    left out where it is not offered. A target that is not offered is an error.

    >>> shown_examples([("2 + 2?", "math")], ["math", "writer"], name="triage")
    [('Task: 2 + 2?\\n\\nWork so far:\\n(nothing yet)', 'math')]
    """
    unknown = sorted({t for _, t in examples if t not in offered and t not in (END, FINISH)})
    if unknown:
        raise ValueError(f"{name}: examples route to {unknown}, which are not among the targets {list(offered)}")
    finish = END in offered
    return [(describe_state(TeamState(task=s) if isinstance(s, str) else s) if isinstance(s, str | TeamState)
             else describe(s), FINISH if t in (END, FINISH) else t)
            for s, t in examples if finish or t not in (END, FINISH)]


class LLMRouter(Router):
    """Route by asking a model which target fits the state; END is offered as FINISH once work was done.

    `descriptions` (target -> text) default to the targets' agents' descriptions; `describe(state)` gives
    the state as text (default: the task and what was said, for a team; else the state's JSON).
    `examples` are (task or state, target) pairs shown before the state; by default one per target, from
    its agent's first worked example or its description. Inside a lookahead branch it still asks (a
    model's pick is the natural policy).

    >>> router = LLMRouter("local:smollm2-135m", {"math": "arithmetic", "writer": "prose"},
    ...                    examples=[("What is 6 * 7?", "math"), ("Write a poem about rain.", "writer")])
    >>> graph.route("triage", router, ["math", "writer", END])  # doctest: +SKIP
    """

    def __init__(self, model: str | LLM = DEFAULT_MODEL, descriptions: Mapping[str, str] | None = None, *,
                 describe: Callable[[BaseModel], str] | None = None, question: str = ROUTE, reason: bool = True,
                 examples: Sequence[Example] | None = None, name: str = "llm") -> None:
        self.model, self.descriptions, self.describe = model, dict(descriptions or {}), describe
        self.question, self.reason, self.name = question, reason, name
        self.examples = None if examples is None else _checked(examples, f"router {name!r}")

    async def decide(self, state: BaseModel, ctx: RouteContext) -> Decision:
        """One constrained model call: the target it names, and its reason."""
        targets = [t for t in ctx.targets if t != END or work_done(state) or len(ctx.targets) == 1]
        shown = {FINISH if t == END else t: t for t in targets}
        options = {label: self._description(target, ctx) for label, target in shown.items()}
        describe = self.describe or describe_state
        examples = self.examples
        if examples is None:
            agents = {t: _node_fn(t, ctx) for t in ctx.targets if t != END}
            tasks = {t: a.examples[0].task for t, a in agents.items() if getattr(a, "examples", None)}
            examples = automatic_examples({t: self._description(t, ctx) for t in ctx.targets if t != END},
                                          tasks, finish=True)
        name = f"router {self.name!r}"
        picked, why = await choose_option(self.model, options, describe(state), question=self.question,
                                          examples=shown_examples(examples, targets, name=name, describe=describe),
                                          reason=self.reason, name=name)
        return Decision(shown[picked], {}, why)

    def _description(self, target: str, ctx: RouteContext) -> str:
        if target in self.descriptions:
            return self.descriptions[target]
        if target == END:
            return FINISHED
        return str(getattr(_node_fn(target, ctx), "description", "") or "")


def _node_fn(target: str, ctx: RouteContext) -> Any:
    node = ctx.app.graph.nodes.get(target)
    return node.fn if node is not None else None


def _checked(examples: Sequence[Example], name: str) -> list[Example]:
    """`examples` as a list, each a (task or state, target name) pair, else a clear error."""
    for i, example in enumerate(examples):
        if not (isinstance(example, tuple) and len(example) == 2 and isinstance(example[0], str | BaseModel)
                and isinstance(example[1], str) and example[1]):
            raise ValueError(f"{name}: examples[{i}] is {example!r}; expected a (task or state, target name) pair")
    return list(examples)
