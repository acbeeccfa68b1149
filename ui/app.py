"""`baobab ui`: the trace viewer as a local Starlette app over one store (JSON API + static page).

>>> import uvicorn  # doctest: +SKIP
>>> uvicorn.run(create_app(Store("sqlite:///.baobab/baobab.db")), port=8765)  # doctest: +SKIP
"""

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from baobab.store import Store
from baobab.ui import data
from baobab.ui.memory import memory_available, memory_history, memory_view, open_memory

STATIC = Path(__file__).parent / "static"
Handler = Callable[[Request], Awaitable[Response]]


def create_app(store: Store, apps: data.Apps | None = None, memory_url: str | None = None) -> Starlette:
    """The viewer's web app over `store`; `apps` (compiled graphs by name) make states exact and forks
    validated; `memory_url` is the memory store the memory view reads (default: `store`'s URL)."""

    def api(fn: Callable[[Request], Any]) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return JSONResponse(fn(request))
            except data.NotFound as exc:
                return JSONResponse({"error": str(exc)}, status_code=404)
            except (ValueError, TypeError) as exc:  # a bad id or update: the client's mistake, said plainly
                return JSONResponse({"error": str(exc)}, status_code=400)
        return endpoint

    async def fork(request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("application/json"):
            # a page on another site cannot send this type without a CORS preflight, which this app never grants
            return JSONResponse({"error": "fork: send the body as application/json"}, status_code=415)
        try:
            body = json.loads(await request.body() or b"{}")
            checkpoint = int(body["checkpoint"])
            update = body.get("update") or None
            if update is not None and not isinstance(update, dict):
                raise ValueError("update: expected a JSON object of state fields")
            name = data.fork(store, checkpoint, update, body.get("thread") or None, apps)
        except (KeyError, ValueError, TypeError) as exc:
            return JSONResponse({"error": f"fork: {exc} (expected {{\"checkpoint\": ID, \"update\": {{...}}}})"},
                                status_code=400)
        except data.NotFound as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse({"thread": name})

    memories: dict[str, Any] = {}  # the Memory over `memory_url`, opened on first use

    def memory() -> Any:
        url = memory_url or store.url
        if url not in memories:
            memories[url] = open_memory(url)
        return memories[url]

    async def index(_: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    return Starlette(routes=[
        Route("/", index),
        Route("/api/runs", api(lambda r: {**data.runs(store), "memory": memory_available()})),
        Route("/api/thread/{name:path}", api(lambda r: data.thread(store, r.path_params["name"]))),
        Route("/api/state/{checkpoint:int}",
              api(lambda r: data.state(store, r.path_params["checkpoint"], apps))),
        Route("/api/search/{name:path}", api(lambda r: data.search(store, r.path_params["name"]))),
        Route("/api/trace/{run:path}", api(lambda r: data.trace(store, r.path_params["run"]))),
        Route("/api/memory", api(lambda r: memory_view(memory()))),
        Route("/api/memory/history/{note:path}", api(lambda r: memory_history(memory(), r.path_params["note"]))),
        Route("/api/fork", fork, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])
