"""Graph runs through an executor: `run_thread` runs a thread to its end once, `run_batch` many calls at a time.

Graph runs need no `Record`: a thread is its own record (`run_thread` runs a new thread, resumes an unfinished
one from its last checkpoint, reads a finished one back), so a call retried on another worker redoes nothing.

>>> results = await run_batch(LocalExecutor(), run_one, rows, ["b-1", "b-2"])  # doctest: +SKIP
"""

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from baobab.executors import Executor
from baobab.graphs.events import RunResult
from baobab.graphs.runtime import App


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
