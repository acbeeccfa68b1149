"""One HTTP app serving a workflow or graph to other agents over A2A and AG-UI (`baobab serve-agent`).

>>> target = workflow_target("examples/team.yaml", checkpointer=Store())  # doctest: +SKIP
>>> uvicorn.run(create_agent_app(target, url="http://127.0.0.1:8000/"))  # doctest: +SKIP
"""

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from baobab.serve.a2a_server import a2a_routes
from baobab.serve.agui import agui_routes
from baobab.serve.target import Target

PROTOCOLS = ("a2a", "agui")


def create_agent_app(target: Target, *, url: str, protocols: Collection[str] = PROTOCOLS) -> Starlette:
    """`target` over A2A (Agent Card at /.well-known/agent-card.json, JSON-RPC at `url`) and AG-UI (POST /agui);
    the target opens when the app starts and closes when it stops.

    >>> create_agent_app(target, url="http://127.0.0.1:8000/", protocols=["agui"])  # doctest: +SKIP
    """
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown or not protocols:
        raise ValueError(f"protocols: expected some of {list(PROTOCOLS)}, got {sorted(protocols)}")
    routes: list[BaseRoute] = []
    handler = None
    if "a2a" in protocols:
        a2a, handler = a2a_routes(target, url)
        routes += a2a
    if "agui" in protocols:
        routes += agui_routes(target)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await target.open()
        try:
            yield
        finally:
            if handler is not None:
                await handler.aclose()  # ends the A2A tasks still running
            await target.aclose()

    return Starlette(routes=routes, lifespan=lifespan)
