"""Checkpoints in the store: threads, per-step writes (the deltas) and occasional snapshots.

A running thread has a lease (`baobab.graphs.lease`): its status reads `interrupted` once the process
that ran it is gone, as after kill -9, and `resume` takes it over.

The state at a checkpoint is its nearest snapshot plus the writes of the steps after it, replayed
through the state's reducers; the runtime takes a snapshot once the writes since the last one
outweigh it (each delta row counting for at least ROW_COST bytes), so storage grows with what changed
and a read replays at most about one state's worth.
"""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, text, update

from baobab.graphs.errors import CheckpointError
from baobab.graphs.lease import BEATS, LEASE_TIMEOUT, Heartbeat, Owner, lost, this_process
from baobab.graphs.retention import Removed, delete_threads, prune
from baobab.store import Store
from baobab.store.schema import checkpoints, thread_leases, threads, writes

if TYPE_CHECKING:
    from baobab.graphs.state import StateSchema


@dataclass(frozen=True)
class ThreadInfo:
    """A thread: a named sequence of checkpoints and how its last run ended.

    `crashed`: the thread was running and its process is gone (killed, or no heartbeat for the lease
    timeout); its status reads `interrupted`, the detail says why, and `resume` continues it.
    """

    id: int
    name: str
    graph: str
    status: str
    detail: Any
    forked_from: int | None
    created: float
    updated: float
    crashed: bool = False
    fingerprint: str | None = None  # the state class its rows were written with (baobab.graphs.fingerprint)


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint's place: thread, step, parent (in another thread after a fork) and next nodes."""

    id: int
    thread: str
    step: int
    parent: int | None
    next: tuple[str, ...]
    created: float
    snapshot: bool


@dataclass(frozen=True)
class Write:
    """One task's output in one step: an update, an error or an interrupt (JSON text)."""

    step: int
    task: int
    node: str
    kind: str
    data: str


@dataclass(frozen=True)
class LoadedCheckpoint:
    """What it takes to rebuild a checkpoint's state: a snapshot and the update writes after it."""

    info: CheckpointInfo
    thread_id: int
    pending: dict[str, Any]
    snapshot: str
    writes: list[Write]
    chain_length: int
    snapshot_fingerprint: str | None = None  # what the snapshot's thread was written with (None: unknown)
    write_fingerprints: list[str | None] = field(default_factory=list)  # the same for each write


class Checkpointer:
    """Reads and writes checkpoints in a `Store`; every write that must not be lost is one transaction.

    `lease_timeout`: how long a run may go without a heartbeat before readers call its thread interrupted
    (`heartbeat.held(thread_id)` beats `BEATS` times as often during a run); processes sharing a store should
    agree on it.

    >>> cp = Checkpointer("sqlite://")
    >>> cp.thread("nope") is None
    True
    """

    def __init__(self, store: "Store | str | None" = None, *, lease_timeout: float = LEASE_TIMEOUT) -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        self.lease_timeout = lease_timeout
        self.heartbeat = Heartbeat(self.store, lease_timeout / BEATS)
        # the per-step statements, compiled once and run on the driver's cursor
        self._insert_write = self.store.compile(writes.insert(), _WRITE_COLUMNS)
        self._insert_checkpoint = self.store.compile(
            checkpoints.insert().returning(checkpoints.c.id),
            ["thread", "step", "parent", "pending", "snapshot", "created"])
        self._insert_thread = self.store.compile(
            threads.insert().returning(threads.c.id),
            ["name", "graph", "status", "detail", "forked_from", "created", "updated", "fingerprint"])
        self._select_thread = self.store.compile(_THREADS.where(threads.c.name == bindparam("name")))
        lease = ["host", "machine", "pid", "started", "heartbeat"]
        self._insert_lease = self.store.compile(thread_leases.insert(), ["thread", *lease])
        self._take_lease = self.store.compile(
            update(thread_leases).where(thread_leases.c.thread == bindparam("thread_id")), lease)
        self._beat = self.store.compile(update(thread_leases).where(
            thread_leases.c.thread == bindparam("thread_id")).values(heartbeat=bindparam("now")))
        self._set_status = self.store.compile(
            update(threads).where(threads.c.id == bindparam("thread_id")).values(
                status=bindparam("status"), detail=bindparam("detail"), updated=bindparam("now")))

    def create_thread(self, name: str, graph: str, *, pending: dict[str, Any], snapshot: str | None = None,
                      parent: CheckpointInfo | None = None, first_writes: Sequence[Write] = (),
                      status: str = "running", fingerprint: str | None = None) -> tuple[int, int]:
        """A new thread and its first checkpoint: at step 0 with a snapshot, or after `parent` (a fork).

        A running thread's lease is this process's from the start, so a kill before its first step shows.
        `fingerprint`: the state class its rows are written with (`StateSchema.fingerprint`).
        """
        now = time.time()
        duplicate = self.store.engine.dialect.loaded_dbapi.IntegrityError
        with self.store.raw_transaction() as cursor:
            try:  # the unique name decides, so two processes creating one thread cannot both succeed
                cursor.execute(self._insert_thread.text, self._insert_thread.params({
                    "name": name, "graph": graph, "status": status, "detail": None,
                    "forked_from": parent.id if parent else None, "created": now, "updated": now,
                    "fingerprint": fingerprint}))
            except duplicate as exc:
                raise CheckpointError(f"thread {name!r} already exists; pick another name or resume it") from exc
            thread_id = cursor.fetchone()[0]
            cursor.execute(self._insert_checkpoint.text, self._insert_checkpoint.params({
                "thread": thread_id, "step": parent.step + 1 if parent else 0, "parent": parent.id if parent else None,
                "pending": json.dumps(pending), "snapshot": snapshot, "created": now}))
            checkpoint_id = cursor.fetchone()[0]
            if status == "running":
                cursor.execute(self._insert_lease.text,
                               self._insert_lease.params({"thread": thread_id, **this_process().lease(now)}))
            if first_writes:
                cursor.executemany(self._insert_write.text,
                                   [self._insert_write.params(_write_row(thread_id, w, now)) for w in first_writes])
        return int(thread_id), int(checkpoint_id)

    def put_write(self, thread_id: int, write: Write) -> None:
        """Commit one task's output now, so a crash later in the step does not run the task again."""
        with self.store.raw_transaction() as cursor:
            row = _write_row(thread_id, write, time.time())
            cursor.execute(self._insert_write.text, self._insert_write.params(row))

    def put_checkpoint(self, thread_id: int, step: int, parent: int | None, pending: dict[str, Any],
                       snapshot: str | None, new_writes: Sequence[Write],
                       status: str | None = None, detail: Any = None) -> int:
        """Commit a step: its writes not yet committed, the checkpoint, the lease's heartbeat and, if given, the
        thread status."""
        now = time.time()
        duplicate = self.store.engine.dialect.loaded_dbapi.IntegrityError
        with self.store.raw_transaction() as cursor:
            if new_writes:
                cursor.executemany(self._insert_write.text,
                                   [self._insert_write.params(_write_row(thread_id, w, now)) for w in new_writes])
            try:  # the unique (thread, step) decides, so two processes running one thread cannot both commit a step
                cursor.execute(self._insert_checkpoint.text, self._insert_checkpoint.params({
                    "thread": thread_id, "step": step, "parent": parent, "pending": json.dumps(pending),
                    "snapshot": snapshot, "created": now}))
            except duplicate as exc:
                why = (f"thread {thread_id}: step {step} was committed by another run of this thread (two processes "
                       "resumed it at once); this run stops, the other's steps stand")
                raise CheckpointError(why) from exc
            checkpoint_id = cursor.fetchone()[0]
            cursor.execute(self._beat.text, self._beat.params({"thread_id": thread_id, "now": now}))
            if status is not None:
                cursor.execute(self._set_status.text, self._set_status.params(
                    {"thread_id": thread_id, "status": status, "detail": _json(detail), "now": now}))
        return int(checkpoint_id)

    def set_status(self, thread_id: int, status: str, detail: Any = None) -> None:
        """Record how the thread's run stands: running, interrupted, error or done."""
        with self.store.raw_transaction() as cursor:
            cursor.execute(self._set_status.text, self._set_status.params(
                {"thread_id": thread_id, "status": status, "detail": _json(detail), "now": time.time()}))

    def claim(self, thread_id: int) -> None:
        """Take the thread over for a run in this process: its status becomes running, its lease this process's.

        >>> cp.claim(cp.thread("t1").id)  # doctest: +SKIP
        """
        now = time.time()
        owner = this_process().lease(now)
        duplicate = self.store.engine.dialect.loaded_dbapi.IntegrityError
        with self.store.raw_transaction() as cursor:
            cursor.execute(self._set_status.text, self._set_status.params(
                {"thread_id": thread_id, "status": "running", "detail": None, "now": now}))
            cursor.execute(self._take_lease.text, self._take_lease.params({"thread_id": thread_id, **owner}))
            if cursor.rowcount == 0:  # a fork, or a thread stored by a Baobab without leases, has none yet
                try:
                    cursor.execute(self._insert_lease.text, self._insert_lease.params({"thread": thread_id, **owner}))
                except duplicate as exc:
                    raise CheckpointError(f"thread {thread_id} was resumed by another process at the same moment; "
                                          "this run stops, the other goes on") from exc

    def thread(self, name: str) -> ThreadInfo | None:
        """The thread called `name`, or None; a running thread whose process is gone reads `interrupted`.

        >>> Checkpointer("sqlite://").thread("t1") is None
        True
        """
        with self.store.raw_transaction() as cursor:
            cursor.execute(self._select_thread.text, self._select_thread.params({"name": name}))
            row = cursor.fetchone()
        return self._thread_info(row) if row is not None else None

    def threads(self, limit: int = 100) -> list[ThreadInfo]:
        """The most recently updated threads first; a running thread whose process is gone reads `interrupted`.

        >>> Checkpointer("sqlite://").threads()
        []
        """
        with self.store.transaction() as conn:
            rows = conn.execute(_THREADS.order_by(threads.c.updated.desc()).limit(limit)).all()
        return [self._thread_info(r) for r in rows]

    def _thread_info(self, row: Sequence[Any]) -> ThreadInfo:
        """A ThreadInfo from a row of `_THREADS` (the thread's columns in table order, then its lease's), raw or
        SQLAlchemy."""
        status, detail, why = row[3], json.loads(row[4]) if row[4] else None, None
        lease = row[len(threads.c):]
        if status == "running" and lease[0] is not None:  # without a lease (an older Baobab's run) the status stands
            why = lost(Owner(*lease[:4]), lease[4], self.lease_timeout, time.time())
        if why is not None:
            status, detail = "interrupted", {"reason": why}
        return ThreadInfo(row[0], row[1], row[2], status, detail, row[5], row[6], row[7], why is not None, row[8])

    def latest(self, thread_id: int) -> int:
        """The id of the thread's last checkpoint."""
        with self.store.transaction() as conn:
            found = conn.execute(select(checkpoints.c.id).where(checkpoints.c.thread == thread_id)
                                 .order_by(checkpoints.c.step.desc()).limit(1)).scalar()
        if found is None:
            raise CheckpointError(f"thread id {thread_id} has no checkpoint")
        return int(found)

    def step_writes(self, thread_id: int, step: int) -> list[Write]:
        """Writes already committed for a step that has no checkpoint yet (the step was cut short)."""
        with self.store.transaction() as conn:
            rows = conn.execute(select(writes.c.step, writes.c.task, writes.c.node, writes.c.kind,
                                       writes.c.data)
                                .where(writes.c.thread == thread_id, writes.c.step == step)
                                .order_by(writes.c.id)).all()
        return [Write(*r) for r in rows]

    def thread_updates(self, thread_id: int) -> list[Write]:
        """Every update write of a thread in the order it was applied (a subgraph's net effect)."""
        with self.store.transaction() as conn:
            rows = conn.execute(select(writes.c.step, writes.c.task, writes.c.node, writes.c.kind,
                                       writes.c.data)
                                .where(writes.c.thread == thread_id, writes.c.kind == "update")
                                .order_by(writes.c.step, writes.c.task)).all()
        return [Write(*r) for r in rows]

    def load(self, checkpoint_id: int) -> LoadedCheckpoint:
        """A checkpoint with its nearest snapshot and the update writes after it, in one read; with the
        fingerprints they were written with (a fork's chain runs through other threads)."""
        with self.store.transaction() as conn:
            chain = conn.execute(_CHAIN, {"id": checkpoint_id}).all()
            if not chain:
                raise CheckpointError(f"no checkpoint with id {checkpoint_id}")
            base = chain[-1]
            snapshot = conn.execute(select(checkpoints.c.snapshot).where(checkpoints.c.id == base.id)).scalar()
            rows = conn.execute(_CHAIN_WRITES, {"id": checkpoint_id}).all() if len(chain) > 1 else []
            head = conn.execute(select(checkpoints, threads.c.name, threads.c.fingerprint).join(threads)
                                .where(checkpoints.c.id == checkpoint_id)).one()
            made: dict[int, str | None] = {head.thread: head.fingerprint}
            others = {r.thread for r in chain} - {head.thread}
            if others:  # a fork's chain runs into the thread it was forked from
                made.update((i, f) for i, f in conn.execute(select(threads.c.id, threads.c.fingerprint)
                                                            .where(threads.c.id.in_(others))))
        if snapshot is None:
            raise CheckpointError(f"checkpoint {checkpoint_id}: its chain has no snapshot (damaged store)")
        pending = json.loads(head.pending)
        return LoadedCheckpoint(
            info=_checkpoint_info(head, head.name, pending), thread_id=head.thread, pending=pending,
            snapshot=snapshot, writes=[Write(r.step, r.task, r.node, "update", r.data) for r in rows],
            chain_length=len(chain) - 1, snapshot_fingerprint=made[base.thread],
            write_fingerprints=[made[r.thread] for r in rows],
        )

    def upgrade(self, info: ThreadInfo, schema: "StateSchema") -> None:
        """Bring a thread's stored states and updates to `schema`'s class and record its fingerprint, in one
        transaction (before a run goes on with it); nothing when they already match.

        Rows written under another fingerprint go through the schema's `migrate` hook; a class that cannot read
        them without one raises `StateSchemaError` naming the fields, and nothing is changed.
        """
        if info.fingerprint == schema.fingerprint:
            return
        with self.store.transaction() as conn:
            if not schema.same_fingerprint(info.fingerprint):
                old, name = info.fingerprint, info.name
                states = [{"i": i, "s": schema.load_state(t, old, name).model_dump_json()} for i, t in conn.execute(
                    select(checkpoints.c.id, checkpoints.c.snapshot)
                    .where(checkpoints.c.thread == info.id, checkpoints.c.snapshot.is_not(None))).all()]
                updates = [{"i": i, "d": schema.dump_update(schema.load_update(t, old, name))} for i, t in conn.execute(
                    select(writes.c.id, writes.c.data).where(writes.c.thread == info.id, writes.c.kind == "update")
                ).all()]
                if states:
                    conn.execute(update(checkpoints).where(checkpoints.c.id == bindparam("i"))
                                 .values(snapshot=bindparam("s")), states)
                if updates:
                    conn.execute(update(writes).where(writes.c.id == bindparam("i")).values(data=bindparam("d")),
                                 updates)
            conn.execute(update(threads).where(threads.c.id == info.id).values(fingerprint=schema.fingerprint))

    def prune(self, thread: str | Sequence[str] | None = None, *, keep_last: int | None = None,
              older_than: float | timedelta | None = None) -> Removed:
        """Delete old checkpoints (with their writes and snapshots) of `thread`s (default: all), in one transaction.

        Per thread it keeps the last checkpoint, the last `keep_last`, those newer than `older_than` (seconds or a
        timedelta), what forks and stored graph searches refer to, and what each kept one needs to load to the same
        state (see `baobab.graphs.retention`). Named threads bring their subgraph threads and branches.

        >>> Checkpointer("sqlite://").prune(keep_last=10).checkpoints
        0
        """
        names = [thread] if isinstance(thread, str) else thread
        return prune(self.store, names, keep_last=keep_last, older_than=older_than)

    def delete_thread(self, name: str, *others: str) -> Removed:
        """Delete threads with all their checkpoints, writes and spans, and their subgraph threads and lookahead
        branches (`name/...`, `name~...`), in one transaction.

        Refused with a CheckpointError naming them when other threads were forked from these, a stored search
        refers to their checkpoints, or one of them is running.

        >>> cp.delete_thread("t1").checkpoints  # doctest: +SKIP
        12
        """
        return delete_threads(self.store, [name, *others], lease_timeout=self.lease_timeout)

    def history(self, thread_id: int, thread_name: str) -> list[CheckpointInfo]:
        """The thread's checkpoints, newest first."""
        with self.store.transaction() as conn:
            rows = conn.execute(select(checkpoints).where(checkpoints.c.thread == thread_id)
                                .order_by(checkpoints.c.step.desc())).all()
        return [_checkpoint_info(r, thread_name, json.loads(r.pending)) for r in rows]


# A thread and its lease, if it has one.
_THREADS = select(threads, *(c for c in thread_leases.c if c.name != "thread")).select_from(
    threads.outerjoin(thread_leases))
# Walk parent links from a checkpoint back to the nearest one holding a snapshot (forks included).
_CHAIN_CTE = """
WITH RECURSIVE chain(id, thread, step, parent, has_snapshot, depth) AS (
  SELECT id, thread, step, parent, snapshot IS NOT NULL, 0 FROM checkpoints WHERE id = :id
  UNION ALL
  SELECT c.id, c.thread, c.step, c.parent, c.snapshot IS NOT NULL, chain.depth + 1
  FROM checkpoints c JOIN chain ON c.id = chain.parent WHERE NOT chain.has_snapshot
)
"""
_CHAIN = text(_CHAIN_CTE + "SELECT id, thread, depth FROM chain ORDER BY depth")
# The update writes of every checkpoint after the snapshot, oldest step first.
_CHAIN_WRITES = text(_CHAIN_CTE + """
SELECT w.step, w.task, w.node, w.data, w.thread FROM writes w
JOIN chain ON w.thread = chain.thread AND w.step = chain.step
WHERE w.kind = 'update' AND NOT chain.has_snapshot
ORDER BY chain.depth DESC, w.task, w.id
""")


def _json(detail: Any) -> str | None:
    return None if detail is None else json.dumps(detail, default=repr)


_WRITE_COLUMNS = ["thread", "step", "task", "node", "kind", "data", "created"]


def _write_row(thread_id: int, write: Write, now: float) -> dict[str, Any]:
    return {"thread": thread_id, "step": write.step, "task": write.task, "node": write.node,
            "kind": write.kind, "data": write.data, "created": now}


def _checkpoint_info(row: Any, thread_name: str, pending: dict[str, Any]) -> CheckpointInfo:
    return CheckpointInfo(row.id, thread_name, row.step, row.parent,
                          tuple(t[0] for t in pending.get("tasks", [])), row.created, row.snapshot is not None)
