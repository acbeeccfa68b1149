"""Where calls run: in this process (`LocalExecutor`, the default) or on worker processes (`RayExecutor`).

An executor runs `fn(*args)` (plain or async) and gives back its result. Workers keep nothing between
calls that matters: what must outlive a call (checkpoints, search trees, results) is in the store. A call
given a `Record` commits its JSON result under a unique key, once: when it runs again (Ray retries the calls
of a worker that died) it reads the committed result back instead of running, so a worker that dies loses
no committed work and none is duplicated. Graph runs need no record: a thread is its own record
(`run_thread` runs a new thread, resumes an unfinished one from its last checkpoint, reads a finished one back).

>>> import asyncio
>>> asyncio.run(LocalExecutor().call(pow, 2, 10))
1024
"""

import asyncio
import hashlib
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from baobab.graphs.events import RunResult
from baobab.graphs.runtime import App
from baobab.store import Store
from baobab.store.schema import task_results

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Record:
    """Where a call's result is kept: the store at `url` (one every worker can open), under the unique `key`.

    >>> Record("sqlite:////tmp/runs.db", "search:demo:expand:7").key
    'search:demo:expand:7'
    """

    url: str
    key: str


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
        return await _resolve(fn(*args))

    async def aclose(self) -> None:
        """Nothing to release."""


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
        from baobab.graphs.ray_executor import RayExecutor

        return RayExecutor(address, **options)
    raise ValueError(f"unknown executor {name!r}; valid: {list(EXECUTORS)}")


async def once(store: Store, key: str, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`'s JSON result, committed under `key` in one transaction; if a result is committed there already
    (an earlier attempt of the same call), that one, and `fn` does not run.

    Two attempts racing both run, and the first commit wins: both return its result.

    >>> import asyncio
    >>> store = Store("sqlite://")
    >>> asyncio.run(once(store, "k", lambda: [1, 2])), asyncio.run(once(store, "k", lambda: "not run"))
    ([1, 2], [1, 2])
    """
    found = _committed(store, key)
    if found is not None:
        return json.loads(found)
    text = json.dumps(await _resolve(fn(*args)))
    try:
        with store.transaction() as conn:
            conn.execute(insert(task_results).values(key=key, data=text, created=time.time()))
    except IntegrityError:  # another attempt committed first: its result is the one
        text = _committed(store, key) or text
    return json.loads(text)


def task_key(*parts: Any) -> str:
    """A record key for a call described by JSON `parts` (names, ids, states), short enough for any store.

    >>> task_key("search", "demo", 7) == task_key("search", "demo", 7) != task_key("search", "demo", 8)
    True
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def portable_url(url: str) -> str:
    """`url` as another process can open it: a relative SQLite path made absolute; an in-memory one refused.

    >>> portable_url("postgresql+psycopg://db.internal/baobab")
    'postgresql+psycopg://db.internal/baobab'
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return url
    database = parsed.database or ""
    if not database or database == ":memory:":
        raise ValueError(f"{url!r} is an in-memory database, which workers cannot share: give a file "
                         "(sqlite:///path.db) or a PostgreSQL URL")
    return parsed.set(database=str(Path(database).resolve())).render_as_string(hide_password=False)


_STORES: dict[str, Store] = {}


def open_store(url: str) -> Store:
    """The store at `url`, opened once per process (a worker's connections outlive its calls, nothing else does)."""
    store = _STORES.get(url)
    deadline = time.monotonic() + 10
    while store is None:
        try:
            store = _STORES[url] = Store(url)
        except DBAPIError:  # workers opening a new database at once race to create its tables: look again
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return store


async def run_thread(app: App, input: Mapping[str, Any] | BaseModel | None, thread: str) -> RunResult:
    """Run `thread` of `app` (which has a checkpointer) to its end, whatever happened to it before.

    A new thread runs from `input`; an unfinished one (crashed, failed) resumes from its last checkpoint, so
    nothing committed runs again; a finished or interrupted one (not by a crash) is read back and nothing runs.

    >>> result = await run_thread(graph.compile(checkpointer="sqlite:///r.db"), {"n": 1}, "b-1")  # doctest: +SKIP
    """
    cp = app.checkpointer
    if cp is None:
        raise ValueError("run_thread needs an app compiled with a checkpointer: a thread is its own record")
    info = cp.thread(thread)
    if info is None:
        return await app.arun(input, thread=thread)
    if info.status == "done" or (info.status == "interrupted" and not info.crashed):
        checkpoint = cp.latest(info.id)
        step = cp.load(checkpoint).info.step
        return RunResult(thread, "done" if info.status == "done" else "interrupted",
                         app.state(checkpoint=checkpoint), step, checkpoint)
    return await app.aresume(thread)


async def run_batch(executor: Executor, task: Callable[..., Any], inputs: Sequence[Any], threads: Sequence[str], *,
                    concurrency: int = 32) -> list[Any]:
    """`task(input, thread)` for each input, on `executor`, at most `concurrency` at a time; results in input order,
    a failed input's exception in its place (the others go on).

    `task` should be idempotent by thread (`run_thread` makes a graph run so): running the batch again, or a
    worker's call again, redoes nothing that finished.

    >>> results = await run_batch(LocalExecutor(), run_one, rows, ["b-1", "b-2"])  # doctest: +SKIP
    """
    if len(inputs) != len(threads) or len(set(threads)) != len(threads):
        raise ValueError(f"run_batch needs one distinct thread name per input ({len(inputs)} inputs, "
                         f"{len(set(threads))} distinct threads)")
    gate = asyncio.Semaphore(concurrency)

    async def one(value: Any, thread: str) -> Any:
        async with gate:
            return await executor.call(task, value, thread)

    return list(await asyncio.gather(*(one(v, t) for v, t in zip(inputs, threads, strict=True)),
                                     return_exceptions=True))


def _committed(store: Store, key: str) -> str | None:
    with store.transaction() as conn:
        found: str | None = conn.execute(select(task_results.c.data).where(task_results.c.key == key)).scalar()
    return found


async def _resolve(value: Awaitable[Any] | Any) -> Any:
    return await value if inspect.isawaitable(value) else value
