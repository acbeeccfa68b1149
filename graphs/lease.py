"""Thread leases: which process runs a thread, so that a reader tells a live run from one whose process died.

A run records its owner (host, pid, the process's start time, and where that pid means that process: the
boot id and pid namespace) when it starts or resumes a thread, and refreshes a heartbeat at each committed
step and every `lease_timeout / BEATS` seconds in between (a long step). A reader on the owner's machine
sees a death at once (the pid is gone, or is another process); anywhere (Ray workers sharing PostgreSQL,
a stopped or hung process) a lease whose heartbeat is older than `lease_timeout` is lost.
"""

import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.pool import StaticPool

from baobab.store import Store
from baobab.store.schema import thread_leases

LEASE_TIMEOUT = 60.0  # seconds without a heartbeat after which a run counts as dead
BEATS = 6  # heartbeats per lease timeout: a few may be late or lost before a live run looks dead


@dataclass(frozen=True)
class Owner:
    """A process that runs threads: its host, where its pid means it (None: nowhere known), pid, start time."""

    host: str
    machine: str | None
    pid: int
    started: int | None

    def lease(self, now: float) -> dict[str, Any]:
        """The `thread_leases` values that make this process the owner, last seen alive at `now`.

        >>> sorted(this_process().lease(0.0))
        ['heartbeat', 'host', 'machine', 'pid', 'started']
        """
        return {**asdict(self), "heartbeat": now}


def this_process() -> Owner:
    """The running process as a lease owner.

    >>> this_process().pid == os.getpid()
    True
    """
    return _owner(os.getpid())  # keyed by pid: a forked child (a worker) is another owner


@cache
def _owner(pid: int) -> Owner:
    return Owner(socket.gethostname(), _machine(), pid, _start_time(pid))


def lost(owner: Owner, heartbeat: float, timeout: float, now: float) -> str | None:
    """Why the run of `owner`, last seen alive at `heartbeat`, is over; None while it may still be running.

    >>> lost(this_process(), time.time(), 60.0, time.time()) is None
    True
    >>> lost(Owner("elsewhere", None, 7, None), 0.0, 60.0, 100.0)
    'no heartbeat from process 7 on elsewhere for 100 s'
    """
    here = this_process()
    # on the owner's machine a death shows at once: the pid is gone, or now names another process
    if (owner.machine is not None and (owner.host, owner.machine) == (here.host, here.machine)
            and _start_time(owner.pid) != owner.started):
        return f"process {owner.pid} on {owner.host} has ended"
    if now - heartbeat > timeout:
        return f"no heartbeat from process {owner.pid} on {owner.host} for {now - heartbeat:.0f} s"
    return None


def _machine() -> str | None:
    """The boot id and pid namespace (Linux): processes that share them see the same pids; None elsewhere."""
    try:
        return f"{Path('/proc/sys/kernel/random/boot_id').read_text().strip()}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def _start_time(pid: int) -> int | None:
    """When process `pid` started, in clock ticks after boot; None when there is none (a zombie has ended too)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces and parentheses
    return None if fields[0] in ("Z", "X") else int(fields[19])  # fields 3 (state) and 22 (starttime) of proc(5)


class Heartbeat:
    """Refreshes, from a daemon thread, the heartbeats of the threads this process runs in one store.

    The thread runs while a lease is held and beats every `period` seconds, one statement for all of them; it
    ends as the last lease is let go.

    >>> beat = Heartbeat(Store("sqlite://"), 10.0)
    >>> with beat.held(1):
    ...     pass
    """

    def __init__(self, store: Store, period: float) -> None:
        self.store = store
        self.period = period
        self._held: Counter[int] = Counter()  # thread id -> runs holding it
        self._changed = threading.Condition()
        self._beating = False
        self._statement = (update(thread_leases).where(thread_leases.c.thread.in_(bindparam("ids", expanding=True)))
                           .values(heartbeat=bindparam("now")))
        # in-memory SQLite: one connection that a second writer would share mid-transaction; no other process reads it
        self._enabled = not isinstance(store.engine.pool, StaticPool)

    @contextmanager
    def held(self, thread_id: int) -> Iterator[None]:
        """Keep the lease of `thread_id` beating while the block runs."""
        with self._changed:
            self._held[thread_id] += 1
            start = self._enabled and not self._beating
            self._beating = self._beating or start
        if start:
            threading.Thread(target=self._beat, name="baobab-heartbeat", daemon=True).start()
        try:
            yield
        finally:
            with self._changed:
                self._held[thread_id] -= 1
                if not self._held[thread_id]:
                    del self._held[thread_id]
                if not self._held:
                    self._changed.notify()

    def _beat(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: not self._held, self.period)  # woken early when the last lease goes
                ids = list(self._held)
                if not ids:
                    self._beating = False
                    return
            try:
                with self.store.transaction() as conn:
                    conn.execute(self._statement, {"ids": ids, "now": time.time()})
            except Exception:  # a missed beat (a locked database) is tried again; the run's commits report failures
                continue
