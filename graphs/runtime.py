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
from pydantic_core import to_jsonable_python

from baobab.aio import run_sync, run_sync_iter
from baobab.graphs.branches import adopt, explore
from baobab.graphs.checkpoint import Checkpointer, CheckpointInfo, LoadedCheckpoint, Write
from baobab.graphs.errors import CheckpointError, GraphError, GraphRecursionError, NodeError, NodeInterrupt
from baobab.graphs.events import Checkpoint, Event, Interrupt, Routed, RunResult
from baobab.graphs.node import START, RunContext, concurrency_limit
from baobab.graphs.progress import MISSING, Run, Task, labels, pending
from baobab.graphs.routing import Router
from baobab.graphs.state import InvalidUpdateError
from baobab.graphs.successors import Successors
from baobab.graphs.tasks import Outcome, SubgraphUpdates, error_write, execute, failure
from baobab.store import Store
from baobab.store.trace import Span, tracer_for

if TYPE_CHECKING:
    from baobab.graphs.graph import Graph

ROW_COST = 256  # bytes a delta row counts for when choosing snapshots: bounds the rows a read replays


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
        return await _last(self.astream(input, thread=thread, max_concurrency=max_concurrency))

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
        run = await self._start(input, thread or uuid.uuid4().hex)
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
        return await _last(self.astream_resume(thread, value=value, update=update, max_concurrency=max_concurrency))

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
        run = self._load_run(thread)
        if update is not None:
            if run.done:
                raise CheckpointError(f"thread {thread!r} has results of an unfinished step; resume it "
                                      f"without update= first")
            self._commit_update(run, "__update__", self.schema.validate_update("__update__", update), run.tasks)
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
        checkpointer = self._require_checkpointer("fork")
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
        checkpointer = self._require_checkpointer("history")
        info = self._thread(thread)
        return checkpointer.history(info.id, info.name)

    def state(self, thread: str | None = None, *, checkpoint: int | None = None) -> BaseModel:
        """The state at a checkpoint, or at a thread's last one.

        >>> app.state("t1")  # doctest: +SKIP
        """
        checkpointer = self._require_checkpointer("state")
        if checkpoint is None:
            if thread is None:
                raise CheckpointError("state() needs a thread or a checkpoint id")
            checkpoint = checkpointer.latest(self._thread(thread).id)
        return self._rebuild(checkpointer.load(checkpoint))

    def with_checkpointer(self, checkpointer: "Checkpointer | Store | str | None") -> "App":
        """The same app, with its runs stored by another checkpointer."""
        return App(self.graph, checkpointer, interrupt_before=self.interrupt_before,
                   interrupt_after=self.interrupt_after, recursion_limit=self.recursion_limit,
                   max_concurrency=self.max_concurrency)

    # ---- starting and loading runs ----------------------------------------------------------------

    async def _start(self, input: Mapping[str, Any] | BaseModel | None, thread: str) -> Run:
        cp = self.checkpointer
        existing = cp.thread(thread) if cp is not None else None
        if existing is not None:
            if existing.status != "done":
                raise CheckpointError(f"thread {thread!r} is {existing.status}: resume({thread!r}) continues "
                                      f"it, fork() branches from it")
            run = self._load_run(thread)
            upd = self.schema.validate_update("__input__", input if input is not None else {})
            given = self.schema.apply(run.state, [("__input__", upd)])
            tasks, joins = await self._next(run, run.step + 1, [(0, START, given)], {})
            self._commit_update(run, "__input__", upd, tasks, joins)
            return run
        if isinstance(input, self.schema.model):
            state: BaseModel = input
        else:
            try:
                state = self.schema.model.model_validate(input if input is not None else {})
            except ValueError as exc:
                raise InvalidUpdateError(f"input to {self.graph.name!r}: {exc}") from exc
        run = Run(thread, None, state, 0, None, [], {})
        run.tasks, run.joins = tasks, joins = await self._next(run, 0, [(0, START, state)], {})
        if cp is not None:
            snapshot = state.model_dump_json()
            run.thread_id, run.checkpoint = cp.create_thread(thread, self.graph.name, snapshot=snapshot,
                                                             pending=pending(tasks, joins),
                                                             fingerprint=self.schema.fingerprint)
            run.snapshot_bytes = len(snapshot)
        return run

    def _load_run(self, thread: str) -> Run:
        cp = self._require_checkpointer("resume")
        info = self._thread(thread)
        cp.upgrade(info, self.schema)  # its rows in this state class's shape (the graph's migrate hook)
        loaded = cp.load(cp.latest(info.id))
        run = Run(thread, info.id, self._rebuild(loaded), loaded.info.step, loaded.info.id,
                   [Task(*t) for t in loaded.pending["tasks"]], loaded.pending["joins"],
                   delta_bytes=sum(len(w.data) for w in loaded.writes), snapshot_bytes=len(loaded.snapshot),
                   chain_length=loaded.chain_length)
        # an interrupt before this step's nodes was shown to a human; a crash before them was not
        run.paused_before = info.status == "interrupted" and (info.detail or {}).get("when") == "before"
        for write in cp.step_writes(info.id, run.step + 1):
            if write.kind == "update":
                run.done.setdefault(write.task, []).append(self.schema.load_update(write.data))
        cp.claim(info.id)  # running again, and this process's: a crashed owner's lease is taken over
        return run

    def _rebuild(self, loaded: LoadedCheckpoint) -> BaseModel:
        thread = loaded.info.thread  # each row is read as the state class its thread was written with
        state = self.schema.load_state(loaded.snapshot, loaded.snapshot_fingerprint, thread)
        by_step: dict[int, list[tuple[Write, BaseModel]]] = {}
        for write, made in zip(loaded.writes, loaded.write_fingerprints, strict=True):
            by_step.setdefault(write.step, []).append((write, self.schema.load_update(write.data, made, thread)))
        for step_writes in by_step.values():
            tasks = dict.fromkeys((w.task, w.node) for w, _ in step_writes)
            names = dict(zip(tasks, labels([node for _, node in tasks]), strict=True))
            state = self.schema.apply(state, [(names[w.task, w.node], u) for w, u in step_writes])
        return state

    def _commit_update(self, run: Run, node: str, update: BaseModel, tasks: list[Task],
                       joins: dict[str, list[str]] | None = None) -> None:
        """Apply an update from outside the graph (input, a human) as a step of its own."""
        run.state = self.schema.apply(run.state, [(node, update)])
        run.step += 1
        run.tasks, run.joins = tasks, joins if joins is not None else run.joins
        self._checkpoint(run, [Write(run.step, 0, node, "update", self.schema.dump_update(update))],
                         status="running")

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
        for routed in self._report_routes(run):
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
                    raise self._fail(run, step, outcome.failures)
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
                run.tasks, run.joins = await self._next(run, step, ran, run.joins)
                if handlers:
                    run.tasks, run.adopt = run.tasks + handlers, None
                if run.adopt is not None:
                    outcome.unsaved.extend(adopt(self, run, run.adopt))
                for routed in self._report_routes(run):
                    yield routed
                after = tuple(n for n in nodes if n in self.interrupt_after)
                status = "done" if not run.tasks else ("interrupted" if after else None)
                detail = {"when": "after", "nodes": list(after), "step": step} if status == "interrupted" else None
                self._checkpoint(run, outcome.unsaved, status=status, detail=detail)
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

    async def _next(self, run: Run, step: int, ran: list[tuple[int, str, BaseModel]],
                    joins: dict[str, list[str]]) -> tuple[list[Task], dict[str, list[str]]]:
        return await self.successors.next(self, run, step, ran, joins, functools.partial(explore, self))

    def _report_routes(self, run: Run) -> Iterator[Routed]:
        """The run's decisions made since the last report, as events and as `route` spans."""
        for routed in run.routed:
            if run.span is not None:
                run.span.child("route", routed.source, {
                    "router": routed.router, "step": routed.step, "task": routed.task,
                    "targets": list(routed.targets), "choice": list(routed.choice), "scores": routed.scores,
                    "reason": routed.reason}).end()
            yield routed
        run.routed.clear()

    def _fail(self, run: Run, step: int, failures: list[tuple[int, Exception]]) -> NodeError:
        cp = self.checkpointer
        errors = [(run.tasks[i].node, i, exc) for i, exc in failures]
        if cp is not None and run.thread_id is not None:
            for node, i, exc in errors:
                cp.put_write(run.thread_id, error_write(step, i, node, exc))
            cp.set_status(run.thread_id, "error", {"step": step, "nodes": [n for n, _, _ in errors],
                                                   "error": f"{type(errors[0][2]).__name__}: {errors[0][2]}"})
        node, _, exc = errors[0]
        error = NodeError(node, step, run.thread, exc)
        error.__cause__ = exc
        return error

    def _pause(self, run: Run, interrupt: Interrupt) -> Iterator[Event]:
        if self.checkpointer is not None and run.thread_id is not None:
            self.checkpointer.set_status(run.thread_id, "interrupted", {
                "when": interrupt.when, "nodes": list(interrupt.nodes), "step": interrupt.step,
                "payload": to_jsonable_python(interrupt.payload, fallback=repr)})
        yield interrupt
        yield self._result(run, "interrupted", interrupt)

    def _result(self, run: Run, status: Any, interrupt: Interrupt | None = None) -> RunResult:
        return RunResult(run.thread, status, run.state, run.step, run.checkpoint, interrupt)

    def _checkpoint(self, run: Run, unsaved: list[Write], *, status: str | None = None,
                    detail: Any = None) -> None:
        """Commit the step: its writes, the checkpoint and now and then a snapshot, in one transaction."""
        cp = self.checkpointer
        if cp is None or run.thread_id is None:
            return
        run.delta_bytes += sum(len(w.data) for w in unsaved)
        run.chain_length += 1
        snapshot = None
        # snapshot once the deltas since the last one outweigh it: storage stays within a constant factor
        # of what changed, and a read replays at most about one snapshot's worth (or size / ROW_COST rows)
        if run.delta_bytes + run.chain_length * ROW_COST >= run.snapshot_bytes:
            snapshot = run.state.model_dump_json()
            run.snapshot_bytes, run.delta_bytes, run.chain_length = len(snapshot), 0, 0
        run.checkpoint = cp.put_checkpoint(run.thread_id, run.step, run.checkpoint,
                                           pending(run.tasks, run.joins), snapshot, unsaved, status, detail)

    # ---- subgraphs --------------------------------------------------------------------------------

    async def run_as_node(self, state: BaseModel, ctx: RunContext) -> SubgraphUpdates:
        """Run this graph as a node of a parent graph, on the fields the two states share.

        Its thread is named after the parent's task, so a resumed parent resumes it, and its own
        writes to shared fields become the parent's updates (a parent's list is not appended twice).
        """
        parent_fields = type(state).model_fields
        shared = [f for f in self.schema.fields if f in parent_fields]
        child = f"{ctx.thread}/{ctx.node}:{ctx.step}.{ctx.task}"
        cp = self.checkpointer or ctx.checkpointer
        app = self if cp is self.checkpointer else self.with_checkpointer(cp)
        if cp is not None and cp.thread(child) is not None:
            run = app._load_run(child)
            run.resumed, run.resume_value = ctx.resumed, ctx.resume
        else:
            run = await app._start({f: getattr(state, f) for f in shared}, child)
        result = await _last(app.steps(run))
        if result.status == "interrupted":
            assert result.interrupt is not None
            raise NodeInterrupt(result.interrupt.payload)
        updates = (run.log if cp is None or run.thread_id is None else
                   [self.schema.load_update(w.data) for w in cp.thread_updates(run.thread_id)])
        return SubgraphUpdates(
            {k: getattr(u, k) for k in u.model_fields_set if k in parent_fields} for u in updates)

    # ---- helpers ----------------------------------------------------------------------------------

    def _require_checkpointer(self, what: str) -> Checkpointer:
        if self.checkpointer is None:
            raise CheckpointError(f"{what}() needs a checkpointer: compile(checkpointer='sqlite:///runs.db')")
        return self.checkpointer

    def _thread(self, name: str) -> Any:
        info = self._require_checkpointer("this").thread(name)
        if info is None:
            raise CheckpointError(f"no thread named {name!r}")
        return info


async def _last(events: AsyncIterator[Event]) -> RunResult:
    last: Event | None = None
    async for last in events:  # noqa: B007 - only the final event, the RunResult, is wanted
        pass
    assert isinstance(last, RunResult)
    return last
