"""One super-step's tasks: started in task order within the concurrency limits, run, and settled.

A lone task runs inline (no thread, no asyncio task: a chain of small nodes costs little); several run
concurrently, sync ones in threads, each committed as it finishes so a crash loses none. A task waits,
queued and reported as `NodeQueued`, while its run's `max_concurrency` tasks or its node's own limit are
running. A failure goes to the node's `on_error` handler when it has one (after its retries).
"""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic_core import to_json

from baobab.graphs.checkpoint import Write
from baobab.graphs.errors import NodeInterrupt
from baobab.graphs.events import Event, NodeEnd, NodeFailed, NodeQueued, NodeStart, Token
from baobab.graphs.node import Failure, RunContext
from baobab.graphs.progress import MISSING, Run
from baobab.graphs.tokens import Sink, node_tokens, queue_sink, token_sink
from baobab.store.trace import span

if TYPE_CHECKING:
    from baobab.graphs.runtime import App


@dataclass
class Outcome:
    """What the tasks of one step produced."""

    updates: dict[int, list[BaseModel]]
    unsaved: list[Write] = field(default_factory=list)
    pauses: list[tuple[int, NodeInterrupt]] = field(default_factory=list)
    failures: list[tuple[int, Exception]] = field(default_factory=list)
    handled: list[tuple[int, Exception]] = field(default_factory=list)  # failures sent to on_error handlers


async def execute(app: "App", run: Run, step: int, outcome: Outcome,
                  tokens: "asyncio.Queue[Token] | None" = None) -> AsyncIterator[Event]:
    """Run the step's tasks not already done, yielding their events (and `tokens`' as they come)."""
    todo = [i for i in range(len(run.tasks)) if i not in outcome.updates]
    commit_each = len(todo) > 1 and app.checkpointer is not None
    loop = asyncio.get_running_loop()
    if len(todo) == 1 and tokens is None:
        i = todo[0]
        yield NodeStart(step, run.tasks[i].node, i)
        started = loop.time()
        try:
            result: Any = await _call(app, run, step, i, None, in_thread=False)
        except BaseException as exc:
            result = exc
        event = _settle(app, run, step, i, result, started, outcome, commit_each)
        if event is not None:
            yield event
        return
    sink = None if tokens is None else queue_sink(tokens)
    waiting, running, active, started_at = list(todo), dict[asyncio.Future[Any], int](), Counter[str](), {}

    def start_ready() -> list[Event]:
        """Start the waiting tasks the limits allow, in task order."""
        events: list[Event] = []
        for i in list(waiting):
            node = run.tasks[i].node
            if run.max_concurrency is not None and len(running) >= run.max_concurrency:
                break
            limit = app.graph.nodes[node].max_concurrency
            if limit is not None and active[node] >= limit:
                continue
            waiting.remove(i)
            active[node] += 1
            started_at[i] = loop.time()
            running[asyncio.ensure_future(_call(app, run, step, i, sink, in_thread=True))] = i
            events.append(NodeStart(step, node, i))
        return events

    for event in start_ready():
        yield event
    for i in waiting:
        run_full = run.max_concurrency is not None and len(running) >= run.max_concurrency
        limit = run.max_concurrency if run_full else app.graph.nodes[run.tasks[i].node].max_concurrency
        assert limit is not None  # a task waits only behind a limit
        yield NodeQueued(step, run.tasks[i].node, i, limit)
    getter: asyncio.Future[Token] | None = None
    try:
        while running:
            getter = None if tokens is None else asyncio.ensure_future(tokens.get())
            finished, _ = await asyncio.wait([*running, *([getter] if getter else [])],
                                             return_when=asyncio.FIRST_COMPLETED)
            if tokens is not None and getter is not None:
                if getter.done():
                    yield getter.result()
                else:  # a get left waiting across the yields below would take a token out of turn (or lose it)
                    getter.cancel()
                while not tokens.empty():  # what a task streamed comes before its end
                    yield tokens.get_nowait()
            for future in sorted((f for f in finished if f in running), key=running.__getitem__):
                i = running.pop(future)
                active[run.tasks[i].node] -= 1
                event = _settle(app, run, step, i, future.exception() or future.result(), started_at[i], outcome,
                                commit_each)
                if event is not None:
                    yield event
            for event in start_ready():
                yield event
    finally:
        for future in running:
            future.cancel()
        if getter is not None:
            getter.cancel()


async def _call(app: "App", run: Run, step: int, i: int, sink: Sink | None, *, in_thread: bool) -> list[BaseModel]:
    task = run.tasks[i]
    spec = app.graph.nodes[task.node]
    ctx = RunContext(run.thread, step, task.node, i, run.resumed, run.resume_value, app.checkpointer,
                     None if task.failure is None else Failure(**task.failure))
    arg = run.state if task.arg is MISSING else spec.send_arg(task.arg)
    base = sink or token_sink()  # the stream's sink, or a parent graph's node's (this run is its subgraph)
    with node_tokens(base, task.node) if base is not None else nullcontext():
        if run.span is None:
            out = await spec.call(arg, ctx, in_thread=in_thread)
        else:  # the node's span is current inside it: an agent there records its calls under it
            with span("node", task.node, {"step": step, "task": i}, parent=run.span):
                out = await spec.call(arg, ctx, in_thread=in_thread)
    if out is None:
        return []
    if isinstance(out, SubgraphUpdates):
        return [app.schema.validate_update(task.node, u) for u in out]
    return [app.schema.validate_update(task.node, out)]


class SubgraphUpdates(list[dict[str, Any]]):
    """A subgraph node's output: the child's updates to shared fields, applied in order."""


def _settle(app: "App", run: Run, step: int, i: int, result: list[BaseModel] | BaseException, started: float,
            outcome: Outcome, commit_each: bool) -> Event | None:
    node = run.tasks[i].node
    if isinstance(result, NodeInterrupt):
        outcome.pauses.append((i, result))
        return None
    if isinstance(result, BaseException):
        if not isinstance(result, Exception):  # KeyboardInterrupt, cancellation: not the node's failure
            raise result
        if app.graph.nodes[node].on_error is None:
            outcome.failures.append((i, result))
        else:  # recorded, and the step goes on: the handler runs next
            outcome.handled.append((i, result))
            _save(app, run, [error_write(step, i, node, result)], outcome, commit_each)
        return NodeFailed(step, node, i, result)
    outcome.updates[i] = result
    _save(app, run, [Write(step, i, node, "update", app.schema.dump_update(u)) for u in result] or [
        Write(step, i, node, "update", "{}")], outcome, commit_each)  # an empty update still marks the task done
    update = {k: getattr(u, k) for u in result for k in u.model_fields_set}
    return NodeEnd(step, node, i, update, asyncio.get_running_loop().time() - started)


def _save(app: "App", run: Run, writes: list[Write], outcome: Outcome, commit_each: bool) -> None:
    """Commit a task's writes now (several tasks run: a crash loses none) or with the step."""
    if commit_each and app.checkpointer is not None and run.thread_id is not None:
        for write in writes:
            app.checkpointer.put_write(run.thread_id, write)
    else:
        outcome.unsaved.extend(writes)


def failure(step: int, i: int, node: str, exc: Exception) -> dict[str, Any]:
    """What an error handler learns of a failed task (kept with the checkpoint: plain JSON)."""
    return asdict(Failure(node, step, i, type(exc).__name__, str(exc)))


def error_write(step: int, i: int, node: str, exc: Exception) -> Write:
    """The stored record of a task's failure."""
    return Write(step, i, node, "error", to_json_text(failure(step, i, node, exc)))


def to_json_text(value: Any) -> str:
    """JSON text of any value, unknown objects as their repr."""
    return to_json(value, fallback=repr).decode()
