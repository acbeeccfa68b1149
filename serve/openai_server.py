"""An OpenAI-compatible HTTP server for any Baobab model: /v1/models, /v1/chat/completions, /v1/completions, and
the Responses API at /v1/responses (serve/responses.py).

    baobab serve --model local:smollm2-135m --port 8000 [--api-key KEY] [--alias gpt-4o-mini]

Bad requests get OpenAI-shaped 400 errors naming the field; a missing or wrong key gets 401; a `model` that is
neither the served model's name nor one of its aliases gets 404 (model_not_found), as OpenAI answers it; a body
larger than `max_body` gets 413 before it is read. A client that disconnects cancels its generation, streamed
or not, and its place is free at once (serve/endpoint.py: what every endpoint shares).
"""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from baobab.engine.llm import LLM, RequestError
from baobab.engine.types import Chunk, Completion, Message, Request, ToolCall, ToolSpec
from baobab.serve.endpoint import Body, HttpError, JsonText, Reply, Served, error_response, offered_tool, validated
from baobab.serve.responses import ResponsesBody, responses_reply

MAX_BODY = 4 * 2**20  # bytes of a request body at most, by default: a long document, not a memory attack
LARGE_BODY = 2**20  # bytes of a body after which the memory its copies took is handed back to the OS
INT64 = 2**63  # seeds are int64, as OpenAI documents them


class _Wire(Body):
    """Fields shared by both endpoints; known OpenAI fields Baobab does not use are accepted and ignored."""

    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=64)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-INT64, lt=INT64)
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


class _WirePart(BaseModel):
    type: str
    text: str = ""  # only text parts are understood


class _WireCallFunction(BaseModel):
    name: str
    arguments: JsonText = "{}"


class _WireToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: _WireCallFunction


class _WireMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_WirePart] | None = None
    name: str | None = None
    tool_calls: list[_WireToolCall] | None = None
    tool_call_id: str | None = None


class _WireFunction(BaseModel):
    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _WireTool(BaseModel):
    type: Literal["function"] = "function"
    function: _WireFunction


class _WireNamed(BaseModel):
    name: str


class _WireToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: _WireNamed


class _ChatBody(_Wire):
    messages: list[_WireMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: dict[str, Any] | None = None
    tools: list[_WireTool] | None = None
    tool_choice: str | dict[str, Any] | None = None


class _CompletionBody(_Wire):
    prompt: str
    top_k: int = Field(default=0, ge=0)


def create_app(llm: LLM, *, api_key: str | None = None, model_name: str | None = None,
               aliases: Sequence[str] = (), max_pending: int = 64, max_body: int = MAX_BODY) -> Starlette:
    """The ASGI app serving `llm`; with `api_key`, requests need `Authorization: Bearer KEY`.

    Requests name the model `model_name` (default: `llm.name`) or one of `aliases` (so a client written for
    another provider, e.g. asking for gpt-4o-mini, can be pointed here on purpose); another name gets 404, and a
    request without `model` is served too. /v1/models lists the name, then the aliases.

    At most `max_pending` completions are in progress (queued in the engine or generating); one more is
    answered 503 with Retry-After at once, so a client never waits on a queue without bound. A body of more
    than `max_body` bytes is answered 413 as soon as that is known (from Content-Length, or while it is read).
    Served with its lifespan (uvicorn), the event loop's worker threads, where a model prepares requests
    (tokenising, compiling grammars), number `max_pending`: slow ones never hold up the others' (asyncio's
    default is min(32, CPUs + 4) threads).

    >>> app = create_app(load_llm("scripted:hi"), max_body=2**20)  # doctest: +SKIP
    """
    names = list(dict.fromkeys([model_name or llm.name, *aliases]))
    served = Served(llm, names, api_key=api_key, max_pending=max_pending, max_body=max_body)

    async def models(request: HttpRequest) -> Response:
        try:
            served.check_key(request)
        except HttpError as exc:
            return error_response(exc)
        return JSONResponse({"object": "list", "data": [
            {"id": n, "object": "model", "created": 0, "owned_by": "baobab"} for n in names]})

    async def chat(request: HttpRequest) -> Response:
        return await served.answer(request, _ChatBody, lambda body: _reply(body, served))

    async def completions(request: HttpRequest) -> Response:
        return await served.answer(request, _CompletionBody, lambda body: _reply(body, served))

    async def responses(request: HttpRequest) -> Response:
        return await served.answer(request, ResponsesBody, lambda body: responses_reply(body, served))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        asyncio.get_running_loop().set_default_executor(  # the loop shuts it down when it closes
            ThreadPoolExecutor(max_pending, thread_name_prefix="baobab-prepare"))
        yield

    return Starlette(routes=[
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
    ], middleware=[Middleware(_HandsBackMemory)], lifespan=lifespan)


class _HandsBackMemory:
    """ASGI middleware: once a request whose body was large is answered (its copies freed), the memory they took
    goes back to the OS, which glibc would keep (16 bodies of 3 MB at once left +48 MB resident; +4 MB so)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0

        async def counted() -> AsgiMessage:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)
        if received > LARGE_BODY:
            from baobab.engine.scheduler import return_freed_memory  # torch's: loaded already for a local model

            await asyncio.to_thread(return_freed_memory)


def _reply(body: _ChatBody | _CompletionBody, served: Served) -> Reply:
    """A chat or text completion, answered under the served model's name whichever of its names it asked."""
    request, chat = _to_request(body), isinstance(body, _ChatBody)
    created, ident = int(time.time()), f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"

    async def reply() -> Response | AsyncGenerator[str, None]:
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            return _sse(served.llm.stream(request), ident, created, served.name, chat, usage)
        try:
            completion = await served.llm.complete(request)
        except RequestError as exc:
            return error_response(HttpError(400, str(exc)))
        return JSONResponse(_completion_json(completion, ident, created, served.name, chat))

    return reply


def _to_request(body: _ChatBody | _CompletionBody) -> Request:
    fields: dict[str, Any] = {
        "temperature": body.temperature, "top_p": body.top_p, "n": body.n, "seed": body.seed,
        "stop": body.stop or [], "max_tokens": getattr(body, "max_completion_tokens", None) or body.max_tokens or 256,
    }
    if isinstance(body, _ChatBody):
        fields["messages"] = [_message(m, i) for i, m in enumerate(body.messages)]
        fields["response_format"] = body.response_format
        tools = [_tool(t) for t in body.tools or ()]
        if tools:
            fields["tools"] = tools
        if body.tool_choice is not None:
            fields["tool_choice"] = _tool_choice(body.tool_choice, tools)
    else:
        fields["prompt"], fields["top_k"] = body.prompt, body.top_k
    return validated(Request, fields)


def _message(m: _WireMessage, index: int) -> Message:
    content = m.content
    if isinstance(content, list):  # content parts: only text is understood
        if any(p.type != "text" for p in content):
            raise HttpError(400, f"messages.{index}.content: only text parts are supported", f"messages.{index}")
        content = "".join(p.text for p in content)
    calls = [ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments) for c in m.tool_calls or ()]
    role = "system" if m.role == "developer" else m.role
    return Message(role=role, content=content, name=m.name, tool_calls=calls or None, tool_call_id=m.tool_call_id)


def _tool(spec: _WireTool) -> ToolSpec:
    function = spec.function
    return ToolSpec(name=function.name, description=function.description,
                    parameters=function.parameters or {"type": "object", "properties": {}})


def _tool_choice(choice: str | dict[str, Any], tools: list[ToolSpec]) -> str:
    """auto, none, required, or the name of one of `tools` (given as it, or as OpenAI's {"type": "function",
    "function": {"name": NAME}})."""
    if choice in ("auto", "none", "required"):
        return str(choice)
    name = choice if isinstance(choice, str) else validated(_WireToolChoice, choice, "tool_choice").function.name
    return offered_tool(name, tools)


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
