"""The one interface every model has: `await llm.complete(request)`, `llm.stream(request)`, sync wrappers."""

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from baobab.aio import run_sync, run_sync_iter
from baobab.engine.types import Choice, Chunk, Completion, Request, Usage
from baobab.errors import BaobabError


class RequestError(BaobabError, ValueError):
    """A request that cannot be served as given; the message names the field."""


class LLM(ABC):
    """A model: local, remote or scripted, all answering the same `Request`.

    >>> llm = load_llm("scripted:hello")  # doctest: +SKIP
    >>> (await llm.complete(messages=[{"role": "user", "content": "hi"}])).text  # doctest: +SKIP
    'hello'
    """

    name: str = "llm"

    async def complete(self, request: Request | Mapping[str, Any] | None = None, **fields: Any) -> Completion:
        """One completion (all `n` choices) for `request`, or for a request built from `fields`."""
        return await self._complete(as_request(request, fields))

    async def stream(self, request: Request | Mapping[str, Any] | None = None, **fields: Any) -> AsyncIterator[Chunk]:
        """The completion as it is produced; the last chunk of each choice has a finish_reason and usage."""
        async for chunk in self._stream(as_request(request, fields)):
            yield chunk

    def complete_sync(self, request: Request | Mapping[str, Any] | None = None, **fields: Any) -> Completion:
        """`complete` for sync code."""
        return run_sync(self.complete(request, **fields))

    def stream_sync(self, request: Request | Mapping[str, Any] | None = None, **fields: Any) -> Iterator[Chunk]:
        """`stream` for sync code."""
        return run_sync_iter(self.stream(request, **fields))

    async def aclose(self) -> None:  # noqa: B027 - most models hold nothing
        """Release what the model holds (threads, connections); it may not be used afterwards."""

    @abstractmethod
    async def _complete(self, request: Request) -> Completion: ...

    async def _stream(self, request: Request) -> AsyncIterator[Chunk]:
        """Models that cannot stream send each choice whole."""
        completion = await self._complete(request)
        for choice in completion.choices:
            yield Chunk(index=choice.index, text=choice.text, finish_reason=choice.finish_reason,
                        tool_calls=choice.tool_calls, token_ids=choice.token_ids,
                        incomplete_json=choice.incomplete_json, usage=completion.usage)


def completion_of(chunks: Iterable[Chunk], model: str) -> Completion:
    """The completion a stream's chunks add up to: what `complete` returns for the same request.

    >>> completion_of([Chunk(text="Hel"), Chunk(text="lo", finish_reason="length")], "m").choices[0]
    Choice(index=0, text='Hello', tool_calls=[], finish_reason='length', token_ids=None, incomplete_json=False)
    """
    choices: dict[int, Choice] = {}
    usage = Usage()
    for chunk in chunks:
        choice = choices.setdefault(chunk.index, Choice(index=chunk.index))
        choice.text += chunk.text
        choice.tool_calls += chunk.tool_calls
        if chunk.finish_reason is not None:  # a choice's last chunk
            choice.finish_reason, choice.incomplete_json = chunk.finish_reason, chunk.incomplete_json
        choice.token_ids = chunk.token_ids if chunk.token_ids is not None else choice.token_ids
        usage = chunk.usage or usage  # the request's, on its last chunk (each whole choice carries it again)
    return Completion(id=f"cmpl-{uuid.uuid4().hex}", model=model, choices=[choices[i] for i in sorted(choices)],
                      usage=usage)


def parses_as_json(text: str) -> bool:
    """Whether `text` is one whole JSON value: how a JSON answer that stopped early is told from a complete one."""
    try:
        json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return False
    return True


def as_request(request: Request | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> Request:
    """A `Request` from a Request, a dict or keyword fields, with errors that name the field."""
    if isinstance(request, Request) and not fields:
        return request
    data = {**(request.model_dump(exclude_unset=True) if isinstance(request, Request) else dict(request or {})),
            **fields}
    try:
        return Request.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors())
        raise RequestError(f"invalid request: {problems}") from exc
