"""`baobab ui`: the trace viewer as a local Starlette app over one store (JSON API + static page).

>>> import uvicorn  # doctest: +SKIP
>>> uvicorn.run(create_app(Store("sqlite:///.baobab/baobab.db")), port=8765)  # doctest: +SKIP
"""

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from baobab.errors import require_extra

try:
    from starlette.applications import Starlette
    from starlette.datastructures import Headers
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
    from starlette.types import ASGIApp, Receive, Scope, Send
    from starlette.websockets import WebSocketClose
except ModuleNotFoundError:  # name the extra that brings the server
    require_extra("ui", "the trace viewer's server", "starlette", "uvicorn")
    raise

from baobab.store import Store
from baobab.ui import data
from baobab.ui.memory import memory_available, memory_history, memory_view, open_memory

Handler = Callable[[Request], Awaitable[Response]]
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def create_app(store: Store, apps: data.Apps | None = None, memory_url: str | None = None,
               allow_hosts: Sequence[str] = ()) -> Starlette:
    """The viewer's web app over `store`; `apps` (compiled graphs by name) make states exact and forks
    validated; `memory_url` is the memory store the memory view reads (default: `store`'s URL). Requests must
    name a loopback host (localhost, 127.0.0.1, [::1], any port) or one of `allow_hosts` in their Host header.

    >>> create_app(Store("sqlite:///runs.db"), allow_hosts=["viewer.lan"])  # doctest: +SKIP
    """

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
        return FileResponse(data.STATIC / "index.html")

    return Starlette(middleware=[Middleware(HostCheck, hosts=[*LOOPBACK_HOSTS, *allow_hosts])], routes=[
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
        Mount("/static", StaticFiles(directory=data.STATIC), name="static"),
    ])


class HostCheck:
    """Refuses (400) a request whose Host header names none of `hosts`: a page on another site can point its
    own name at 127.0.0.1 (DNS rebinding) and then read and fork runs here as a same-origin page.

    >>> app = HostCheck(create_app(store), hosts=["localhost"])  # doctest: +SKIP
    """

    def __init__(self, app: ASGIApp, hosts: Sequence[str]) -> None:
        self.app = app
        self.hosts = [host_name(host) for host in hosts]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = Headers(scope=scope).get("host", "")
            if host_name(host) not in self.hosts:
                if scope["type"] == "websocket":
                    await WebSocketClose(code=1008)(scope, receive, send)  # 1008: policy violation
                    return
                refusal = f"host {host!r} is not served here (allowed: {', '.join(self.hosts)}; `baobab ui " \
                          f"--allow-host NAME` adds one)"
                await JSONResponse({"error": refusal}, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def host_name(host: str) -> str:
    """`host` (a Host header, or a name to allow) as the lower-case name without its port, IPv6 in brackets.

    >>> host_name("LocalHost:8765"), host_name("[::1]:80"), host_name("::1"), host_name("127.0.0.1")
    ('localhost', '[::1]', '[::1]', '127.0.0.1')
    """
    host = host.strip().lower()
    if host.startswith("["):
        return host[:host.find("]") + 1]  # no "]": "" (matches nothing)
    if host.count(":") > 1:  # a bare IPv6 address, as `--host ::1` gives it
        return f"[{host}]"
    return host.partition(":")[0]
