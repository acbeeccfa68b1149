"""`RayExecutor`: calls on a pool of Ray actors (worker processes, on this machine or across a cluster).

Ray is imported only when an executor is made (`pip install 'baobab[ray]'`). Each worker is an async actor
that runs up to `concurrency` calls at once in its event loop (calls mostly wait on models), and keeps
nothing between calls but open store connections. A worker that dies is restarted by Ray and its calls
in flight are retried (`max_retries`); a call with a `Record` then reads back the result its earlier attempt
committed, if it got that far.
"""

import functools
import os
from collections.abc import Callable
from typing import Any

from baobab.graphs.executor import Record, _resolve, once, open_store


class _Worker:
    """One worker process: runs calls, holds no state between them (store connections aside)."""

    async def call(self, fn: Callable[..., Any], args: tuple[Any, ...], record: Record | None) -> Any:
        if record is None:
            return await _resolve(fn(*args))
        return await once(open_store(record.url), record.key, fn, *args)

    async def pid(self) -> int:
        return os.getpid()


class RayExecutor:
    """Calls on `workers` Ray actors, each running up to `concurrency` calls at once; the least busy gets the next.

    With `address` ("ray://host:10001", "host:6379" or "auto") it joins that cluster; else it uses the Ray
    this process already started, or starts a local one bound to 127.0.0.1 (and stops it in `aclose`).
    `max_retries`: how often a call is retried when its worker dies; `num_cpus`: the CPUs each worker
    reserves (workers spread over the cluster's nodes); `runtime_env`: Ray's, for the workers (e.g. pip packages).

    >>> ex = RayExecutor(workers=2)  # doctest: +SKIP
    >>> await ex.call(pow, 2, 10)  # doctest: +SKIP
    1024
    """

    local = False

    def __init__(self, address: str | None = None, *, workers: int = 2, concurrency: int = 64, max_retries: int = 3,
                 num_cpus: float = 1.0, runtime_env: dict[str, Any] | None = None) -> None:
        if workers < 1 or concurrency < 1 or max_retries < 0:
            raise ValueError(f"RayExecutor needs workers >= 1, concurrency >= 1 and max_retries >= 0, got "
                             f"{workers=} {concurrency=} {max_retries=}")
        import ray

        self.owned = not ray.is_initialized()
        if self.owned:
            local: dict[str, Any] = {} if address else {"_node_ip_address": "127.0.0.1", "include_dashboard": False}
            ray.init(address=address, log_to_driver=False, **local)
        cpus = ray.cluster_resources().get("CPU", 0.0)
        if workers * num_cpus > cpus:  # Ray would wait forever for the CPUs of the workers it cannot place
            if self.owned:
                ray.shutdown()
            raise ValueError(f"{workers} workers of num_cpus={num_cpus} need {workers * num_cpus:g} CPUs, but the Ray "
                             f"cluster has {cpus:g}: give fewer workers or a smaller num_cpus")
        actor = _actor_class().options(
            max_restarts=-1, max_task_retries=max_retries, max_concurrency=concurrency, num_cpus=num_cpus,
            scheduling_strategy="SPREAD", runtime_env=runtime_env)
        self.workers = [actor.remote() for _ in range(workers)]
        self.busy = [0] * workers  # calls in flight per worker

    async def call(self, fn: Callable[..., Any], *args: Any, record: Record | None = None) -> Any:
        """`fn(*args)` on the least busy worker; with `record`, its JSON result committed once under the key."""
        i = min(range(len(self.workers)), key=self.busy.__getitem__)
        self.busy[i] += 1
        try:
            return await self.workers[i].call.remote(fn, args, record)
        finally:
            self.busy[i] -= 1

    async def pids(self) -> list[int]:
        """The workers' process ids, once each is up (a restarted worker has a new one).

        >>> await RayExecutor(workers=2).pids()  # doctest: +SKIP
        [4242, 4243]
        """
        return [await worker.pid.remote() for worker in self.workers]

    async def aclose(self) -> None:
        """Stop the workers, and the local Ray if this executor started it."""
        import ray

        for worker in self.workers:
            ray.kill(worker)
        self.workers.clear()
        if self.owned:
            ray.shutdown()


@functools.cache
def _actor_class() -> Any:
    import ray

    return ray.remote(_Worker)
