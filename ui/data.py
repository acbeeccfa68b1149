"""What the trace viewer shows, read from the store as JSON-ready dicts: runs, threads, states, searches, forks.

Every function here answers one API path of the viewer (`ui/app.py` serves them, `ui/export.py` inlines
them), so the live app and an exported file show the same thing.
"""

import json
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from baobab.errors import BaobabError
from baobab.graphs import App, Checkpointer
from baobab.graphs.checkpoint import LoadedCheckpoint, Write
from baobab.search.persist import read_run
from baobab.store import Store
from baobab.store.schema import checkpoints, search_nodes, search_runs, spans, threads, writes
from baobab.store.trace import FLUSH_SECONDS, tracer_for

STATIC = Path(__file__).parent / "static"  # the page and its scripts, served by app.py and inlined by export.py
Apps = Mapping[str, App]  # compiled graphs by graph name: exact state replay and validated fork updates
MAX_ID = 2**63 - 1  # ids are 64-bit SQL integers: a larger number names nothing (and SQLite cannot bind it)


class NotFound(BaobabError, LookupError):
    """The thread, checkpoint, search or run asked for is not in the store."""


def runs(store: Store, limit: int = 500) -> dict[str, Any]:
    """Threads, searches and agent runs, most recently updated first.

    >>> runs(Store("sqlite://"))
    {'threads': [], 'searches': [], 'traces': []}
    """
    with store.transaction() as conn:
        steps = (select(checkpoints.c.thread, func.max(checkpoints.c.step).label("steps"))
                 .group_by(checkpoints.c.thread).subquery())
        thread_rows = conn.execute(
            select(threads.c.name, threads.c.graph, threads.c.status, threads.c.forked_from, threads.c.updated,
                   steps.c.steps).join(steps, steps.c.thread == threads.c.id, isouter=True)
            .order_by(threads.c.updated.desc()).limit(limit)).mappings().all()
        size = (select(search_nodes.c.run, func.count().label("nodes")).group_by(search_nodes.c.run).subquery())
        search_rows = conn.execute(
            select(search_runs.c.name, search_runs.c.strategy, search_runs.c.status, search_runs.c.updated,
                   size.c.nodes).join(size, size.c.run == search_runs.c.id, isouter=True)
            .order_by(search_runs.c.updated.desc()).limit(limit)).mappings().all()
        trace_rows = conn.execute(
            select(spans.c.run, spans.c.name, spans.c.status, spans.c.started, spans.c.ended)
            .where(spans.c.run.like("agent:%"), spans.c.parent.is_(None))
            .order_by(spans.c.started.desc()).limit(limit)).mappings().all()
    return {"threads": [dict(r) for r in thread_rows], "searches": [dict(r) for r in search_rows],
            "traces": [dict(r) for r in trace_rows]}


def run_spans(store: Store, run: str) -> list[dict[str, Any]]:
    """Every span of `run` (`thread:NAME`, `search:NAME`, `agent:ID`), oldest first, attributes parsed."""
    tracer_for(store).flush()  # spans this process recorded and has not written yet
    with store.transaction() as conn:
        rows = conn.execute(select(spans).where(spans.c.run == run).order_by(spans.c.started)).mappings().all()
    return [{**r, "attrs": json.loads(r["attrs"])} for r in rows]


def thread(store: Store, name: str) -> dict[str, Any]:
    """A thread: its status, graph (as last recorded), checkpoints, writes (node outputs) and spans;
    `settled` once its last update is old enough that the spans of its run have been written."""
    cp = Checkpointer(store)
    info = cp.thread(name)
    if info is None:
        raise NotFound(f"no thread named {name!r}")
    with store.transaction() as conn:
        rows = conn.execute(select(writes.c.step, writes.c.task, writes.c.node, writes.c.kind, writes.c.data)
                            .where(writes.c.thread == info.id).order_by(writes.c.step, writes.c.task, writes.c.id)
                            ).mappings().all()
    traced = run_spans(store, f"thread:{name}")
    graph = next((s["attrs"]["graph"] for s in reversed(traced) if s["kind"] == "run"), None)
    history = sorted(cp.history(info.id, info.name), key=lambda c: c.step)
    return {
        "name": info.name, "graph_name": info.graph, "status": info.status, "detail": info.detail,
        "forked_from": info.forked_from, "created": info.created, "updated": info.updated, "graph": graph,
        "checkpoints": [{"id": c.id, "step": c.step, "parent": c.parent, "next": list(c.next),
                         "created": c.created} for c in history],
        "writes": [{**w, "data": json.loads(w["data"])} for w in rows],
        "spans": traced, "settled": time.time() - info.updated > 4 * FLUSH_SECONDS,  # its last spans written
    }


def state(store: Store, checkpoint: int, apps: Apps | None = None) -> dict[str, Any]:
    """The state at `checkpoint` as JSON: replayed by the graph's App when given, else by the reducers'
    names recorded with the run (append and merge; any other reducer replaces, and `exact` says so)."""
    cp = Checkpointer(store)
    loaded = _load(cp, checkpoint)
    info = cp.thread(loaded.info.thread)
    app = (apps or {}).get(info.graph) if info is not None else None
    if app is not None:
        values = app.with_checkpointer(cp).state(checkpoint=checkpoint).model_dump(mode="json")
        return {"checkpoint": checkpoint, "step": loaded.info.step, "state": values, "exact": True}
    spans_ = run_spans(store, f"thread:{loaded.info.thread}")
    graph: dict[str, Any] = next((s["attrs"]["graph"] for s in reversed(spans_) if s["kind"] == "run"), {})
    reducers: dict[str, str] = graph.get("reducers", {})
    values = json.loads(loaded.snapshot)
    for write in loaded.writes:
        for key, value in json.loads(write.data).items():
            kind = reducers.get(key)
            if kind == "append" and isinstance(value, list):
                values[key] = [*values.get(key, []), *value]
            elif kind == "merge" and isinstance(value, dict):
                values[key] = {**values.get(key, {}), **value}
            else:
                values[key] = value
    exact = all(r in ("append", "merge") for r in reducers.values())
    return {"checkpoint": checkpoint, "step": loaded.info.step, "state": values, "exact": exact}


def _load(cp: Checkpointer, checkpoint: int) -> LoadedCheckpoint:
    """Checkpoint `checkpoint` from `cp`, or NotFound naming it."""
    if not 0 <= checkpoint <= MAX_ID:
        raise NotFound(f"no checkpoint with id {checkpoint}")
    try:
        return cp.load(checkpoint)
    except Exception as exc:
        raise NotFound(str(exc)) from exc


def fork(store: Store, checkpoint: int, update: dict[str, Any] | None = None, name: str | None = None,
         apps: Apps | None = None) -> str:
    """A new pending thread from `checkpoint` (App.fork when the graph's App is given); its name.

    Without the App, `update` is stored as given and validated when the thread is resumed.
    """
    cp = Checkpointer(store)
    source = _load(cp, checkpoint)
    info = cp.thread(source.info.thread)
    graph = info.graph if info is not None else ""
    app = (apps or {}).get(graph)
    if app is not None:
        return app.with_checkpointer(cp).fork(checkpoint, update=update, thread=name)
    name = name or uuid.uuid4().hex
    first = [Write(source.info.step + 1, 0, "__fork__", "update", json.dumps(update))] if update else []
    cp.create_thread(name, graph, pending=source.pending, parent=source.info, first_writes=first, status="pending",
                     fingerprint=info.fingerprint if info is not None else None)  # the update is in its source's shape
    return name


def search(store: Store, name: str) -> dict[str, Any]:
    """A search run: strategy, status, spend, result, every node (state left out) and the chosen path."""
    stored = read_run(store, name)
    if stored is None:
        raise NotFound(f"no search named {name!r}")
    tree = stored.tree
    # vars(), not to_dict(): asdict's deep copy is most of the time on a 5,000-node tree
    nodes = [] if tree is None else [{k: v for k, v in vars(n).items() if k != "state"} for n in tree.nodes]
    best = [] if tree is None else [n.id for n in tree.best_trajectory()]
    return {"name": name, "strategy": stored.strategy, "status": stored.status, "options": stored.options,
            "spent": stored.spent, "result": stored.result, "nodes": nodes, "best": best}


def trace(store: Store, run: str) -> dict[str, Any]:
    """The spans of an agent run (or any run key)."""
    found = run_spans(store, run)
    if not found:
        raise NotFound(f"no spans recorded for run {run!r}")
    return {"run": run, "spans": found}
