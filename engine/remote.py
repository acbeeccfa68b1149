"""Remote models through litellm: any provider's model name, or any OpenAI-compatible server by URL.

Transient failures (timeouts, 429 with its Retry-After, 5xx, dropped connections) are retried with
backoff (tenacity); anything else fails at once with an error naming the model. A stream is retried
until its first part arrives; once text was passed on, a broken stream ends with an error instead. A
semaphore caps how many requests are in flight per model.
"""

import asyncio
import os
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential

from baobab.engine.llm import LLM, RequestError, parses_as_json
from baobab.engine.types import Choice, Chunk, Completion, Request, ToolCall, Usage
from baobab.errors import BaobabError, require_extra

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map from the network
try:
    import litellm
    from litellm import exceptions as llm_errors
except ModuleNotFoundError:  # litellm is an extra: with its dependencies, 40 packages
    require_extra("remote", "remote models", "litellm")
    raise

litellm.disable_aiohttp_transport = True  # httpx: no unclosed aiohttp sessions left behind
litellm.telemetry = False
litellm.suppress_debug_info = True  # its "Give Feedback" banner went to stdout on every failure, retried ones too

T = TypeVar("T")
TRANSIENT = (llm_errors.Timeout, llm_errors.RateLimitError, llm_errors.APIConnectionError,
             llm_errors.InternalServerError, llm_errors.ServiceUnavailableError, llm_errors.BadGatewayError)


class RemoteError(BaobabError, RuntimeError):
    """A remote model failed for good (after retries, or at once for a non-transient error)."""


class RemoteLLM(LLM):
    """A model behind litellm (`openai/gpt-4o-mini`, `anthropic/...`, `ollama/...`) or a URL ending in /v1.

    >>> llm = RemoteLLM("http://127.0.0.1:8000/v1")  # any OpenAI-compatible server  # doctest: +SKIP
    """

    def __init__(self, model: str, *, api_base: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, retries: int = 4, concurrency: int = 16, max_wait: float = 30.0) -> None:
        if model.startswith(("http://", "https://")):
            api_base, model = model.rstrip("/"), ""
        self.model, self.api_base = model, api_base
        self.api_key = api_key or (os.environ.get("BAOBAB_API_KEY") if api_base else None)
        self.name = model or str(api_base)
        self.timeout, self.retries, self.max_wait, self.concurrency = timeout, retries, max_wait, concurrency
        self._limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())
        self.attempts = 0  # calls made to the provider, retries included

    async def _complete(self, request: Request) -> Completion:
        started = time.perf_counter()
        kwargs = await self._kwargs(request)
        call = litellm.atext_completion if request.prompt is not None else litellm.acompletion
        async with self._limit():
            response = await self._retrying(lambda: call(**kwargs))
        return _completion(response, request, self.name, started)

    async def _stream(self, request: Request) -> AsyncIterator[Chunk]:
        started = time.perf_counter()
        kwargs = await self._kwargs(request)
        call = litellm.atext_completion if request.prompt is not None else litellm.acompletion

        async def opened() -> tuple[AsyncIterator[Any], Any]:
            """The stream and its first part: until that arrives nothing was sent on, so a failure is retried."""
            parts = aiter(await call(**kwargs, stream=True, stream_options={"include_usage": True}))
            return parts, await anext(parts, None)

        async with self._limit():
            parts, part = await self._retrying(opened)
            first = 0.0
            calls = _StreamedCalls()
            texts: dict[int, str] = {}  # each choice's text so far: JSON cut off at its end is flagged as complete's
            try:
                while part is not None:
                    for choice in part.choices:
                        delta = getattr(choice, "delta", None)
                        calls.add(choice.index, getattr(delta, "tool_calls", None) or [])
                        text = getattr(delta, "content", None) or getattr(choice, "text", "") or ""
                        texts[choice.index] = texts.get(choice.index, "") + text
                        first = first or (time.perf_counter() if text else 0.0)
                        if text or choice.finish_reason:
                            finish = _finish(choice.finish_reason)
                            made = calls.take(choice.index) if finish else []
                            cut = finish == "length" and _cut_json(request, texts[choice.index], made)
                            yield Chunk(index=choice.index, text=text, finish_reason=finish, tool_calls=made,
                                        incomplete_json=cut)
                    if getattr(part, "usage", None):
                        usage = _usage(part.usage, started, first, self.name)
                        yield Chunk(index=0, usage=usage)
                    part = await anext(parts, None)
            except Exception as exc:  # a stream cut mid-answer is not retried: the text was already sent
                root = _root_cause(exc)
                why = self._silence(root) or f"{type(root).__name__}: {root}"
                raise RemoteError(f"{self.name}: the stream broke: {why}") from exc

    async def _kwargs(self, request: Request) -> dict[str, Any]:
        model = self.model or f"openai/{await self._served_model()}"
        kwargs: dict[str, Any] = {
            "model": model, "max_tokens": request.max_tokens, "temperature": request.temperature,
            "top_p": request.top_p, "n": request.n, "timeout": self.timeout, "num_retries": 0, "max_retries": 0,
        }
        if self.api_base:
            kwargs.update(api_base=self.api_base, api_key=self.api_key or "none")
        elif self.api_key:
            kwargs["api_key"] = self.api_key
        kwargs.update({k: v for k, v in (("seed", request.seed), ("stop", request.stop or None),
                                          ("response_format", request.response_format)) if v is not None})
        if request.prompt is not None:
            kwargs["prompt"] = request.prompt
            return kwargs
        kwargs["messages"] = [_message_json(m) for m in request.messages or []]
        if request.tools:
            kwargs["tools"] = [{"type": "function", "function": t.model_dump()} for t in request.tools]
            choice = request.tool_choice
            kwargs["tool_choice"] = choice if choice in ("auto", "none", "required") else {
                "type": "function", "function": {"name": choice}}
        return kwargs

    async def _served_model(self) -> str:
        """The first model an OpenAI-compatible server lists (asked once)."""
        if not self.model:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            try:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    listing = (await client.get(f"{self.api_base}/models", headers=headers)).raise_for_status().json()
                self.model = "openai/" + listing["data"][0]["id"]
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
                raise RemoteError(f"{self.api_base}/models did not name a model: {exc}") from exc
        return self.model.removeprefix("openai/")

    def _limit(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in self._limits:
            self._limits[loop] = asyncio.Semaphore(self.concurrency)
        return self._limits[loop]

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(self.retries + 1), reraise=True,
                                               retry=retry_if_exception(lambda e: isinstance(e, TRANSIENT)),
                                               wait=self._wait):
                with attempt:
                    self.attempts += 1
                    return await call()
        except TRANSIENT as exc:
            tries = self.retries + 1
            why = self._silence(_root_cause(exc)) or f"{type(exc).__name__}: {exc}"
            raise RemoteError(f"{self.name}: still failing after {tries} attempt{'s' * (tries > 1)}: {why}") from exc
        except (llm_errors.BadRequestError, llm_errors.UnprocessableEntityError) as exc:
            raise RequestError(f"{self.name} refused the request: {exc}") from exc
        except Exception as exc:  # authentication, not found, a body that is not JSON: no retry helps
            raise RemoteError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable: tenacity returns or re-raises")

    def _silence(self, cause: BaseException) -> str | None:
        """A timeout said plainly (litellm's wrappers word it as a connection error), or None for other causes."""
        if isinstance(cause, httpx.TimeoutException | TimeoutError):
            return f"no data for {self.timeout:g} s ({type(cause).__name__})"
        return None

    def _wait(self, state: RetryCallState) -> float:
        """Retry-After when the server sent one (capped), else exponential backoff with a 0.5 s start."""
        exc = state.outcome.exception() if state.outcome else None
        after = _retry_after(exc)
        if after is not None:
            return min(after, self.max_wait)
        return float(wait_exponential(multiplier=0.5, max=self.max_wait)(state))


def _root_cause(exc: BaseException) -> BaseException:
    """What went wrong under litellm's wrappers (their messages often lose it): a timeout if there was one
    in the chain of causes, else the innermost exception that is not a cancellation."""
    chain = [exc]
    while (inner := chain[-1].__cause__ or chain[-1].__context__) is not None and inner not in chain:
        chain.append(inner)
    timeouts = [e for e in chain if isinstance(e, httpx.TimeoutException | TimeoutError)]
    return timeouts[0] if timeouts else [e for e in chain if not isinstance(e, asyncio.CancelledError)][-1]


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked to wait; litellm keeps the real headers in litellm_response_headers."""
    for headers in (getattr(exc, "litellm_response_headers", None),
                    getattr(getattr(exc, "response", None), "headers", None)):
        value = headers.get("retry-after") if headers is not None and hasattr(headers, "get") else None
        if value is not None:
            try:
                return float(value)
            except ValueError:  # an HTTP date: rare from APIs; fall back to backoff
                return None
    return None


def _message_json(m: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        data["tool_calls"] = [{"id": c.id, "type": "function",
                               "function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
    if m.tool_call_id:
        data["tool_call_id"] = m.tool_call_id
    if m.name:
        data["name"] = m.name
    return data


class _StreamedCalls:
    """Tool calls of a stream, per choice: a call's id and name come in its first piece, its arguments in
    fragments; a choice's calls are whole once it finishes."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[int, dict[str, str]]] = {}  # choice -> tool index -> id, name, arguments

    def add(self, choice: int, pieces: list[Any]) -> None:
        for piece in pieces:
            empty = {"id": "", "name": "", "arguments": ""}
            call = self.calls.setdefault(choice, {}).setdefault(piece.index or 0, empty)
            call["id"] = piece.id or call["id"]
            call["name"] = getattr(piece.function, "name", None) or call["name"]
            call["arguments"] += getattr(piece.function, "arguments", None) or ""

    def take(self, choice: int) -> list[ToolCall]:
        made = self.calls.pop(choice, {})
        return [ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"] or "{}")
                for i, c in sorted(made.items())]


def _finish(reason: str | None) -> Any:
    if reason is None:
        return None
    return reason if reason in ("stop", "length", "tool_calls") else "stop"


def _completion(response: Any, request: Request, name: str, started: float) -> Completion:
    choices = []
    for c in response.choices:
        message = getattr(c, "message", None)
        calls = [ToolCall(id=t.id, name=t.function.name, arguments=t.function.arguments or "{}")
                 for t in (getattr(message, "tool_calls", None) or [])]
        text = (message.content if message is not None else getattr(c, "text", "")) or ""
        finish = _finish(c.finish_reason)
        choices.append(Choice(index=c.index, text=text, tool_calls=calls, finish_reason=finish,
                              incomplete_json=finish == "length" and _cut_json(request, text, calls)))
    usage = _usage(getattr(response, "usage", None), started, 0.0, name)
    return Completion(id=getattr(response, "id", None) or f"remote-{uuid.uuid4().hex}", model=name,
                      choices=choices, usage=usage)


def _cut_json(request: Request, text: str, calls: list[ToolCall]) -> bool:
    """Whether JSON the request asked for (a response_format's, or tool calls' arguments) does not parse."""
    if calls:
        return not all(parses_as_json(c.arguments) for c in calls)
    asked = (request.response_format or {}).get("type") in ("json_object", "json_schema")
    return asked and not parses_as_json(text)


def _usage(usage: Any, started: float, first: float, model: str) -> Usage:
    details = getattr(usage, "prompt_tokens_details", None)
    now = time.perf_counter()
    prompt, completion = getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0
    prices = litellm.model_cost.get(model, {})  # the offline cost map; unknown models cost 0 (not counted)
    cost = prompt * prices.get("input_cost_per_token", 0.0) + completion * prices.get("output_cost_per_token", 0.0)
    return Usage(prompt_tokens=prompt, completion_tokens=completion,
                 cached_tokens=getattr(details, "cached_tokens", 0) or 0,
                 time_to_first_token=(first or now) - started, total_time=now - started, cost=cost)
