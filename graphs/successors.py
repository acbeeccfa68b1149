"""What runs after a super-step: edges, joins and routers, evaluated as LangGraph does.

A plain edge or a router's plain target triggers its node once however many tasks chose it; a `Send`
always adds a task. A join fires once all its sources have run (in this step or earlier ones); its sources
that ran in the step that completed it count for that round only. A router runs once per task of its
node, deterministically in task order, on that task's view: the state before the step with the task's
own writes applied (so a map step that routes each item onward routes every item, and a router never
sees what parallel tasks wrote).
"""

import functools
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from baobab.graphs.events import Routed
from baobab.graphs.node import END, Send
from baobab.graphs.progress import Run, Task
from baobab.graphs.routing import RouteContext, router_name

if TYPE_CHECKING:
    from baobab.graphs.branches import Branch
    from baobab.graphs.graph import Graph, Route
    from baobab.graphs.runtime import App

Explore = Callable[[Run, BaseModel, int, str, int], Awaitable["Branch"]]


class Successors:
    """The graph's edges, joins and routers, indexed by source node.

    >>> Successors(graph).routes["check"]  # doctest: +SKIP
    [Route(source='check', ...)]
    """

    def __init__(self, graph: "Graph") -> None:
        self.edges: dict[str, list[str]] = {}
        self.joins_from: dict[str, list[str]] = {}  # source -> the joins it is a source of, by key
        self.joins: dict[str, tuple[str, frozenset[str]]] = {}  # key -> (target, sources)
        joins = [(sources, target) for sources, target in graph.edges if len(sources) > 1]
        into = Counter(target for _, target in joins)
        for sources, target in graph.edges:
            if len(sources) == 1:
                self.edges.setdefault(sources[0], []).append(target)
        for sources, target in joins:  # each join waits on its own: a target's only join is keyed by the target
            key = target if into[target] == 1 else f"{target}<-{'+'.join(sorted(sources))}"
            self.joins[key] = (target, frozenset(sources))
            for source in sources:
                self.joins_from.setdefault(source, []).append(key)
        self.routes: dict[str, list[Route]] = {}
        for route in graph.routes:
            self.routes.setdefault(route.source, []).append(route)

    async def next(self, app: "App", run: Run, step: int, ran: list[tuple[int, str, BaseModel]],
                   joins: dict[str, list[str]], explore: Explore) -> tuple[list[Task], dict[str, list[str]]]:
        """The tasks that follow the tasks `ran` (task index, node, its view) at `step`; the joins still waiting."""
        tasks: list[Task] = []
        queued: set[str] = set()
        waiting = {key: set(sources) for key, sources in joins.items()}
        fired: set[str] = set()  # joins complete this step: their other sources this step are part of it

        def add(node: str) -> None:
            if node != END and node not in queued:
                queued.add(node)
                tasks.append(Task(node))

        by_node: dict[str, list[tuple[int, BaseModel]]] = {}
        for task, node, view in ran:
            by_node.setdefault(node, []).append((task, view))
        for node, node_tasks in by_node.items():
            for target in self.edges.get(node, ()):
                add(target)
            for key in self.joins_from.get(node, ()):
                if key in fired:
                    continue
                seen = waiting.setdefault(key, set())
                seen.add(node)
                target, sources = self.joins[key]
                if seen >= sources:
                    del waiting[key]
                    fired.add(key)
                    add(target)
            for task, view in node_tasks:
                for route in self.routes.get(node, ()):
                    ctx = RouteContext(node, route.targets, run.thread, step, app, run.depth,
                                       functools.partial(explore, run, view, step))
                    choices, decision = await route.choose(view, ctx)
                    run.adopt = decision.adopt if decision.adopt is not None and run.depth == 0 else run.adopt
                    run.routed.append(Routed(step, node, router_name(route.router), route.targets, tuple(
                        c.node if isinstance(c, Send) else c for c in choices), decision.scores, decision.reason,
                        task))
                    for choice in choices:
                        if isinstance(choice, Send):
                            tasks.append(Task(choice.node, to_jsonable_python(choice.arg)))
                        else:
                            add(choice)
        still = {key: sorted(seen) for key, seen in waiting.items()}
        if run.adopt is not None and ([t.dump() for t in tasks] != [[run.adopt.target]] or still != joins):
            run.adopt = None  # other tasks run next step too: the branch no longer tells what happens
        return tasks, still


def report_routes(run: Run) -> Iterator[Routed]:
    """The run's decisions made since the last report, as events and as `route` spans."""
    for routed in run.routed:
        if run.span is not None:
            run.span.child("route", routed.source, {
                "router": routed.router, "step": routed.step, "task": routed.task, "targets": list(routed.targets),
                "choice": list(routed.choice), "scores": routed.scores, "reason": routed.reason}).end()
        yield routed
    run.routed.clear()
