"""The OpenAI Responses API (POST /v1/responses) over the engine: a Responses body becomes a `Request` (input items
as chat messages, instructions as the system turn, text.format as response_format, function tools as tools), and
the `Completion` or the `Chunk`s that come back become a response object or its stream of events.

Nothing is stored (store is accepted and answered false): previous_response_id, conversations and item references
are refused with a 400 saying so, and a client sends the whole conversation in `input`, as it does to chat.
"""

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response

from baobab.engine.llm import RequestError
from baobab.engine.types import Chunk, FinishReason, Message, Request, ToolCall, ToolSpec, Usage
from baobab.serve.endpoint import Body, HttpError, JsonText, Reply, Served, error_response, offered_tool, validated

NOT_STORED = "this server stores no responses (store is always false): send the whole conversation in input"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Part(BaseModel):
    """A content part: only text is understood (input_text, output_text, refusal); annotations are ignored."""

    type: str
    text: str = ""
    refusal: str = ""


class _MessageItem(_Strict):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[_Part]
    id: str | None = None
    status: str | None = None
    phase: str | None = None


class _CallItem(_Strict):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: JsonText
    id: str | None = None
    status: str | None = None


class _OutputItem(_Strict):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[_Part]
    id: str | None = None
    status: str | None = None


ITEMS: dict[str, type[_MessageItem | _CallItem | _OutputItem]] = {
    "message": _MessageItem, "function_call": _CallItem, "function_call_output": _OutputItem}


class _FunctionTool(_Strict):
    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _ToolChoice(_Strict):
    type: Literal["function"]
    name: str


class _Format(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    name: str = "response"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class _Text(_Strict):
    format: _Format | None = None
    verbosity: str | None = None


class ResponsesBody(Body):
    """A POST /v1/responses body; known OpenAI fields Baobab does not use are accepted and ignored."""

    input: Any = Field()  # a string or a list of items: checked by `_messages`, whose errors name the item
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    tools: list[_FunctionTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: _Text | None = None
    stream: bool = False
    store: bool | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    background: bool | None = None
    prompt: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    user: str | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = None
    include: list[str] | None = None
    reasoning: dict[str, Any] | None = None
    truncation: str | None = None
    service_tier: str | None = None
    top_logprobs: int | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    stream_options: dict[str, Any] | None = None


def responses_reply(body: ResponsesBody, served: Served) -> Reply:
    """The answer to a Responses request: a response object, or its events; 400 at once for what cannot be served.

    >>> await served.answer(http, ResponsesBody, lambda body: responses_reply(body, served))  # doctest: +SKIP
    """
    request = _to_request(body)
    shell = _Shell(body, served.name)

    async def reply() -> Response | AsyncGenerator[str, None]:
        if body.stream:
            return _events(served.llm.stream(request), shell)
        try:
            completion = await served.llm.complete(request)
        except RequestError as exc:
            return error_response(HttpError(400, str(exc)))
        choice = completion.choices[0]
        return JSONResponse(shell.finished(choice.text, choice.tool_calls, choice.finish_reason, completion.usage))

    return reply


def _to_request(body: ResponsesBody) -> Request:
    for field in ("previous_response_id", "conversation"):
        if getattr(body, field) is not None:
            raise HttpError(400, f"{field}: not supported: {NOT_STORED}", field)
    if body.background:
        raise HttpError(400, f"background: not supported: {NOT_STORED}", "background")
    if body.prompt is not None:
        raise HttpError(400, "prompt: stored prompt templates are not supported: send instructions and input",
                        "prompt")
    tools = [ToolSpec(name=t.name, description=t.description or "",
                      parameters=t.parameters or {"type": "object", "properties": {}}) for t in body.tools or ()]
    fields: dict[str, Any] = {"messages": _messages(body.input, body.instructions),
                              "response_format": _response_format(body.text)}
    if tools:
        fields["tools"] = tools
    if body.tool_choice is not None:
        fields["tool_choice"] = _tool_choice(body.tool_choice, tools)
    given = {"max_tokens": body.max_output_tokens, "temperature": body.temperature, "top_p": body.top_p}
    return validated(Request, fields | {k: v for k, v in given.items() if v is not None})


def _messages(given: Any, instructions: str | None) -> list[Message]:
    """`input` as chat messages, after `instructions` as the system turn: calls made together share one assistant
    turn, and an output answers a call made before it."""
    messages = [Message(role="system", content=instructions)] if instructions else []
    if isinstance(given, str):
        return [*messages, Message(role="user", content=given)]
    if not isinstance(given, list) or not given:
        raise HttpError(400, "input: expected a string or a non-empty list of input items", "input")
    called: set[str] = set()
    for i, raw in enumerate(given):
        item = _item(raw, i)
        if isinstance(item, _CallItem):
            call = ToolCall(id=item.call_id, name=item.name, arguments=item.arguments)
            called.add(item.call_id)
            last = messages[-1] if messages else None
            if last is not None and last.tool_calls:
                last.tool_calls.append(call)
            else:
                messages.append(Message(role="assistant", tool_calls=[call]))
        elif isinstance(item, _OutputItem):
            if item.call_id not in called:
                raise HttpError(400, f"input.{i}.call_id: no function_call item before it has call_id "
                                     f"{item.call_id!r}", f"input.{i}.call_id")
            content = _text(item.output, f"input.{i}.output")
            messages.append(Message(role="tool", content=content, tool_call_id=item.call_id))
        else:
            role = "system" if item.role == "developer" else item.role
            messages.append(Message(role=role, content=_text(item.content, f"input.{i}.content")))
    return messages


def _item(raw: Any, index: int) -> _MessageItem | _CallItem | _OutputItem:
    where = f"input.{index}"
    if not isinstance(raw, dict):
        raise HttpError(400, f"{where}: expected an input item (an object), got {type(raw).__name__}", where)
    kind = raw.get("type", "message")
    if kind == "item_reference":
        raise HttpError(400, f"{where}.type: item_reference is not supported: {NOT_STORED}", f"{where}.type")
    if not isinstance(kind, str) or kind not in ITEMS:
        raise HttpError(400, f"{where}.type: expected message, function_call or function_call_output, got {kind!r}",
                        f"{where}.type")
    return validated(ITEMS[kind], raw, where)


def _text(content: str | list[_Part], where: str) -> str:
    if isinstance(content, str):
        return content
    for j, part in enumerate(content):
        if part.type not in ("input_text", "output_text", "refusal"):
            raise HttpError(400, f"{where}.{j}.type: only text parts (input_text, output_text) are supported, got "
                                 f"{part.type!r}", f"{where}.{j}.type")
    return "".join(part.text or part.refusal for part in content)


def _tool_choice(choice: str | dict[str, Any], tools: list[ToolSpec]) -> str:
    """auto, none, required, or {"type": "function", "name": NAME} naming one of `tools`."""
    if choice in ("auto", "none", "required"):
        return str(choice)
    if isinstance(choice, str):
        raise HttpError(400, f'tool_choice: expected auto, none, required or {{"type": "function", "name": ...}}, '
                             f"got {choice!r}", "tool_choice")
    return offered_tool(validated(_ToolChoice, choice, "tool_choice").name, tools)


def _response_format(text: _Text | None) -> dict[str, Any] | None:
    """text.format as the engine's response_format: a JSON schema through its grammar, as chat's."""
    form = text.format if text is not None else None
    if form is None or form.type == "text":
        return None
    if form.type == "json_object":
        return {"type": "json_object"}
    if form.schema_ is None:
        raise HttpError(400, "text.format.schema: json_schema needs a JSON schema (an object)", "text.format.schema")
    return {"type": "json_schema", "json_schema": {"name": form.name, "schema": form.schema_, "strict": form.strict}}


class _Shell:
    """What a response says besides its output: its id, and the request's settings echoed back."""

    def __init__(self, body: ResponsesBody, model: str) -> None:
        self.ident, self.created = f"resp_{uuid.uuid4().hex}", int(time.time())
        self.message_id = f"msg_{uuid.uuid4().hex}"
        form = body.text.format if body.text is not None else None
        self.echo = {
            "instructions": body.instructions, "max_output_tokens": body.max_output_tokens, "model": model,
            "parallel_tool_calls": body.parallel_tool_calls is not False, "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None}, "store": False,
            "temperature": 1.0 if body.temperature is None else body.temperature,
            "text": {"format": form.model_dump(by_alias=True, exclude_none=True) if form else {"type": "text"}},
            "tool_choice": body.tool_choice or "auto", "tools": [t.model_dump() for t in body.tools or ()],
            "top_p": 1.0 if body.top_p is None else body.top_p, "truncation": "disabled", "user": body.user,
            "metadata": body.metadata or {}}

    def json(self, status: str, output: list[dict[str, Any]], usage: Usage | None = None,
             error: dict[str, str] | None = None) -> dict[str, Any]:
        """The response object with `status` and `output`."""
        return {"id": self.ident, "object": "response", "created_at": self.created, "status": status,
                "error": error, "output": output, **self.echo,
                "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
                "usage": None if usage is None else {
                    "input_tokens": usage.prompt_tokens, "input_tokens_details": {"cached_tokens": usage.cached_tokens},
                    "output_tokens": usage.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": usage.prompt_tokens + usage.completion_tokens}}

    def finished(self, text: str, calls: list[ToolCall], finish: FinishReason, usage: Usage) -> dict[str, Any]:
        """The response to a generation that ended: a message with its text (where there is text, or nothing else),
        then a function_call item per call; incomplete when max_output_tokens (or the context) cut it short."""
        cut = finish == "length"
        output = [self.message(text, "incomplete" if cut else "completed")] if text or not calls else []
        output += [_call(call) for call in calls]
        return self.json("incomplete" if cut else "completed", output, usage)

    def message(self, text: str, status: str) -> dict[str, Any]:
        """The assistant message item, whose content is one output_text part (none while it starts)."""
        content = [] if status == "in_progress" else [_output_text(text)]
        return {"type": "message", "id": self.message_id, "status": status, "role": "assistant", "content": content}


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _call(call: ToolCall) -> dict[str, Any]:
    return {"type": "function_call", "id": f"fc_{call.id.removeprefix('call_')}", "call_id": call.id,
            "name": call.name, "arguments": call.arguments, "status": "completed"}


async def _events(chunks: AsyncIterator[Chunk], shell: _Shell) -> AsyncGenerator[str, None]:
    """The Responses stream: created, in_progress, the message's text as deltas while it is made, then each output
    item done (a call's arguments in one delta: a call is known once whole) and completed or incomplete."""
    numbered = _Numbered()
    yield numbered("response.created", response=shell.json("in_progress", []))
    yield numbered("response.in_progress", response=shell.json("in_progress", []))
    text, opened, usage = "", False, Usage()
    calls: list[ToolCall] = []
    finish: FinishReason = "stop"
    at = {"item_id": shell.message_id, "output_index": 0, "content_index": 0}
    try:
        async for chunk in chunks:
            if chunk.text and not opened:
                opened = True
                yield numbered("response.output_item.added", output_index=0, item=shell.message(text, "in_progress"))
                yield numbered("response.content_part.added", **at, part=_output_text(""))
            if chunk.text:
                text += chunk.text
                yield numbered("response.output_text.delta", **at, delta=chunk.text, logprobs=[])
            calls += chunk.tool_calls
            finish, usage = chunk.finish_reason or finish, chunk.usage or usage
    except RequestError as exc:  # headers are gone: report in the stream, as OpenAI does
        yield numbered("error", code="invalid_prompt", message=str(exc), param=None)
        yield numbered("response.failed", response=shell.json("failed", [], error={
            "code": "invalid_prompt", "message": str(exc)}))
        return
    response = shell.finished(text, calls, finish, usage)
    for index, item in enumerate(response["output"]):
        if item["type"] == "message":
            if not opened:
                yield numbered("response.output_item.added", output_index=0, item=shell.message("", "in_progress"))
                yield numbered("response.content_part.added", **at, part=_output_text(""))
            yield numbered("response.output_text.done", **at, text=text, logprobs=[])
            yield numbered("response.content_part.done", **at, part=item["content"][0])
        else:
            started = {**item, "arguments": "", "status": "in_progress"}
            yield numbered("response.output_item.added", output_index=index, item=started)
            step = {"item_id": item["id"], "output_index": index}
            yield numbered("response.function_call_arguments.delta", **step, delta=item["arguments"])
            yield numbered("response.function_call_arguments.done", **step, name=item["name"],
                           arguments=item["arguments"])
        yield numbered("response.output_item.done", output_index=index, item=item)
    yield numbered(f"response.{response['status']}", response=response)


class _Numbered:
    """Server-sent events of the Responses stream, each with the next sequence_number."""

    def __init__(self) -> None:
        self.next = 0

    def __call__(self, kind: str, **data: Any) -> str:
        event = {"type": kind, "sequence_number": self.next, **data}
        self.next += 1
        return f"event: {kind}\ndata: {json.dumps(event)}\n\n"
