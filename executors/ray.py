"""`RayExecutor`: calls on a pool of Ray actors (worker processes, on this machine or across a cluster).

Ray is imported only when an executor is made (`pip install 'baobab[ray]'`). Each worker is an async actor
that runs up to `concurrency` calls at once in its event loop (calls mostly wait on models), and keeps
nothing between calls but open store connections. A worker that dies is restarted by Ray and its calls
in flight are retried (`max_retries`); a call with a `Record` then reads back the result its earlier attempt
committed, if it got that far.
"""

import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from baobab.executors.record import Record, called, once, open_store

# shared/scripts/ray_env.sh's settings: no usage stats, no auth token, the node on 127.0.0.1
LOOPBACK_SETTINGS = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
                     "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


class _Worker:
    """One worker process: runs calls, holds no state between them (store connections aside)."""

    async def call(self, fn: Callable[..., Any], args: tuple[Any, ...], record: Record | None) -> Any:
        if record is None:
            return await called(fn, *args)
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
        self.home: str | None = None  # the HOME a local Ray started with (see _start_local)
        if address is None and "ray" not in sys.modules:  # Ray reads these when imported (and its processes too)
            os.environ.update(LOOPBACK_SETTINGS)
        import ray

        self.owned = not ray.is_initialized()
        if self.owned and address:
            ray.init(address=address, log_to_driver=False)
        elif self.owned:
            if any(os.environ.get(k) != v for k, v in LOOPBACK_SETTINGS.items()):
                raise RuntimeError("ray was imported before RayExecutor could keep a local Ray on loopback (it binds "
                                   "to the machine's address otherwise): give an address, call ray.init yourself, or "
                                   f"set {' '.join(f'{k}={v}' for k, v in LOOPBACK_SETTINGS.items())} before importing "
                                   "ray")
            self.home = _start_local()
        cpus = float(ray.cluster_resources().get("CPU", 0.0))  # type: ignore[no-untyped-call]
        if workers * num_cpus > cpus:  # Ray would wait forever for the CPUs of the workers it cannot place
            self._stop_owned()
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
        self._stop_owned()

    def _stop_owned(self) -> None:
        """Stop the local Ray this executor started, if it did."""
        import ray

        if self.owned:
            ray.shutdown()
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)


def _start_local() -> str:
    """Start a Ray on this machine that talks over loopback only, as shared/scripts/ray_env.sh sets it up: the node
    on 127.0.0.1, no dashboard, no usage stats, and no cloud-metadata probe (Ray skips it when HOME holds a
    ray_bootstrap_config.yaml; HOME is changed only while Ray's processes start). Returns that HOME folder."""
    import ray

    home = tempfile.mkdtemp(prefix="baobab-ray-home.")
    Path(home, "ray_bootstrap_config.yaml").write_text("{}\n")
    saved, os.environ["HOME"] = os.environ.get("HOME"), home
    try:
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    finally:
        if saved is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = saved
    return home


@functools.cache
def _actor_class() -> Any:
    import ray

    return ray.remote(_Worker)
