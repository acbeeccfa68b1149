"""What every OpenAI-shaped endpoint of `baobab serve` shares: the API key (401), the body limit (413), a JSON body
validated into a 400 that names the field, the model's names (404 for another), admission (503 at capacity), and
a reply, whole or streamed, that the client's disconnect cancels."""

import json
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from baobab.engine.llm import LLM, parses_as_json
from baobab.engine.types import ToolSpec
from baobab.errors import BaobabError


def _json_text(value: str) -> str:
    if not parses_as_json(value):  # the local engine shows earlier calls to the model as JSON
        raise ValueError("must be a string of JSON, as the model wrote the call's arguments")
    return value


JsonText = Annotated[str, AfterValidator(_json_text)]  # a tool call's arguments, as a client sends them back

RETRY_AFTER = 1  # seconds a client turned away at capacity is told to wait
M = TypeVar("M", bound=BaseModel)
Reply = Callable[[], Awaitable[Response | AsyncGenerator[str, None]]]
"""Makes an admitted request's answer: a whole response, or the events of a stream."""


class HttpError(BaobabError):
    """A request answered with an OpenAI-shaped error: `param` names the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = status, message, param, kind, code


class Body(BaseModel):
    """A request body: the model it asks for (any, when empty); fields no endpoint knows are refused."""

    model_config = ConfigDict(extra="forbid")

    model: str = ""


B = TypeVar("B", bound=Body)


class Served:
    """The model behind the endpoints, the names it answers to (its own first), its key, capacity and body limit.

    >>> served = Served(load_llm("scripted:hi"), ["scripted"], api_key="k", max_pending=4, max_body=2**20)
    """

    def __init__(self, llm: LLM, names: Sequence[str], *, api_key: str | None, max_pending: int,
                 max_body: int) -> None:
        self.llm, self.names, self.api_key, self.max_body = llm, list(names), api_key, max_body
        self.capacity = Capacity(max_pending)

    @property
    def name(self) -> str:
        """The name every answer is given, whichever of `names` was asked."""
        return self.names[0]

    def check_key(self, http: HttpRequest) -> None:
        """401 unless the request carries the key (when there is one)."""
        if self.api_key is None:
            return
        given = http.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(given.encode(), self.api_key.encode()):
            raise HttpError(401, "missing or wrong API key (send Authorization: Bearer KEY)",
                            kind="authentication_error")

    async def answer(self, http: HttpRequest, body_type: type[B], reply: Callable[[B], Reply]) -> Response:
        """One generation request: its body read and validated as `body_type`, its model checked, `reply(body)`
        made (which may refuse it with an HttpError), a place taken, then the reply sent under disconnect watch.

        >>> await served.answer(http, ChatBody, lambda body: make_reply(body))  # doctest: +SKIP
        """
        try:
            self.check_key(http)
            body = validated(body_type, read_json(await read_body(http, self.max_body)))
            if body.model and body.model not in self.names:
                raise HttpError(404, f"The model '{body.model}' does not exist", "model", code="model_not_found")
            made = reply(body)
            self.capacity.take()
        except HttpError as exc:
            return error_response(exc)
        return Held(made, self.capacity)


class Capacity:
    """How many completions are in progress, and the most allowed."""

    def __init__(self, limit: int) -> None:
        self.limit, self.busy = limit, 0

    def take(self) -> None:
        """One place more, or 503 when all are taken."""
        if self.busy >= self.limit:
            raise HttpError(503, f"the server is at capacity ({self.limit} requests in progress); retry after "
                                 f"{RETRY_AFTER} s", kind="server_overloaded")
        self.busy += 1

    def give(self) -> None:
        """A place back."""
        self.busy -= 1


class Held(StreamingResponse):
    """The answer to a completion request: `reply()` makes it (a whole response, or the events of a stream), and
    Starlette listens for the client's disconnect meanwhile, as it does for every stream, and cancels it then:
    streamed or not, a client that leaves stops its generation at the engine's next step. However it ends, the
    request's place in `capacity` is given back at once and a stream's events are closed (a client gone before
    the first byte never started them, so a `finally` inside them would never run)."""

    def __init__(self, reply: Reply, capacity: Capacity) -> None:
        super().__init__(())  # no content of its own: `stream_response` sends the reply's
        self.reply, self.capacity = reply, capacity
        self.events: AsyncGenerator[str, None] | None = None

    async def stream_response(self, send: Send) -> None:
        reply = await self.reply()
        if isinstance(reply, Response):
            await send({"type": "http.response.start", "status": reply.status_code, "headers": reply.raw_headers})
            await send({"type": "http.response.body", "body": reply.body})
            return
        self.events = reply
        await StreamingResponse(reply, media_type="text/event-stream").stream_response(send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.capacity.give()
            if self.events is not None:
                await self.events.aclose()  # a stream left midway stops generating now, not when collected


async def read_body(http: HttpRequest, limit: int) -> bytes:
    """The request's body, or 413 once it is known to exceed `limit` bytes: from Content-Length before reading
    anything, else as soon as the bytes read pass it (a chunked body declares no length)."""
    declared = http.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in http.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> HttpError:
    return HttpError(413, f"the body is larger than this server's limit of {limit:,} bytes (baobab serve "
                          f"--max-body)", code="request_too_large")


def read_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying why it is not one.

    >>> read_json(b"[1]")  # doctest: +SKIP
    HttpError: the body must be a JSON object
    """
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"the body is not valid JSON: {exc}") from exc
    except RecursionError:  # "[[[[..." deeper than Python's stack
        raise HttpError(400, "the body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise HttpError(400, "the body must be a JSON object")
    return data


def validated(model: type[M], data: Any, where: str = "") -> M:
    """`data` as a `model`, or a 400 naming the first field at fault (its path, under `where`).

    >>> validated(Request, {"prompt": "x", "max_tokens": 0})  # doctest: +SKIP
    HttpError: max_tokens: Input should be greater than or equal to 1
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in (where, *first["loc"]) if p != "") or "request"
        raise HttpError(400, f"{param}: {first['msg']}", param) from exc


def offered_tool(name: str, tools: list[ToolSpec]) -> str:
    """`name` if it names one of `tools` (as a forced tool_choice must), else a 400 on tool_choice.

    >>> offered_tool("add", [ToolSpec(name="add")])
    'add'
    """
    if name not in {t.name for t in tools}:
        offered = ", ".join(repr(t.name) for t in tools) or "none"
        raise HttpError(400, f"tool_choice: {name!r} names no tool in tools (offered: {offered})", "tool_choice")
    return name


def error_response(exc: HttpError) -> JSONResponse:
    """The OpenAI-shaped answer to `exc`: {"error": {message, type, param, code}}, Retry-After with a 503."""
    retry = {"Retry-After": str(RETRY_AFTER)} if exc.status == 503 else None
    return JSONResponse({"error": {"message": exc.message, "type": exc.kind, "param": exc.param, "code": exc.code}},
                        status_code=exc.status, headers=retry)
