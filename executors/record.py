"""Results that outlive a call: a `Record` names where a call's JSON result is committed, once.

A call given a `Record` commits its result under a unique key: when it runs again (Ray retries the calls of a
worker that died) it reads the committed result back instead of running, so a worker that dies loses no
committed work and none is duplicated.

>>> import asyncio
>>> store = Store("sqlite://")
>>> asyncio.run(once(store, "k", lambda: [1, 2]))
[1, 2]
"""

import hashlib
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from baobab.store import Store
from baobab.store.schema import task_results


@dataclass(frozen=True)
class Record:
    """Where a call's result is kept: the store at `url` (one every worker can open), under the unique `key`.

    >>> Record("sqlite:////tmp/runs.db", "search:demo:expand:7").key
    'search:demo:expand:7'
    """

    url: str
    key: str


async def called(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`, awaited if it returns an awaitable (executors take plain and async functions alike).

    >>> import asyncio
    >>> asyncio.run(called(pow, 2, 10))
    1024
    """
    value: Awaitable[Any] | Any = fn(*args)
    return await value if inspect.isawaitable(value) else value


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
    text = json.dumps(await called(fn, *args))
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
    """The store at `url`, opened once per process (a worker's connections outlive its calls, nothing else does).

    >>> open_store("sqlite://") is open_store("sqlite://")
    True
    """
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


def _committed(store: Store, key: str) -> str | None:
    with store.transaction() as conn:
        found: str | None = conn.execute(select(task_results.c.data).where(task_results.c.key == key)).scalar()
    return found
