"""Checkpoint retention: prune threads' old checkpoints, delete threads; what others refer to stays.

Each prune or delete is one transaction, on SQLite (holding the write lock from its first read) or PostgreSQL.

`prune` keeps, per thread: its last checkpoint (a running thread's commits follow it), the last `keep_last`, those
newer than `older_than`, every checkpoint another thread was forked from, and those a stored graph search refers
to with the earlier ones of their thread (a search reads a fork's updates back). A kept checkpoint still loads to
the same state: a state is the nearest snapshot plus the writes after it, so prune also keeps the checkpoints back
to each kept one's snapshot. Writing a new snapshot instead would need the state class, which `baobab threads
prune` does not have, and would save less than one snapshot's worth per thread: the runtime takes a snapshot once
the writes since the last one outweigh it. Subgraph threads (`parent/node:step.task`) and lookahead branches
(`parent~step.node.id`) are left whole, since a resumed parent step reads all of a subgraph's updates back.

`delete_threads` removes threads with their checkpoints, writes, leases and spans, and with them every thread named
`name/...` or `name~...` (subgraph threads, lookahead branches, a graph search's forks). It refuses, naming them,
when other threads were forked from them or a stored search refers to their checkpoints (delete those together,
or first), or one of them is running in a live process.
"""

import json
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from baobab.graphs.errors import CheckpointError
from baobab.graphs.lease import Owner, lost
from baobab.store import Store
from baobab.store.schema import checkpoints, search_nodes, search_runs, spans, thread_leases, threads, writes
from baobab.store.trace import tracer_for

_OWNED = re.compile(r"/[^/~]+:\d+\.\d+$|~\d+\.[^/~]+\.[0-9a-f]{6}$")  # a subgraph thread or a lookahead branch
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_CHUNK = 500  # ids per IN (...): well under SQLite's and PostgreSQL's parameter limits


@dataclass(frozen=True)
class Removed:
    """What a prune or delete took out: the threads deleted (or pruned of something), their checkpoints and writes,
    the characters of JSON those held, and the checkpoints a prune kept in the threads it looked at."""

    threads: tuple[str, ...]
    checkpoints: int
    writes: int
    bytes: int
    kept: int = 0


def duration(text: str) -> float:
    """Seconds in a duration: a number and a unit (s, m, h, d, w), or several (`1d12h`).

    >>> duration("7d"), duration("1h30m"), duration("45s")
    (604800.0, 5400.0, 45.0)
    """
    if not re.fullmatch(r"(\d+(\.\d+)?[smhdw])+", text.strip()):
        raise CheckpointError(f"bad duration {text!r}: expected a number and a unit (s, m, h, d, w), e.g. 7d, 12h, "
                              "30m or 1d12h")
    return sum(float(n) * _UNITS[unit] for n, _, unit in re.findall(r"(\d+(\.\d+)?)([smhdw])", text))


def prune(store: Store, names: Sequence[str] | None = None, *, keep_last: int | None = None,
          older_than: float | timedelta | None = None) -> Removed:
    """Delete the checkpoints of the named threads (default: all) that the rules above do not keep.

    >>> prune(Store("sqlite://"), keep_last=3)
    Removed(threads=(), checkpoints=0, writes=0, bytes=0, kept=0)
    """
    age = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
    if keep_last is None and age is None:
        raise CheckpointError("prune needs keep_last (checkpoints per thread) or older_than (an age), or both")
    if keep_last is not None and keep_last < 1:
        raise CheckpointError(f"keep_last must be at least 1 (a thread's last checkpoint is its state), "
                              f"not {keep_last}")
    if age is not None and age < 0:
        raise CheckpointError(f"older_than must be an age of 0 s or more, not {age}")
    cutoff = time.time() - age if age is not None else None
    with _transaction(store) as conn:
        chosen = {i: n for i, n in (_family(conn, store, names) if names is not None else _all(conn)).items()
                  if not _OWNED.search(n)}
        pinned, searched = _forked_from(conn), set(_searched(conn))
        by_thread: dict[int, list[Any]] = {}
        for chunk in _chunks(sorted(chosen)):
            for row in conn.execute(select(
                    checkpoints.c.id, checkpoints.c.thread, checkpoints.c.step, checkpoints.c.parent,
                    checkpoints.c.snapshot.is_not(None).label("snapshot"), checkpoints.c.created,
                    (func.length(checkpoints.c.pending) + func.coalesce(func.length(checkpoints.c.snapshot), 0))
                    .label("size")).where(checkpoints.c.thread.in_(chunk)).order_by(checkpoints.c.step.desc())):
                by_thread.setdefault(row.thread, []).append(row)
        gone: list[Any] = []
        orphans: list[int] = []
        spans_of: dict[int, list[tuple[int, int]]] = {}
        for thread, rows in by_thread.items():
            kept = _kept(rows, keep_last, cutoff, pinned, searched)
            gone += [r for r in rows if r.id not in kept]
            ids = {r.id for r in rows}
            orphans += [r.id for r in rows if r.id in kept and r.parent in ids and r.parent not in kept]
            spans_of[thread] = _spans([r.step for r in reversed(rows)], {r.step for r in rows if r.id in kept})
        removed_writes, size = _delete_writes(conn, spans_of)
        _delete_checkpoints(conn, [r.id for r in gone], orphans)
    pruned = tuple(sorted({chosen[r.thread] for r in gone}))
    total = sum(len(rows) for rows in by_thread.values())
    return Removed(pruned, len(gone), removed_writes, size + sum(r.size for r in gone), total - len(gone))


def delete_threads(store: Store, names: Sequence[str], *, lease_timeout: float) -> Removed:
    """Delete the named threads and the threads they own, or refuse naming what depends on them.

    >>> delete_threads(Store("sqlite://"), ["nope"], lease_timeout=60.0)
    Traceback (most recent call last):
    baobab.graphs.errors.CheckpointError: no thread named 'nope' in sqlite://
    """
    tracer_for(store).flush()  # the spans this process has queued for them are written first, so they go too
    with _transaction(store) as conn:
        family = _family(conn, store, names)
        ids = sorted(family)
        own = [c for chunk in _chunks(ids) for c in conn.execute(
            select(checkpoints.c.id).where(checkpoints.c.thread.in_(chunk))).scalars()]
        _refuse_if_needed(conn, family, set(own), lease_timeout)
        spans_of = {thread: [(-1, 2**31 - 1)] for thread in ids}  # every step (an INTEGER column)
        removed_writes, size = _delete_writes(conn, spans_of)
        for chunk in _chunks(own):
            size += conn.execute(select(func.coalesce(func.sum(func.length(checkpoints.c.pending) + func.coalesce(
                func.length(checkpoints.c.snapshot), 0)), 0)).where(checkpoints.c.id.in_(chunk))).scalar_one()
        _delete_checkpoints(conn, own)
        runs = [f"thread:{name}" for name in family.values()]
        for chunk in _chunks(runs):
            conn.execute(delete(spans).where(spans.c.run.in_(chunk)))
        for chunk in _chunks(ids):
            conn.execute(delete(thread_leases).where(thread_leases.c.thread.in_(chunk)))
            conn.execute(delete(threads).where(threads.c.id.in_(chunk)))
    return Removed(tuple(sorted(family.values())), len(own), removed_writes, int(size))


def _kept(rows: list[Any], keep_last: int | None, cutoff: float | None, pinned: set[int],
          searched: set[int]) -> set[int]:
    """The ids of one thread's checkpoints (`rows`, newest first) that prune keeps."""
    kept = {rows[0].id}
    for rank, row in enumerate(rows):
        if (keep_last is not None and rank < keep_last) or (cutoff is not None and row.created >= cutoff) or (
                row.id in pinned):
            kept.add(row.id)
    deepest = max((r.step for r in rows if r.id in searched), default=None)
    kept.update(r.id for r in rows if deepest is not None and r.step <= deepest)
    ids = {r.id for r in rows}
    for row in rows:  # newest first: a child comes before its parent, so one pass keeps whole chains
        if row.id in kept and not row.snapshot and row.parent in ids:
            kept.add(row.parent)
    return kept


def _spans(steps: list[int], kept: set[int]) -> list[tuple[int, int]]:
    """The step ranges (after, up to] whose writes go: a write belongs to the first checkpoint at or after its step.

    >>> _spans([0, 1, 2, 3, 5], {0, 3, 5})
    [(0, 2)]
    """
    found: list[tuple[int, int]] = []
    before = -1
    for step in steps:
        if step in kept:
            pass
        elif found and found[-1][1] == before:  # the checkpoint before went too: one range
            found[-1] = (found[-1][0], step)
        else:
            found.append((before, step))
        before = step
    return found


def _delete_writes(conn: Connection, spans_of: dict[int, list[tuple[int, int]]]) -> tuple[int, int]:
    """Delete each thread's writes in its step ranges; how many went and their characters."""
    count = size = 0
    for thread, ranges in spans_of.items():
        for after, upto in ranges:
            where = (writes.c.thread == thread, writes.c.step > after, writes.c.step <= upto)
            found = conn.execute(select(func.count(), func.coalesce(func.sum(func.length(writes.c.data)), 0))
                                 .where(*where)).one()
            if found[0]:
                conn.execute(delete(writes).where(*where))
                count, size = count + int(found[0]), size + int(found[1])
    return count, size


def _delete_checkpoints(conn: Connection, ids: list[int], orphans: Sequence[int] = ()) -> None:
    """Delete checkpoints, newest first (a child's id is above its parent's); `orphans`, kept checkpoints whose
    parent goes (each has a snapshot of its own), lose the link first."""
    for chunk in _chunks(orphans):
        conn.execute(update(checkpoints).where(checkpoints.c.id.in_(chunk)).values(parent=None))
    for chunk in _chunks(sorted(ids, reverse=True)):
        conn.execute(delete(checkpoints).where(checkpoints.c.id.in_(chunk)))


def _refuse_if_needed(conn: Connection, family: dict[int, str], own: set[int], lease_timeout: float) -> None:
    """A CheckpointError naming the threads forked from `own`, the searches that refer to it, and live runs."""
    forks = {n for i, n, parent in conn.execute(select(threads.c.id, threads.c.name, threads.c.forked_from)
                                                .where(threads.c.forked_from.is_not(None)))
             if parent in own and i not in family}
    searches = sorted({run for checkpoint, runs in _searched(conn).items() if checkpoint in own for run in runs})
    live = []
    now = time.time()
    for thread, *lease in conn.execute(select(
            threads.c.id, thread_leases.c.host, thread_leases.c.machine, thread_leases.c.pid,
            thread_leases.c.started, thread_leases.c.heartbeat).join(thread_leases)
            .where(threads.c.status == "running")):
        if thread in family and lost(Owner(*lease[:4]), lease[4], lease_timeout, now) is None:
            live.append(f"{family[thread]!r} is running in process {lease[2]} on {lease[0]} (let it end, or kill it)")
    why = ([f"threads {sorted(forks)} were forked from them (delete those too, or first)"] if forks else []) + (
        [f"search runs {searches} refer to their checkpoints"] if searches else []) + live
    if why:
        raise CheckpointError(f"cannot delete {sorted(family.values())}: {'; '.join(why)}")


@contextmanager
def _transaction(store: Store) -> Iterator[Connection]:
    """One transaction; on SQLite it takes the write lock before reading, so no commit lands between its reads and
    its deletes. A fork made meanwhile on PostgreSQL makes it fail rather than lose the fork's parent."""
    try:
        with store.transaction() as conn:
            if store.dialect == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
    except IntegrityError as exc:
        raise CheckpointError(f"the threads changed while removing ({exc.orig}): a fork from a checkpoint being "
                              "removed? Nothing was removed; try again") from exc


def _all(conn: Connection) -> dict[int, str]:
    return {int(i): str(n) for i, n in conn.execute(select(threads.c.id, threads.c.name))}


def _family(conn: Connection, store: Store, names: Sequence[str]) -> dict[int, str]:
    """The named threads and the threads they own (`name/...`, `name~...`), by id; unknown names are an error."""
    found: dict[int, str] = {}
    unknown = []
    for name in names:
        rows = conn.execute(select(threads.c.id, threads.c.name).where(or_(
            threads.c.name == name, threads.c.name.startswith(f"{name}/", autoescape=True),
            threads.c.name.startswith(f"{name}~", autoescape=True)))).all()
        if name not in {n for _, n in rows}:
            unknown.append(name)
        found.update({int(i): str(n) for i, n in rows})
    if unknown:
        raise CheckpointError(f"no thread named {', '.join(map(repr, unknown))} in {store.safe_url}")
    return found


def _forked_from(conn: Connection) -> set[int]:
    """Checkpoints other threads start from (the parent of a fork's first checkpoint: the only link across threads)."""
    return set(conn.execute(select(threads.c.forked_from).where(threads.c.forked_from.is_not(None))).scalars())


def _searched(conn: Connection) -> dict[int, set[str]]:
    """Checkpoint ids that stored graph searches refer to (node states and actions), with the searches' names;
    a search recorded before the `states` column counts as a graph search."""
    found: dict[int, set[str]] = {}
    for name, data in conn.execute(select(search_runs.c.name, search_nodes.c.data).join(search_nodes).where(
            or_(search_runs.c.states == "checkpoints", search_runs.c.states.is_(None)))):
        node = json.loads(data)
        for value in (node.get("state"), node.get("action")):
            if isinstance(value, int) and not isinstance(value, bool):
                found.setdefault(value, set()).add(name)
    return found


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]
