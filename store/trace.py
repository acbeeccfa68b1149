"""Spans: what a run did and when (nodes, agents, model and tool calls), written to the store in batches.

A span belongs to a run (`thread:<name>`, `search:<name>`, `agent:<id>`) and maybe to a parent span.
The current span is a context variable, so an agent called inside a graph node records its model
calls under that node without either knowing of the other. Spans wait in a buffer that a background
thread writes every `FLUSH_SECONDS` (and at exit): a step or a run costs no extra transaction, a live
view lags by at most that, and a process killed outright loses the spans of its last moments.
"""

import atexit
import json
import logging
import secrets
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_json
from sqlalchemy import bindparam, update

from baobab.store.db import Store
from baobab.store.schema import spans

FLUSH_SECONDS = 0.25  # how stale a live view may be; writes in between cost nothing
log = logging.getLogger(__name__)
_COLUMNS = ["id", "run", "parent", "kind", "name", "started", "ended", "status", "error", "attrs"]


@dataclass
class Span:
    """One timed piece of a run; `attrs` holds what the viewer shows (tokens, tool arguments...)."""

    tracer: "Tracer"
    run: str
    kind: str
    name: str
    parent: int | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    id: int = field(default_factory=lambda: secrets.randbits(52))
    started: float = field(default_factory=time.time)
    ended: float | None = None
    status: str = "running"
    error: str | None = None

    def end(self, status: str = "ok", error: str | None = None) -> None:
        """Close the span now and queue it for writing."""
        self.ended, self.status, self.error = time.time(), status, error
        self.tracer.add(self)

    def child(self, kind: str, name: str, attrs: dict[str, Any] | None = None) -> "Span":
        """A new open span under this one, in the same run."""
        return Span(self.tracer, self.run, kind, name, self.id, attrs or {})

    def row(self) -> dict[str, Any]:
        """The span as a row of the `spans` table."""
        return {"id": self.id, "run": self.run, "parent": self.parent, "kind": self.kind, "name": self.name,
                "started": self.started, "ended": self.ended, "status": self.status, "error": self.error,
                "attrs": to_json(self.attrs, fallback=repr).decode()}


class Tracer:
    """The span buffer of one store: `add` queues, `flush` writes the queue in one transaction (the
    background writer calls it; call it yourself before reading spans back in the same process).

    >>> tracer = tracer_for(Store("sqlite://"))
    >>> run = tracer.start("agent:demo", "agent", "helper")
    >>> run.end(); tracer.flush()
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._insert = store.compile(spans.insert(), _COLUMNS)
        self._update = store.compile(update(spans).where(spans.c.id == bindparam("span_id")).values(
            ended=bindparam("ended"), status=bindparam("status"), error=bindparam("error"),
            attrs=bindparam("attrs")))
        self._lock = threading.Lock()  # guards the queue
        self._flushing = threading.Lock()  # one flush at a time, so a span's insert precedes its update
        self._queue: list[Span] = []
        self._written: set[int] = set()  # open spans already written (a running run): closing them is an update

    def start(self, run: str, kind: str, name: str, attrs: dict[str, Any] | None = None) -> Span:
        """A new open root span of `run`; it is written open at the next flush, so a live view sees it."""
        span = Span(self, run, kind, name, None, attrs or {})
        self.add(span)
        return span

    def add(self, span: Span) -> None:
        """Queue `span` (open or closed) for the background writer."""
        with self._lock:
            self._queue.append(span)
        if not _writer.is_alive():
            _start_writer()

    def flush(self) -> None:
        """Write every queued span now: new ones inserted, ones written while open updated."""
        with self._flushing:
            with self._lock:
                queue, self._queue = self._queue, []
            rows = {span.id: span.row() for span in queue}  # the latest of a span queued twice
            if not rows:
                return
            updates = [r for key, r in rows.items() if key in self._written]
            inserts = [r for key, r in rows.items() if key not in self._written]
            with self.store.raw_transaction() as cursor:
                if inserts:
                    cursor.executemany(self._insert.text, [self._insert.params(r) for r in inserts])
                if updates:
                    cursor.executemany(self._update.text, [self._update.params({**r, "span_id": r["id"]})
                                                           for r in updates])
            self._written.update(key for key, r in rows.items() if r["ended"] is None)
            self._written.difference_update(key for key, r in rows.items() if r["ended"] is not None)

    @property
    def pending(self) -> bool:
        """Spans are waiting to be written."""
        return bool(self._queue)


_live: "weakref.WeakSet[Tracer]" = weakref.WeakSet()  # a tracer goes with its store
_writer_lock = threading.Lock()
_writer = threading.Thread()  # replaced by the running writer on first use


def _write_all() -> None:
    """Flush every tracer with spans waiting; a failure is logged and the spans are dropped, not the run."""
    for tracer in list(_live):
        if tracer.pending:
            try:
                tracer.flush()
            except Exception:
                log.exception("baobab: could not write spans to %s", tracer.store.safe_url)


def _writer_loop() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        _write_all()


def _start_writer() -> None:
    global _writer
    with _writer_lock:
        if not _writer.is_alive():
            _writer = threading.Thread(target=_writer_loop, name="baobab-spans", daemon=True)
            _writer.start()


atexit.register(_write_all)


_tracers_lock = threading.Lock()
current: ContextVar[Span | None] = ContextVar("baobab_current_span", default=None)


def tracer_for(store: Store) -> Tracer:
    """The one tracer of `store` (spans of concurrent runs share its buffer)."""
    with _tracers_lock:  # kept on the store itself: it lives and dies with it
        tracer = getattr(store, "_baobab_tracer", None)
        if tracer is None:
            tracer = Tracer(store)
            setattr(store, "_baobab_tracer", tracer)  # noqa: B010 - Store has no slot for it
            _live.add(tracer)
        assert isinstance(tracer, Tracer)
        return tracer


@contextmanager
def span(kind: str, name: str, attrs: dict[str, Any] | None = None, *,
         parent: Span | None = None) -> Iterator[Span | None]:
    """A child span of `parent` (else of the current span) for the block, current inside it; None when
    nothing is being recorded. An exception ends it as an error.

    >>> with span("tool", "add") as s:  # doctest: +SKIP
    ...     s.attrs["result"] = "3"
    """
    parent = parent or current.get()
    if parent is None:
        yield None
        return
    child = parent.child(kind, name, attrs)
    token = current.set(child)
    try:
        yield child
    except BaseException as exc:
        child.end(_status(exc), f"{type(exc).__name__}: {exc}")
        raise
    else:
        child.end()
    finally:
        current.reset(token)


@contextmanager
def recording(store: Store, run: str | None = None, name: str = "run") -> Iterator[Span]:
    """Record the spans of the block (agents, model and tool calls) as run `run` in `store`.

    >>> with recording(Store("sqlite://"), "agent:demo") as root:  # doctest: +SKIP
    ...     agent.run("What is 2 + 2?")
    """
    tracer = tracer_for(store)
    root = tracer.start(run or f"agent:{uuid.uuid4().hex[:12]}", "run", name)
    token = current.set(root)
    try:
        yield root
    except BaseException as exc:
        root.end(_status(exc), f"{type(exc).__name__}: {exc}")
        raise
    else:
        root.end()
    finally:
        current.reset(token)
        tracer.flush()


def _status(exc: BaseException) -> str:
    """`interrupted` for a pause (an exception whose class says Interrupt), else `error`."""
    return "interrupted" if "Interrupt" in type(exc).__name__ else "error"


def excerpt(value: Any, limit: int = 2000) -> str:
    """`value` as text (JSON if not a string), cut to `limit` characters for a span's attributes.

    >>> excerpt("x" * 5, 3)
    'xxx…'
    """
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= limit else text[:limit] + "…"
