"""Graph definition: nodes, edges, joins and routers over a pydantic state; validated by compile()."""

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from baobab.graphs.checkpoint import Checkpointer
from baobab.graphs.errors import GraphError
from baobab.graphs.export import to_dot, to_mermaid
from baobab.graphs.fingerprint import Migrate
from baobab.graphs.node import END, START, NodeSpec, Retry, Send, concurrency_limit
from baobab.graphs.routing import Decision, RouteContext, Router, router_name
from baobab.graphs.runtime import App
from baobab.graphs.state import StateSchema
from baobab.graphs.subgraph import subgraph_node
from baobab.store import Store

if TYPE_CHECKING:  # imported where a graph's structure is first built: 0.2 s that `import baobab.agents` spares
    import networkx as nx


@dataclass(frozen=True)
class Route:
    """A router on `source`: a function of the state, or a `Router`; it picks targets or `Send`s to them."""

    source: str
    router: "Callable[[BaseModel], Any] | Router"
    targets: tuple[str, ...]

    async def choose(self, state: BaseModel, ctx: RouteContext) -> tuple[list[str | Send], Decision]:
        """The router's decision for `state`, its choice checked against the declared targets."""
        if isinstance(self.router, Router):
            decision = await self.router.decide(state, ctx)
        else:
            choice = self.router(state)
            decision = Decision(await choice if inspect.isawaitable(choice) else choice)
        choice = decision.choice
        choices = [choice] if isinstance(choice, str | Send) else list(choice) if choice is not None else []
        for item in choices:
            name = item.node if isinstance(item, Send) else item
            if name not in self.targets or (isinstance(item, Send) and name == END):
                raise GraphError(f"router {router_name(self.router)} of node {self.source!r} returned {item!r}; "
                                 f"expected one of {list(self.targets)} (or Send(node, arg) to one of them)")
        return choices, decision


class Graph:
    """A graph of nodes over a pydantic `State`; `compile()` checks it and makes a runnable `App`.

    >>> class S(BaseModel):
    ...     n: int = 0
    >>> g = Graph(S)
    >>> g.node("inc", lambda s: {"n": s.n + 1}).edge(START, "inc").edge("inc", END)  # doctest: +ELLIPSIS
    <...Graph...>
    >>> g.compile().run({"n": 1}).state.n
    2

    `migrate(old_dict, old_fingerprint) -> new_dict` converts the stored states and updates of threads written by
    an earlier version of `state` that it can no longer read (see `baobab.graphs.fingerprint`).
    """

    def __init__(self, state: type[BaseModel], *, name: str | None = None, migrate: Migrate | None = None) -> None:
        self.schema = StateSchema(state, migrate)
        self.name = name or state.__name__
        self.nodes: dict[str, NodeSpec] = {}
        self.edges: list[tuple[tuple[str, ...], str]] = []
        self.routes: list[Route] = []

    def node(self, name: str | Callable[..., Any], fn: Callable[..., Any] | App | None = None, *,
             retry: Retry | None = None, writes: Sequence[str] = (), threaded: bool = False,
             on_error: str | None = None, max_concurrency: int | None = None) -> "Graph":
        """Add a node: `fn(state)` or `fn(state, ctx)`, sync or async, returning an update dict or None.

        `fn` may be a compiled graph (a subgraph). `retry` names the exceptions to retry on; `writes`
        declares the fields the node sets, so compile() can catch parallel writes to a plain field;
        `threaded` runs a sync node in a thread even when it runs alone (it blocks on I/O). `on_error`
        names a node that runs next step when this one fails (after its retries) instead of the run
        failing; it reads what failed in `ctx.failure`. `max_concurrency` caps this node's tasks running
        at once (a Send fan-out beyond it waits its turn).

        >>> g.node("double", lambda s: {"n": s.n * 2})  # doctest: +SKIP
        """
        if callable(name) and fn is None:
            fn, name = name, str(getattr(name, "__name__", ""))
        if not isinstance(name, str) or not name:
            raise GraphError(f"a node needs a non-empty string name, got {name!r}")
        if name in (START, END):
            raise GraphError(f"{name!r} is reserved for the graph's start and end")
        if name in self.nodes:
            raise GraphError(f"node {name!r} is already in the graph")
        if fn is None or not (isinstance(fn, App) or callable(fn)):
            raise GraphError(f"node {name!r} needs a callable or a compiled graph, got {fn!r}")
        unknown = [w for w in writes if w not in self.schema.fields]
        if unknown:
            raise GraphError(f"node {name!r} declares writes to {unknown}, which {self.schema.model.__name__} "
                             f"does not have (fields: {self.schema.fields})")
        concurrency_limit(max_concurrency, f"node {name!r}: max_concurrency")
        call = subgraph_node(fn) if isinstance(fn, App) else fn
        self.nodes[name] = NodeSpec(name, call, retry, frozenset(writes), threaded, on_error, max_concurrency)
        return self

    def edge(self, source: str | Sequence[str], target: str) -> "Graph":
        """Run `target` after `source`; with several sources, once all of them have run (a join).

        >>> g.edge(START, "a").edge(["b", "c"], "d")  # doctest: +SKIP
        """
        sources = (source,) if isinstance(source, str) else tuple(source)
        if not sources:
            raise GraphError(f"edge to {target!r} has no source")
        self.edges.append((sources, target))
        return self

    def route(self, source: str, router: "Callable[[BaseModel], Any] | Router", targets: Sequence[str]) -> "Graph":
        """After `source`, call `router(state)`: it returns a target, a list of them, or `Send`s.

        `router` may also be a `Router` (`BanditRouter`, `LookaheadRouter`, `baobab.agents.LLMRouter`...).

        >>> g.route("check", lambda s: "fix" if s.errors else END, ["fix", END])  # doctest: +SKIP
        """
        self.routes.append(Route(source, router, tuple(targets)))
        return self

    def structure(self) -> "nx.DiGraph[Any]":
        """The graph as a networkx DiGraph; edges carry `kind`: edge, join, route or error (to a handler)."""
        import networkx as nx

        g: nx.DiGraph[Any] = nx.DiGraph()
        g.add_node(START)
        g.add_nodes_from(self.nodes)
        g.add_node(END)
        for sources, target in self.edges:
            for source in sources:
                g.add_edge(source, target, kind="edge" if len(sources) == 1 else "join")
        for route in self.routes:
            for target in route.targets:
                if not g.has_edge(route.source, target):
                    g.add_edge(route.source, target, kind="route")
        for name, spec in self.nodes.items():
            if spec.on_error is not None and spec.on_error in self.nodes and not g.has_edge(name, spec.on_error):
                g.add_edge(name, spec.on_error, kind="error")
        return g

    def validate(self) -> None:
        """Raise GraphError naming the node if the graph cannot run as drawn."""
        known = set(self.nodes) | {START, END}
        for sources, target in self.edges:
            for name in (*sources, target):
                if name not in known:
                    raise GraphError(f"edge {list(sources)} -> {target!r} names unknown node {name!r}; "
                                     f"nodes: {sorted(self.nodes)}")
            if END in sources or target == START:
                raise GraphError(f"edge {list(sources)} -> {target!r}: nothing leaves END or enters START")
        for route in self.routes:
            if route.source not in known or route.source == END:
                raise GraphError(f"router {router_name(route.router)} is on unknown node {route.source!r}")
            if not route.targets:
                raise GraphError(f"router {router_name(route.router)} on {route.source!r} has no targets")
            for target in route.targets:
                if target not in known or target == START:
                    raise GraphError(f"router {router_name(route.router)} on {route.source!r} names unknown target "
                                     f"{target!r}; nodes: {sorted(self.nodes)}")
        for name, spec in self.nodes.items():
            if spec.on_error is not None and spec.on_error not in self.nodes:
                raise GraphError(f"node {name!r} has on_error={spec.on_error!r}, which is not a node of the graph; "
                                 f"nodes: {sorted(self.nodes)}")
        import networkx as nx

        g = self.structure()
        if g.out_degree(START) == 0:
            raise GraphError("nothing follows START: add graph.edge(START, 'first_node')")
        unreachable = sorted(set(self.nodes) - nx.descendants(g, START))
        if unreachable:
            raise GraphError(f"nodes {unreachable} cannot be reached from START")
        dead_ends = sorted(set(self.nodes) - nx.ancestors(g, END))
        if dead_ends:
            raise GraphError(f"nodes {dead_ends} have no path to END (add an edge to END)")
        self._check_parallel_writes(g)

    def compile(self, checkpointer: Checkpointer | Store | str | None = None, *,
                interrupt_before: Sequence[str] = (), interrupt_after: Sequence[str] = (),
                recursion_limit: int = 100, max_concurrency: int | None = None) -> App:
        """Validate the graph and make an `App`; with a checkpointer (a URL, Store or Checkpointer)
        every super-step is committed and runs can be resumed, forked and read back. `max_concurrency`
        caps the tasks of a step running at once (the others wait; a run may set its own).

        >>> app = g.compile(checkpointer="sqlite:///runs.db", interrupt_before=["publish"])  # doctest: +SKIP
        """
        self.validate()
        for name in (*interrupt_before, *interrupt_after):
            if name not in self.nodes:
                raise GraphError(f"interrupt on unknown node {name!r}; nodes: {sorted(self.nodes)}")
        if recursion_limit < 1:
            raise GraphError(f"recursion_limit must be at least 1, got {recursion_limit}")
        return App(self, checkpointer, interrupt_before=interrupt_before, interrupt_after=interrupt_after,
                   recursion_limit=recursion_limit, max_concurrency=max_concurrency)

    def to_mermaid(self) -> str:
        """Mermaid flowchart text of the graph."""
        return to_mermaid(self.structure())

    def to_dot(self) -> str:
        """Graphviz DOT text of the graph."""
        return to_dot(self.structure(), self.name)

    def _check_parallel_writes(self, g: "nx.DiGraph[Any]") -> None:
        """Nodes started together (plain edges from one source, and its routes' targets) that declare
        writes to one field without a reducer would conflict; a router's alternatives do not."""
        for source in g.nodes:
            together = [t for t in g.successors(source) if g.edges[source, t]["kind"] == "edge" and t in self.nodes]
            routed = [t for t in g.successors(source) if g.edges[source, t]["kind"] == "route" and t in self.nodes]
            pairs = [(a, b) for i, a in enumerate(together) for b in together[i + 1:] + routed]
            for a, b in pairs:
                both = (self.nodes[a].writes & self.nodes[b].writes) - set(self.schema.reducers)
                if both:
                    raise GraphError(f"nodes {a!r} and {b!r} can run in parallel after {source!r} and "
                                     f"both write {sorted(both)}, which have no reducer")
