"""Tokens streamed inside nodes, delivered in the run's one event stream as `Token` events.

`app.stream(input, tokens=True)` sets a sink in each task's context; code inside the node (an agent, a
subgraph's nodes, any function) asks `token_sink()` and, when it gets one, streams its model's text to it.
Without a listener `token_sink()` is None, so nothing streams that nobody reads.
"""

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from baobab.graphs.events import Token

Sink = Callable[[tuple[str, ...], str], None]
"""Takes a path (where, below the current node) and a piece of text."""

_SINK: ContextVar[Sink | None] = ContextVar("baobab_token_sink", default=None)


def token_sink() -> Sink | None:
    """Where text streamed here goes, or None when nobody streams this run's tokens.

    >>> def node(state):
    ...     sink = token_sink()
    ...     if sink is not None:
    ...         sink(("writer",), "Hello")
    ...     return {"text": "Hello"}
    """
    return _SINK.get()


def queue_sink(queue: "asyncio.Queue[Token]") -> Sink:
    """A sink that puts `Token`s on `queue`, safe to call from a node's worker thread."""
    loop = asyncio.get_running_loop()

    def put(path: tuple[str, ...], text: str) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            queue.put_nowait(Token(path, text))
        else:  # a sync node in a thread
            loop.call_soon_threadsafe(queue.put_nowait, Token(path, text))

    return put


@contextmanager
def node_tokens(base: Sink | None, node: str) -> Iterator[None]:
    """Inside, `token_sink()` sends to `base` under `node`'s name (no sink when `base` is None)."""
    token = _SINK.set(None if base is None else lambda path, text: base((node, *path), text))
    try:
        yield
    finally:
        _SINK.reset(token)
