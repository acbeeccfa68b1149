"""The `Executor` protocol, and `LocalExecutor`: calls in this process's event loop (the default).

>>> import asyncio
>>> asyncio.run(LocalExecutor().call(pow, 2, 10))
1024
"""

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from baobab.executors.record import Record, called


@runtime_checkable
class Executor(Protocol):
    """Runs calls somewhere: `await executor.call(fn, *args, record=...)` is `fn(*args)`'s (awaited) result.

    `local` says the calls run in this process (arguments are shared, not copied; a `record` is not needed,
    nothing is retried); otherwise `fn`, the arguments and the result must pickle, and with a `record` the
    result must be JSON.
    """

    local: bool

    async def call(self, fn: Callable[..., Any], *args: Any, record: Record | None = None) -> Any:
        """`fn(*args)`, awaited if it returns an awaitable."""
        ...

    async def aclose(self) -> None:
        """Release the workers."""
        ...


class LocalExecutor:
    """Calls in this process's event loop (concurrency is asyncio's); `record` is ignored: nothing is retried,
    and the caller's own commits (checkpoints, search steps) are what a resumed run reads.

    >>> import asyncio
    >>> asyncio.run(LocalExecutor().call(max, 3, 7))
    7
    """

    local = True

    async def call(self, fn: Callable[..., Any], *args: Any, record: Record | None = None) -> Any:
        """`fn(*args)`, awaited if it returns an awaitable."""
        return await called(fn, *args)

    async def aclose(self) -> None:
        """Nothing to release."""
