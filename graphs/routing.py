"""Routers that need more than the state: the context they decide in, and the decision they report.

A plain function `router(state) -> target` is enough for if/else routing. A `Router` subclass also
sees the targets, the run (thread, step) and the app, may explore (a lookahead runs branches of the
graph), learns from how runs end (`finish`), and reports candidates, scores and a reason: every
decision becomes a `Routed` event of `stream()` and a `route` span the trace viewer shows.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from baobab.graphs.node import Send

if TYPE_CHECKING:
    from baobab.graphs.branches import Branch
    from baobab.graphs.runtime import App


@dataclass(frozen=True)
class Decision:
    """What a router chose (`choice`: a target, several, or `Send`s), among which `scores`, and why.

    `adopt`: a lookahead branch of the chosen target that the run takes over instead of running the
    target again (used when the target is the step's only next task).

    >>> Decision("fix", {"fix": 0.9, "ship": 0.2}, "tests fail").choice
    'fix'
    """

    choice: "str | Send | list[str | Send] | None"
    scores: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    adopt: "Branch | None" = None


@dataclass
class RouteContext:
    """Where a routing decision is made: the router's node and targets, and the run it is part of.

    `depth` counts lookahead branches around this run: 0 in a real run, 1 inside a branch a lookahead
    router is exploring (routers there should decide cheaply and learn nothing). `explore(target, steps)`
    runs a branch of the graph from this decision's state (see `LookaheadRouter`).
    """

    source: str
    targets: tuple[str, ...]
    thread: str
    step: int
    app: "App"
    depth: int = 0
    explore: "Callable[[str, int], Awaitable[Branch]] | None" = None


class Router:
    """Base of routers with a context: override `decide`; `finish` hears how each run ended.

    >>> class Always(Router):
    ...     async def decide(self, state, ctx):
    ...         return Decision(ctx.targets[0])
    """

    name = "router"

    async def decide(self, state: BaseModel, ctx: RouteContext) -> Decision:
        """The decision for `state`; must name targets of `ctx.targets` only."""
        raise NotImplementedError

    async def finish(self, state: BaseModel, thread: str) -> None:
        """A run this router decided in reached END with `state` (learning routers take their reward here)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def router_name(router: Any) -> str:
    """A router's name for events and errors: its `name`, or the function's name."""
    return str(getattr(router, "name", None) or getattr(router, "__name__", None) or repr(router))
