"""An OpenAI-compatible HTTP server for any Baobab model: /v1/models, /v1/chat/completions, /v1/completions.

    baobab serve --model local:smollm2-135m --port 8000 [--api-key KEY] [--alias gpt-4o-mini]

Bad requests get OpenAI-shaped 400 errors naming the field; a missing or wrong key gets 401; a `model` that is
neither the served model's name nor one of its aliases gets 404 (model_not_found), as OpenAI answers it.
"""

import json
import secrets
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from baobab.engine.llm import LLM, RequestError
from baobab.engine.types import Chunk, Completion, Message, Request, Tool, ToolCall

API_KEY_ENV = "BAOBAB_API_KEY"
RETRY_AFTER = 1  # seconds a client turned away at capacity is told to wait


class _Wire(BaseModel):
    """Fields shared by both endpoints; known OpenAI fields Baobab does not use are accepted and ignored."""

    model_config = ConfigDict(extra="forbid")

    model: str = ""
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=64)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None


class _WireMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class _ChatBody(_Wire):
    messages: list[_WireMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None


class _CompletionBody(_Wire):
    prompt: str
    top_k: int = Field(default=0, ge=0)


class _HttpError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = status, message, param, kind, code


def create_app(llm: LLM, *, api_key: str | None = None, model_name: str | None = None,
               aliases: Sequence[str] = (), max_pending: int = 64) -> Starlette:
    """The ASGI app serving `llm`; with `api_key`, requests need `Authorization: Bearer KEY`.

    Requests name the model `model_name` (default: `llm.name`) or one of `aliases` (so a client written for
    another provider, e.g. asking for gpt-4o-mini, can be pointed here on purpose); another name gets 404, and a
    request without `model` is served too. /v1/models lists the name, then the aliases.

    At most `max_pending` completions are in progress (queued in the engine or generating); one more is
    answered 503 with Retry-After at once, so a client never waits on a queue without bound.

    >>> app = create_app(load_llm("scripted:hi"))  # doctest: +SKIP
    """
    name = model_name or llm.name
    names = list(dict.fromkeys([name, *aliases]))
    capacity = _Capacity(max_pending)

    def check_key(request: HttpRequest) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(given.encode(), api_key.encode()):
            raise _HttpError(401, "missing or wrong API key (send Authorization: Bearer KEY)",
                             kind="authentication_error")

    async def models(request: HttpRequest) -> Response:
        try:
            check_key(request)
        except _HttpError as exc:
            return _error(exc)
        return JSONResponse({"object": "list", "data": [
            {"id": n, "object": "model", "created": 0, "owned_by": "baobab"} for n in names]})

    async def chat(request: HttpRequest) -> Response:
        return await _serve(request, check_key, llm, names, capacity, chat=True)

    async def completions(request: HttpRequest) -> Response:
        return await _serve(request, check_key, llm, names, capacity, chat=False)

    return Starlette(routes=[
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
    ])


class _Capacity:
    """How many completions are in progress, and the most allowed."""

    def __init__(self, limit: int) -> None:
        self.limit, self.busy = limit, 0

    def take(self) -> None:
        if self.busy >= self.limit:
            raise _HttpError(503, f"the server is at capacity ({self.limit} requests in progress); retry after "
                                  f"{RETRY_AFTER} s", kind="server_overloaded")
        self.busy += 1

    def give(self) -> None:
        self.busy -= 1


async def _serve(http: HttpRequest, check_key: Any, llm: LLM, names: list[str], capacity: _Capacity, *,
                 chat: bool) -> Response:
    """One completion request, answered under the served model's name (`names[0]`) whichever of `names` it asked."""
    name = names[0]
    try:
        check_key(http)
        body = await _body(http, _ChatBody if chat else _CompletionBody)
        if body.model and body.model not in names:
            raise _HttpError(404, f"The model '{body.model}' does not exist", "model", code="model_not_found")
        request = _to_request(body)
        capacity.take()
    except _HttpError as exc:
        return _error(exc)
    created, ident = int(time.time()), f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    if body.stream:
        usage = bool((body.stream_options or {}).get("include_usage"))
        return _HeldStream(_sse(llm.stream(request), ident, created, name, chat, usage), capacity)
    try:
        completion = await llm.complete(request)
    except RequestError as exc:
        return _error(_HttpError(400, str(exc)))
    finally:
        capacity.give()
    return JSONResponse(_completion_json(completion, ident, created, name, chat))


class _HeldStream(StreamingResponse):
    """An event stream that gives its request's place back however it ends: a client gone before the first
    byte means the body never starts, so a `finally` inside it would never run."""

    def __init__(self, events: AsyncGenerator[str, None], capacity: _Capacity) -> None:
        super().__init__(events, media_type="text/event-stream")
        self.events, self.capacity = events, capacity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.capacity.give()
            await self.events.aclose()  # a stream left midway stops generating now, not when collected


async def _body(http: HttpRequest, model: type[_Wire]) -> Any:
    try:
        data = json.loads(await http.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _HttpError(400, f"the body is not valid JSON: {exc}") from exc
    except RecursionError:  # "[[[[..." deeper than Python's stack
        raise _HttpError(400, "the body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise _HttpError(400, "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        raise _HttpError(400, f"{param}: {first['msg']}", param) from exc


def _to_request(body: Any) -> Request:
    fields: dict[str, Any] = {
        "temperature": body.temperature, "top_p": body.top_p, "n": body.n, "seed": body.seed,
        "stop": body.stop or [], "max_tokens": getattr(body, "max_completion_tokens", None) or body.max_tokens or 256,
    }
    if isinstance(body, _ChatBody):
        fields["messages"] = [_message(m, i) for i, m in enumerate(body.messages)]
        fields["response_format"] = body.response_format
        if body.tools:
            fields["tools"] = [_tool(t, i) for i, t in enumerate(body.tools)]
        if isinstance(body.tool_choice, dict):
            fields["tool_choice"] = (body.tool_choice.get("function") or {}).get("name", "auto")
        elif body.tool_choice is not None:
            fields["tool_choice"] = body.tool_choice
    else:
        fields["prompt"], fields["top_k"] = body.prompt, body.top_k
    try:
        return Request.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or "request"
        raise _HttpError(400, f"{param}: {first['msg']}", param) from exc


def _message(m: _WireMessage, index: int) -> Message:
    content = m.content
    if isinstance(content, list):  # content parts: only text is understood
        texts = [p.get("text", "") for p in content if p.get("type") == "text"]
        if len(texts) != len(content):
            raise _HttpError(400, f"messages.{index}.content: only text parts are supported", f"messages.{index}")
        content = "".join(texts)
    calls = None
    if m.tool_calls:
        try:
            calls = [ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"].get("arguments", "{}"))
                     for c in m.tool_calls]
        except (KeyError, TypeError) as exc:
            raise _HttpError(400, f"messages.{index}.tool_calls: expected id and function.name",
                             f"messages.{index}.tool_calls") from exc
    role = "system" if m.role == "developer" else m.role
    return Message(role=role, content=content, name=m.name, tool_calls=calls, tool_call_id=m.tool_call_id)


def _tool(spec: dict[str, Any], index: int) -> Tool:
    function = spec.get("function")
    if spec.get("type", "function") != "function" or not isinstance(function, dict) or "name" not in function:
        raise _HttpError(400, f"tools.{index}: expected {{'type': 'function', 'function': {{'name': ...}}}}",
                         f"tools.{index}")
    return Tool(name=function["name"], description=function.get("description", ""),
                parameters=function.get("parameters") or {"type": "object", "properties": {}})


def _completion_json(completion: Completion, ident: str, created: int, name: str, chat: bool) -> dict[str, Any]:
    choices = []
    for c in completion.choices:
        if chat:
            message: dict[str, Any] = {"role": "assistant", "content": c.text if not c.tool_calls else None}
            if c.tool_calls:
                message["tool_calls"] = [_call_json(call) for call in c.tool_calls]
            choices.append({"index": c.index, "message": message, "finish_reason": c.finish_reason, "logprobs": None})
        else:
            choices.append({"index": c.index, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None})
    return {"id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
            "model": name, "choices": choices, "usage": _usage_json(completion)}


def _usage_json(completion: Completion) -> dict[str, Any]:
    u = completion.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens}}


def _call_json(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": call.id, "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments}}
    return data if index is None else {"index": index, **data}


async def _sse(chunks: AsyncIterator[Chunk], ident: str, created: int, name: str, chat: bool,
               include_usage: bool) -> AsyncGenerator[str, None]:
    kind = "chat.completion.chunk" if chat else "text_completion"
    started: set[int] = set()
    last_usage = None
    try:
        async for chunk in chunks:
            if chat:
                delta: dict[str, Any] = {}
                if chunk.index not in started:
                    started.add(chunk.index)
                    delta["role"] = "assistant"
                if chunk.text:
                    delta["content"] = chunk.text
                if chunk.tool_calls:
                    delta["tool_calls"] = [_call_json(c, i) for i, c in enumerate(chunk.tool_calls)]
                choice: dict[str, Any] = {"index": chunk.index, "delta": delta, "finish_reason": chunk.finish_reason}
            else:
                choice = {"index": chunk.index, "text": chunk.text, "finish_reason": chunk.finish_reason}
            last_usage = chunk.usage or last_usage
            yield _event({"id": ident, "object": kind, "created": created, "model": name, "choices": [choice]})
    except RequestError as exc:  # headers are gone: report in the stream, as OpenAI does
        yield _event({"error": {"message": str(exc), "type": "invalid_request_error", "param": None, "code": None}})
    if include_usage and last_usage is not None:
        usage = _usage_json(Completion(id=ident, model=name, choices=[], usage=last_usage))
        yield _event({"id": ident, "object": kind, "created": created, "model": name, "choices": [], "usage": usage})
    yield "data: [DONE]\n\n"


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _error(exc: _HttpError) -> JSONResponse:
    retry = {"Retry-After": str(RETRY_AFTER)} if exc.status == 503 else None
    return JSONResponse({"error": {"message": exc.message, "type": exc.kind, "param": exc.param, "code": exc.code}},
                        status_code=exc.status, headers=retry)
