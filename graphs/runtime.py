"""The compiled graph: runs in super-steps, one committed checkpoint per step; resume, fork, history.

In a super-step every ready task runs concurrently (graphs/tasks.py); their updates are merged in task
order (not in finishing order, so reducers give one result), edges and each task's routers pick the next
tasks (graphs/successors.py), and the step is committed in one transaction before the next begins.
"""

import asyncio
import functools
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping
from contextlib import aclosing, nullcontext
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from baobab.aio import run_sync, run_sync_iter
from baobab.graphs.branches import adopt, explore
from baobab.graphs.checkpoint import Checkpointer, CheckpointInfo, ThreadInfo, Write
from baobab.graphs.errors import CheckpointError, GraphError, GraphRecursionError
from baobab.graphs.events import Checkpoint, Event, Interrupt, RunResult, result_of
from baobab.graphs.node import concurrency_limit
from baobab.graphs.progress import MISSING, Run, Task, labels
from baobab.graphs.routing import Router
from baobab.graphs.state import InvalidUpdateError
from baobab.graphs.successors import Successors, report_routes
from baobab.graphs.tasks import Outcome, execute, failure
from baobab.graphs.threads import commit_failure, commit_pause, commit_step, commit_update, load, rebuild, start
from baobab.store import Store
from baobab.store.trace import Span, tracer_for

if TYPE_CHECKING:
    from baobab.graphs.graph import Graph


class App:
    """A compiled graph. Made by `Graph.compile()`; see `run`, `stream`, `resume`, `fork`, `history`.

    >>> app = graph.compile(checkpointer="sqlite:///runs.db")  # doctest: +SKIP
    >>> app.run({"question": "why?"}, thread="t1").state  # doctest: +SKIP
    """

    def __init__(self, graph: "Graph", checkpointer: "Checkpointer | Store | str | None" = None, *,
                 interrupt_before: Iterable[str] = (), interrupt_after: Iterable[str] = (),
                 recursion_limit: int = 100, max_concurrency: int | None = None) -> None:
        self.graph = graph
        self.schema = graph.schema
        self.checkpointer = (checkpointer if isinstance(checkpointer, Checkpointer) or checkpointer is None
                             else Checkpointer(checkpointer))
        self.interrupt_before = frozenset(interrupt_before)
        self.interrupt_after = frozenset(interrupt_after)
        self.recursion_limit = recursion_limit
        self.max_concurrency = concurrency_limit(max_concurrency, "max_concurrency")
        self.successors = Successors(graph)
        self._shape: dict[str, Any] | None = None  # the graph as the trace viewer draws it, made once

    # ---- public API -------------------------------------------------------------------------------

    async def arun(self, input: Mapping[str, Any] | BaseModel | None = None, *, thread: str | None = None,
                   max_concurrency: int | None = None) -> RunResult:
        """Run the graph from START on `input` and return how it ended (async)."""
        return await result_of(self.astream(input, thread=thread, max_concurrency=max_concurrency))

    def run(self, input: Mapping[str, Any] | BaseModel | None = None, *, thread: str | None = None,
            max_concurrency: int | None = None) -> RunResult:
        """Run the graph from START on `input` and return how it ended.

        A new thread starts from `input`; a finished thread takes `input` as an update and runs again.
        `max_concurrency` caps the tasks of a step running at once (the rest wait; default: compile()'s).

        >>> app.run({"n": 1}, thread="t1").state  # doctest: +SKIP
        """
        return run_sync(self.arun(input, thread=thread, max_concurrency=max_concurrency))

    async def astream(self, input: Mapping[str, Any] | BaseModel | None = None, *, thread: str | None = None,
                      max_concurrency: int | None = None, tokens: bool = False) -> AsyncIterator[Event]:
        """The run's events as they happen, ending with the `RunResult` (async)."""
        run = await start(self, input, thread or uuid.uuid4().hex)
        async for event in self._stream(run, max_concurrency, tokens):
            yield event

    def stream(self, input: Mapping[str, Any] | BaseModel | None = None, *, thread: str | None = None,
               max_concurrency: int | None = None, tokens: bool = False) -> Iterator[Event]:
        """The run's events as they happen: NodeStart, NodeEnd, Checkpoint, ..., then the RunResult.

        With `tokens=True` the stream also carries `Token` events: the text that agents inside nodes (and
        inside nested subgraphs) stream from their models, tagged with the path of nodes they run in.

        >>> for event in app.stream({"n": 1}):  # doctest: +SKIP
        ...     print(event)
        """
        return run_sync_iter(self.astream(input, thread=thread, max_concurrency=max_concurrency, tokens=tokens))

    async def aresume(self, thread: str, *, value: Any = MISSING, update: Mapping[str, Any] | None = None,
                      max_concurrency: int | None = None) -> RunResult:
        """Continue an interrupted, failed or crashed thread from its last checkpoint (async)."""
        return await result_of(self.astream_resume(thread, value=value, update=update,
                                                   max_concurrency=max_concurrency))

    def resume(self, thread: str, *, value: Any = MISSING, update: Mapping[str, Any] | None = None,
               max_concurrency: int | None = None) -> RunResult:
        """Continue a thread from its last checkpoint: after an interrupt, a failure or a crash.

        `value` is what `ctx.interrupt()` returns to the nodes of the next step (and `ctx.resume`);
        `update` is merged into the state first, as a human's edit.

        >>> app.resume("t1", value="approved")  # doctest: +SKIP
        """
        return run_sync(self.aresume(thread, value=value, update=update, max_concurrency=max_concurrency))

    def stream_resume(self, thread: str, *, value: Any = MISSING, update: Mapping[str, Any] | None = None,
                      max_concurrency: int | None = None, tokens: bool = False) -> Iterator[Event]:
        """The events of `resume` as they happen."""
        return run_sync_iter(self.astream_resume(thread, value=value, update=update,
                                                 max_concurrency=max_concurrency, tokens=tokens))

    async def astream_resume(self, thread: str, *, value: Any = MISSING, update: Mapping[str, Any] | None = None,
                             max_concurrency: int | None = None, tokens: bool = False) -> AsyncIterator[Event]:
        """The events of `resume` as they happen."""
        run = load(self, thread)
        if update is not None:
            if run.done:
                raise CheckpointError(f"thread {thread!r} has results of an unfinished step; resume it "
                                      f"without update= first")
            commit_update(self, run, "__update__", self.schema.validate_update("__update__", update), run.tasks)
        run.resumed, run.resume_value = value is not MISSING, None if value is MISSING else value
        async for event in self._stream(run, max_concurrency, tokens):
            yield event

    async def _stream(self, run: Run, max_concurrency: int | None, tokens: bool) -> AsyncIterator[Event]:
        run.max_concurrency = (self.max_concurrency if max_concurrency is None
                               else concurrency_limit(max_concurrency, "max_concurrency"))
        run.tokens = asyncio.Queue() if tokens else None
        async with aclosing(self.steps(run)) as steps:  # a consumer that stops early ends the run's lease now
            async for event in steps:
                yield event

    def fork(self, checkpoint: int, *, update: Mapping[str, Any] | None = None,
             thread: str | None = None) -> str:
        """A new thread starting at any past checkpoint, optionally changed by `update`; O(1).

        Returns the new thread's name; `resume(name)` runs it on.

        >>> branch = app.fork(history[2].id, update={"plan": "other"})  # doctest: +SKIP
        >>> app.resume(branch)  # doctest: +SKIP
        """
        checkpointer = self.require_checkpointer("fork")
        source = checkpointer.load(checkpoint)
        name = thread or uuid.uuid4().hex
        first = []
        if update is not None:
            upd = self.schema.validate_update("__fork__", update)
            first.append(Write(source.info.step + 1, 0, "__fork__", "update", self.schema.dump_update(upd)))
        checkpointer.create_thread(name, self.graph.name, pending=source.pending, parent=source.info,
                                   first_writes=first, status="pending", fingerprint=self.schema.fingerprint)
        return name

    def history(self, thread: str) -> list[CheckpointInfo]:
        """The thread's checkpoints, newest first; `state(checkpoint=c.id)` reads any of them."""
        checkpointer = self.require_checkpointer("history")
        info = self.thread_info(thread)
        return checkpointer.history(info.id, info.name)

    def state(self, thread: str | None = None, *, checkpoint: int | None = None) -> BaseModel:
        """The state at a checkpoint, or at a thread's last one.

        >>> app.state("t1")  # doctest: +SKIP
        """
        checkpointer = self.require_checkpointer("state")
        if checkpoint is None:
            if thread is None:
                raise CheckpointError("state() needs a thread or a checkpoint id")
            checkpoint = checkpointer.latest(self.thread_info(thread).id)
        return rebuild(self, checkpointer.load(checkpoint))

    def with_checkpointer(self, checkpointer: "Checkpointer | Store | str | None") -> "App":
        """The same app, with its runs stored by another checkpointer."""
        return App(self.graph, checkpointer, interrupt_before=self.interrupt_before,
                   interrupt_after=self.interrupt_after, recursion_limit=self.recursion_limit,
                   max_concurrency=self.max_concurrency)

    # ---- the super-step loop ----------------------------------------------------------------------

    async def steps(self, run: Run) -> AsyncGenerator[Event, None]:
        cp = self.checkpointer
        # the lease beats while the run goes on, however long a step takes; readers see its end once it stops
        with nullcontext() if cp is None or run.thread_id is None else cp.heartbeat.held(run.thread_id):
            run.span = self._trace(run)
            if run.span is None:
                async for event in self._run_steps(run):
                    yield event
                return
            status, error = "interrupted", None  # a consumer that stops early leaves the run paused
            try:
                async for event in self._run_steps(run):
                    if isinstance(event, RunResult):
                        status = "ok" if event.status == "done" else "interrupted"
                    yield event
            except Exception as exc:
                status, error = "error", f"{type(exc).__name__}: {exc}"
                raise
            finally:
                run.span.end(status, error)  # written by the background writer: a run costs no extra commit

    def _trace(self, run: Run) -> Span | None:
        """The run's span, recorded in the checkpointer's store; None without a checkpointer."""
        if self.checkpointer is None:
            return None
        if self._shape is None:
            g = self.graph.structure()
            edges: list[list[str]] = [[a, b, d["kind"]] for a, b, d in g.edges(data=True)]
            self._shape = {"nodes": list(g.nodes), "edges": edges,
                           "reducers": {f: getattr(r, "__name__", repr(r)) for f, r in self.schema.reducers.items()}}
        return tracer_for(self.checkpointer.store).start(f"thread:{run.thread}", "run", self.graph.name,
                                                         {"graph": self._shape, "from_step": run.step})

    async def _run_steps(self, run: Run) -> AsyncIterator[Event]:
        limit = run.step + self.recursion_limit
        skip_before = run.paused_before
        for routed in report_routes(run):
            yield routed
        try:
            while run.tasks:
                nodes = tuple(dict.fromkeys(t.node for t in run.tasks))
                before = tuple(n for n in nodes if n in self.interrupt_before)
                if run.stop_at is not None and run.step >= run.stop_at:  # a lookahead branch's steps ran out
                    before, skip_before = nodes, False
                if before and not skip_before:
                    for event in self._pause(run, Interrupt(run.step + 1, before, "before")):
                        yield event
                    return
                if run.step >= limit:
                    raise GraphRecursionError(
                        f"thread {run.thread!r} ran {self.recursion_limit} super-steps without reaching END "
                        f"(next: {', '.join(nodes)}); raise compile(recursion_limit=...) or check for a loop")
                step = run.step + 1
                outcome = Outcome(dict(run.done))
                async for event in execute(self, run, step, outcome, run.tokens):
                    yield event
                if outcome.failures:
                    raise commit_failure(self, run, step, outcome.failures)
                if outcome.pauses:
                    signal = outcome.pauses[0][1]
                    nodes_paused = tuple(run.tasks[i].node for i, _ in outcome.pauses)
                    for event in self._pause(run, Interrupt(step, nodes_paused, "inside", signal.payload)):
                        yield event
                    return
                ran = self._merge(run, outcome)
                handlers = [Task(self._handler(run.tasks[i].node), failure=failure(step, i, run.tasks[i].node, exc))
                            for i, exc in outcome.handled]
                run.step = step
                run.tasks, run.joins = await self.next_tasks(run, step, ran, run.joins)
                if handlers:
                    run.tasks, run.adopt = run.tasks + handlers, None
                if run.adopt is not None:
                    outcome.unsaved.extend(adopt(self, run, run.adopt))
                for routed in report_routes(run):
                    yield routed
                after = tuple(n for n in nodes if n in self.interrupt_after)
                status = "done" if not run.tasks else ("interrupted" if after else None)
                detail = {"when": "after", "nodes": list(after), "step": step} if status == "interrupted" else None
                commit_step(self, run, outcome.unsaved, status=status, detail=detail)
                yield Checkpoint(step, run.checkpoint, run.state, tuple(t.node for t in run.tasks))
                if after and run.tasks:
                    yield Interrupt(step, after, "after")
                    yield self._result(run, "interrupted", Interrupt(step, after, "after"))
                    return
                run.resumed, run.done, skip_before = False, {}, False
        except (GraphRecursionError, GraphError, InvalidUpdateError) as exc:
            if self.checkpointer is not None and run.thread_id is not None:
                self.checkpointer.set_status(run.thread_id, "error", {"error": str(exc)})
            raise
        if run.depth == 0:  # learning routers take their reward from how real runs end
            for router in dict.fromkeys(r.router for rs in self.successors.routes.values() for r in rs):
                if isinstance(router, Router):
                    await router.finish(run.state, run.thread)
        yield self._result(run, "done")

    def _merge(self, run: Run, outcome: Outcome) -> list[tuple[int, str, BaseModel]]:
        """Apply the step's updates in task order; return each task that ran with the state its routers see.

        A router sees the state before the step with its own task's writes (LangGraph's rule), so each
        task of a fan-out routes on its own result; a lone task's view is the merged state itself.
        """
        before, names = run.state, labels([t.node for t in run.tasks])
        ordered = [(names[i], u) for i in range(len(run.tasks)) for u in outcome.updates.get(i, ())]
        run.state = self.schema.apply(before, ordered)
        run.log.extend(u for _, u in ordered)
        routes, alone = self.successors.routes, len(run.tasks) == 1
        return [(i, task.node, self.schema.apply(before, [(names[i], u) for u in outcome.updates[i]])
                 if task.node in routes and not alone else run.state)
                for i, task in enumerate(run.tasks) if i in outcome.updates]

    def _handler(self, node: str) -> str:
        handler = self.graph.nodes[node].on_error
        assert handler is not None  # only failures of nodes with a handler are handled
        return handler

    async def next_tasks(self, run: Run, step: int, ran: list[tuple[int, str, BaseModel]],
                    joins: dict[str, list[str]]) -> tuple[list[Task], dict[str, list[str]]]:
        return await self.successors.next(self, run, step, ran, joins, functools.partial(explore, self))

    def _pause(self, run: Run, interrupt: Interrupt) -> Iterator[Event]:
        commit_pause(self, run, interrupt)
        yield interrupt
        yield self._result(run, "interrupted", interrupt)

    def _result(self, run: Run, status: Any, interrupt: Interrupt | None = None) -> RunResult:
        return RunResult(run.thread, status, run.state, run.step, run.checkpoint, interrupt)

    # ---- helpers ----------------------------------------------------------------------------------

    def require_checkpointer(self, what: str) -> Checkpointer:
        if self.checkpointer is None:
            raise CheckpointError(f"{what}() needs a checkpointer: compile(checkpointer='sqlite:///runs.db')")
        return self.checkpointer

    def thread_info(self, name: str) -> ThreadInfo:
        info = self.require_checkpointer("this").thread(name)
        if info is None:
            raise CheckpointError(f"no thread named {name!r}")
        return info
