"""Where calls run: in this process (`LocalExecutor`, the default) or on worker processes (`RayExecutor`).

An executor runs `fn(*args)` (plain or async) and gives back its result. Workers keep nothing between
calls that matters: what must outlive a call (checkpoints, search trees, results) is in the store, and a
call given a `Record` commits its result there once. Ray is imported only when a `RayExecutor` is made.

>>> import asyncio
>>> asyncio.run(executor("local").call(pow, 2, 10))
1024
"""

from typing import Any

from baobab.executors.local import Executor, LocalExecutor
from baobab.executors.ray import RayExecutor
from baobab.executors.record import Record, once, open_store, portable_url, task_key

EXECUTORS = ("local", "ray")


def executor(name: str = "local", address: str | None = None, **options: Any) -> Executor:
    """The executor named `name`: "local", or "ray" (on the cluster at `address`, or a local one on loopback).

    `options` go to `RayExecutor` (`workers`, `concurrency`, `max_retries`, ...).

    >>> executor("local").local
    True
    """
    if name == "local":
        if address is not None or options:
            raise ValueError(f"the local executor takes no address or options, got {address=} {options}")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, **options)
    raise ValueError(f"unknown executor {name!r}; valid: {list(EXECUTORS)}")


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "Record", "executor", "once", "open_store",
           "portable_url", "task_key"]
