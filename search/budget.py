"""Search budgets: the engine's limits (model calls, tokens, dollars, seconds) plus expansions."""

from pydantic import Field

from baobab.engine.budget import Budget, Spend
from baobab.errors import BaobabError


class SearchBudget(Budget):
    """Limits of one search; None means no limit. An expansion proposes and steps one node's children.

    >>> SearchBudget(max_expansions=50, max_model_calls=100).max_seconds is None
    True
    """

    max_expansions: int | None = Field(default=None, ge=1)  # nodes whose children were proposed and stepped

    @property
    def bounded(self) -> bool:
        """Whether any limit is set."""
        return any(value is not None for value in self.model_dump().values())


class SearchStopped(BaobabError):
    """The search ends early: `reason` is "target" or the limit reached ("max_expansions", "max_model_calls"...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def limit_reached(spend: Spend) -> str:
    """Which of the spend's model limits is reached (after it raised BudgetExceeded): "budget" for a parent's.

    >>> from baobab.engine.budget import Spend
    >>> from baobab.engine.types import Usage
    >>> spend = Spend(SearchBudget(max_model_calls=1)); spend.charge(Usage())
    >>> limit_reached(spend)
    'max_model_calls'
    """
    b, usage = spend.budget, spend.usage
    for name, limit, spent in (("max_model_calls", b.max_model_calls, spend.calls),
                               ("max_tokens", b.max_tokens, usage.prompt_tokens + usage.completion_tokens),
                               ("max_cost", b.max_cost, usage.cost)):
        if limit is not None and spent >= limit:
            return name
    return "budget"
