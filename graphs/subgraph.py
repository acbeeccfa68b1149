"""A compiled graph run as a node of another: on the fields the two states share, resumed with its parent."""

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel

from baobab.graphs.errors import NodeInterrupt
from baobab.graphs.events import result_of
from baobab.graphs.node import RunContext
from baobab.graphs.tasks import SubgraphUpdates
from baobab.graphs.threads import load, start

if TYPE_CHECKING:
    from baobab.graphs.runtime import App


def subgraph_node(graph: "App") -> Callable[[BaseModel, RunContext], Awaitable[SubgraphUpdates]]:
    """The node function that runs `graph` inside a parent graph (what `Graph.node(name, app)` adds).

    >>> parent.node("research", research_graph.compile())  # doctest: +SKIP
    """

    async def node(state: BaseModel, ctx: RunContext) -> SubgraphUpdates:
        return await run_subgraph(graph, state, ctx)

    return node


async def run_subgraph(graph: "App", state: BaseModel, ctx: RunContext) -> SubgraphUpdates:
    """Run `graph` as the node `ctx.node` of a parent graph whose state is `state`.

    Its thread is named after the parent's task, so a resumed parent resumes it, and its own writes
    to shared fields become the parent's updates (a parent's list is not appended twice).
    """
    parent_fields = type(state).model_fields
    shared = [f for f in graph.schema.fields if f in parent_fields]
    child = f"{ctx.thread}/{ctx.node}:{ctx.step}.{ctx.task}"
    cp = graph.checkpointer or ctx.checkpointer
    app = graph if cp is graph.checkpointer else graph.with_checkpointer(cp)
    if cp is not None and cp.thread(child) is not None:
        run = load(app, child)
        run.resumed, run.resume_value = ctx.resumed, ctx.resume
    else:
        run = await start(app, {f: getattr(state, f) for f in shared}, child)
    result = await result_of(app.steps(run))
    if result.status == "interrupted":
        assert result.interrupt is not None
        raise NodeInterrupt(result.interrupt.payload)
    updates = (run.log if cp is None or run.thread_id is None else
               [graph.schema.load_update(w.data) for w in cp.thread_updates(run.thread_id)])
    return SubgraphUpdates({k: getattr(u, k) for k in u.model_fields_set if k in parent_fields} for u in updates)
