"""Sync calls into async code: one reused event loop per thread (used by every layer's sync API)."""

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, TypeVar, cast

T = TypeVar("T")
E = TypeVar("E")

_thread_local = threading.local()


def run_sync(coro: Awaitable[T]) -> T:
    """Run a coroutine from sync code on this thread's reused event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        if asyncio.iscoroutine(coro):
            coro.close()
        raise RuntimeError("a sync Baobab call was made inside a running event loop; use its async form "
                           "(e.g. arun, astream, complete)")
    runner = getattr(_thread_local, "runner", None)
    if runner is None:
        runner = _thread_local.runner = asyncio.Runner()
    # the caller's context variables (an agent listener, a run's budget) reach the coroutine
    return cast(T, runner.run(cast(Any, coro), context=contextvars.copy_context()))


def run_sync_iter(events: AsyncIterator[E]) -> Iterator[E]:
    """Iterate an async iterator from sync code, closing it if the caller stops early."""

    async def step() -> E:
        return await events.__anext__()

    try:
        while True:
            try:
                yield run_sync(step())
            except StopAsyncIteration:
                return
    finally:
        run_sync(cast(Any, events).aclose())
