"""Hard caps on what a run, an agent or a search may spend: model calls, tokens, dollars, seconds.

A `Budget` is the limits; a `Spend` counts against one (and, nested, against its parent's too);
`BudgetedLLM` charges every request to a spend and refuses the next request once a cap is reached.
"""

import time
from collections.abc import AsyncIterator
from contextvars import ContextVar

from pydantic import BaseModel, ConfigDict, Field

from baobab.engine.llm import LLM
from baobab.engine.types import Chunk, Completion, Request, Usage
from baobab.errors import BaobabError


class BudgetExceeded(BaobabError, RuntimeError):
    """A cap was reached: the run stops cleanly (what it has done so far is kept)."""


class Budget(BaseModel):
    """Limits; None means no limit.

    >>> Budget(max_model_calls=20, max_seconds=60).max_tokens is None
    True
    """

    model_config = ConfigDict(extra="forbid")

    max_model_calls: int | None = Field(default=None, ge=1)  # calls to any model
    max_tokens: int | None = Field(default=None, ge=1)  # prompt + completion tokens
    max_cost: float | None = Field(default=None, gt=0)  # US dollars (remote models with known prices)
    max_seconds: float | None = Field(default=None, gt=0)  # wall time since the spend began


class Spend:
    """What has been spent against `budget` (named `name` in errors); a child also charges its parent.

    >>> spend = Spend(Budget(max_model_calls=1), "run")
    >>> spend.charge(Usage(prompt_tokens=10)); spend.check()
    Traceback (most recent call last):
    baobab.engine.budget.BudgetExceeded: run: budget of 1 model calls reached (1 made)
    """

    def __init__(self, budget: Budget | None = None, name: str = "run", parent: "Spend | None" = None) -> None:
        self.budget, self.name, self.parent = budget or Budget(), name, parent
        self.calls, self.usage, self.started = 0, Usage(), time.monotonic()

    def child(self, budget: Budget | None, name: str) -> "Spend":
        """A spend for a part of this one (an agent of a run): both are charged, both are checked."""
        return Spend(budget, name, self)

    def charge(self, usage: Usage) -> None:
        """Count one model call."""
        self.calls += 1
        self.usage = self.usage + usage
        if self.parent is not None:
            self.parent.charge(usage)

    def check(self) -> None:
        """Raise BudgetExceeded if any cap (here or in a parent) is reached."""
        b, tokens = self.budget, self.usage.prompt_tokens + self.usage.completion_tokens
        elapsed = time.monotonic() - self.started
        for limit, spent, what in ((b.max_model_calls, self.calls, "model calls"), (b.max_tokens, tokens, "tokens"),
                                   (b.max_cost, self.usage.cost, "dollars"), (b.max_seconds, elapsed, "seconds")):
            if limit is not None and spent >= limit:
                shown = f"{spent:.2f}" if isinstance(spent, float) else str(spent)
                raise BudgetExceeded(f"{self.name}: budget of {limit} {what} reached ({shown} "
                                     f"{'made' if what == 'model calls' else 'spent'})")
        if self.parent is not None:
            self.parent.check()


current_spend: ContextVar["Spend | None"] = ContextVar("baobab_current_spend", default=None)
"""The spend that model calls made in this context count against, if any: a run's, or a search expansion's
(so the agents of a graph that a search forks are charged to the search)."""


class BudgetedLLM(LLM):
    """`llm` with every request charged to `spend`; a request once a cap is reached raises BudgetExceeded.

    >>> llm = BudgetedLLM(load_llm("scripted:hi"), Spend(Budget(max_model_calls=2)))  # doctest: +SKIP
    """

    def __init__(self, llm: LLM, spend: Spend) -> None:
        self.llm, self.spend, self.name = llm, spend, llm.name

    async def _complete(self, request: Request) -> Completion:
        self.spend.check()
        completion = await self.llm.complete(request)
        self.spend.charge(completion.usage)
        return completion

    async def _stream(self, request: Request) -> AsyncIterator[Chunk]:
        self.spend.check()
        usage = Usage()
        async for chunk in self.llm.stream(request):
            usage = chunk.usage or usage
            yield chunk
        self.spend.charge(usage)
