"""A model as router: it reads the options' descriptions and the state and names one option.

The answer is JSON whose `choice` is an enum of the option names, decoded under that schema, so even
a 135M model always returns a valid target; an optional short `reason` is recorded with the decision.
"""

import json
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from baobab.agents.agent import shared_model
from baobab.agents.state import describe_state
from baobab.engine import DEFAULT_MODEL, LLM
from baobab.engine.budget import BudgetedLLM, Spend, current_spend
from baobab.graphs import END, Decision, RouteContext, Router

FINISH = "FINISH"  # how END is shown to a model
ROUTE = "You route work to the right place. Choose the option that should act next."


async def choose_option(model: str | LLM, options: Mapping[str, str], context: str, *, question: str = ROUTE,
                        reason: bool = False, max_tokens: int = 96, name: str = "router") -> tuple[str, str | None]:
    """Ask `model` to pick one of `options` (name -> description) given `context`; returns (name, reason).

    The reply is decoded under a JSON schema whose `choice` must be one of the names; the call is charged
    to the current budget.

    >>> await choose_option("scripted:{\\"choice\\": \\"a\\"}", {"a": "first", "b": "second"}, "")  # doctest: +SKIP
    ('a', None)
    """
    names = list(options)
    listing = "\n".join(f"- {n}: {d}" if d else f"- {n}" for n, d in options.items())
    properties: dict[str, Any] = {"choice": {"enum": names}}
    if reason:
        properties["reason"] = {"type": "string", "maxLength": 200}
    spend = current_spend.get() or Spend(name=name)
    completion = await BudgetedLLM(shared_model(model), spend).complete(
        messages=[{"role": "user", "content": f"{question}\n\nOptions:\n{listing}\n\n{context}".rstrip()}],
        temperature=0, max_tokens=max_tokens,
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


class LLMRouter(Router):
    """Route by asking a model which target fits the state; END is offered as FINISH.

    `descriptions` (target -> text) default to the targets' agents' descriptions; `describe(state)` gives
    the state as text (default: the task and what was said, for a team; else the state's JSON). Inside a
    lookahead branch it still asks (a model's pick is the natural policy).

    >>> router = LLMRouter("local:smollm2-135m", {"math": "arithmetic", "writer": "prose"})  # doctest: +SKIP
    >>> graph.route("triage", router, ["math", "writer", END])  # doctest: +SKIP
    """

    def __init__(self, model: str | LLM = DEFAULT_MODEL, descriptions: Mapping[str, str] | None = None, *,
                 describe: Callable[[BaseModel], str] | None = None, question: str = ROUTE, reason: bool = True,
                 name: str = "llm") -> None:
        self.model, self.descriptions, self.describe = model, dict(descriptions or {}), describe
        self.question, self.reason, self.name = question, reason, name

    async def decide(self, state: BaseModel, ctx: RouteContext) -> Decision:
        """One constrained model call: the target it names, and its reason."""
        shown = {FINISH if t == END else t: t for t in ctx.targets}
        options = {label: self._description(target, ctx) for label, target in shown.items()}
        context = self.describe(state) if self.describe is not None else describe_state(state)
        picked, why = await choose_option(self.model, options, context, question=self.question,
                                          reason=self.reason, name=f"router {self.name!r}")
        return Decision(shown[picked], {}, why)

    def _description(self, target: str, ctx: RouteContext) -> str:
        if target in self.descriptions:
            return self.descriptions[target]
        if target == END:
            return "the task is done"
        node = ctx.app.graph.nodes.get(target)
        return str(getattr(node.fn, "description", "") or "") if node is not None else ""
