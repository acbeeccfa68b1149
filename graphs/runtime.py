"""The compiled graph: runs in super-steps, one committed checkpoint per step; resume, fork, history.

In a super-step every ready task runs concurrently; their updates are merged in task order (not in
finishing order, so reducers give one result), the routers pick the next tasks from the merged
state, and the step is committed in one transaction before the next begins.
"""

import asyncio
import functools
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping
from contextlib import aclosing, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic_core import to_json, to_jsonable_python

from baobab.aio import run_sync, run_sync_iter
from baobab.graphs.checkpoint import Checkpointer, CheckpointInfo, LoadedCheckpoint, Write
from baobab.graphs.errors import CheckpointError, GraphError, GraphRecursionError, NodeError, NodeInterrupt
from baobab.graphs.events import Checkpoint, Event, Interrupt, NodeEnd, NodeFailed, NodeStart, Routed, RunResult
from baobab.graphs.node import END, START, RunContext, Send
from baobab.graphs.routing import RouteContext, Router, router_name
from baobab.graphs.state import InvalidUpdateError
from baobab.store import Store
from baobab.store.trace import Span, span, tracer_for

if TYPE_CHECKING:
    from baobab.graphs.graph import Graph

MISSING: Any = object()
ROW_COST = 256  # bytes a delta row counts for when choosing snapshots: bounds the rows a read replays


@dataclass(slots=True)
class _Task:
    node: str
    arg: Any = MISSING  # a Send's input, JSON-compatible

    def dump(self) -> list[Any]:
        return [self.node] if self.arg is MISSING else [self.node, self.arg]


@dataclass
class _Run:
    """Where one thread's run stands in memory; the store holds the same at each checkpoint."""

    thread: str
    thread_id: int | None
    state: BaseModel
    step: int
    checkpoint: int | None
    tasks: list[_Task]
    joins: dict[str, list[str]]
    done: dict[int, list[BaseModel]] = field(default_factory=dict)  # tasks of step+1 already committed
    resumed: bool = False  # the first step's tasks get the resume value
    paused_before: bool = False  # the run stopped before this step's nodes, so resuming runs them
    resume_value: Any = None
    delta_bytes: int = 0
    snapshot_bytes: int = 0
    chain_length: int = 0
    log: list[BaseModel] = field(default_factory=list)  # updates applied, for a subgraph in memory
    span: Span | None = None  # the run's span, when it is recorded (a checkpointer's store)
    routed: list[Routed] = field(default_factory=list)  # decisions not yet reported
    depth: int = 0  # 1 inside a lookahead branch
    stop_at: int | None = None  # a branch pauses before running step stop_at + 1
    adopt: "Branch | None" = None  # a lookahead branch to take over after this step's routing


@dataclass(frozen=True)
class Branch:
    """A lookahead branch: `target` run for up to `steps` super-steps from a routing decision's state.

    It ended `done` (reached END), `paused` (its steps ran out, or an interrupt) or `error`; `thread` names
    it when the run has a checkpointer (resume it to go on), and `tasks` counts the node runs it cost.
    """

    target: str
    state: BaseModel
    status: str
    tasks: int
    thread: str | None = None
    error: str | None = None
    run: _Run | None = field(default=None, repr=False, compare=False)  # where it stopped, to be adopted


class _SubgraphUpdates(list[dict[str, Any]]):
    """A subgraph node's output: the child's updates to shared fields, applied in order."""


class App:
    """A compiled graph. Made by `Graph.compile()`; see `run`, `stream`, `resume`, `fork`, `history`.

    >>> app = graph.compile(checkpointer="sqlite:///runs.db")  # doctest: +SKIP
    >>> app.run({"question": "why?"}, thread="t1").state  # doctest: +SKIP
    """

    def __init__(self, graph: "Graph", checkpointer: "Checkpointer | Store | str | None" = None, *,
                 interrupt_before: Iterable[str] = (), interrupt_after: Iterable[str] = (),
                 recursion_limit: int = 100) -> None:
        self.graph = graph
        self.schema = graph.schema
        self.checkpointer = (checkpointer if isinstance(checkpointer, Checkpointer) or checkpointer is None
                             else Checkpointer(checkpointer))
        self.interrupt_before = frozenset(interrupt_before)
        self.interrupt_after = frozenset(interrupt_after)
        self.recursion_limit = recursion_limit
        self._edges: dict[str, list[str]] = {}
        self._joins_from: dict[str, list[str]] = {}
        self._join_sources: dict[str, frozenset[str]] = {}
        for sources, target in graph.edges:
            if len(sources) == 1:
                self._edges.setdefault(sources[0], []).append(target)
            else:
                self._join_sources[target] = frozenset(sources)
                for source in sources:
                    self._joins_from.setdefault(source, []).append(target)
        self._shape: dict[str, Any] | None = None  # the graph as the trace viewer draws it, made once
        self._routes: dict[str, list[Any]] = {}
        for route in graph.routes:
            self._routes.setdefault(route.source, []).append(route)

    # ---- public API -------------------------------------------------------------------------------

    async def arun(self, input: Mapping[str, Any] | BaseModel | None = None, *,
                   thread: str | None = None) -> RunResult:
        """Run the graph from START on `input` and return how it ended (async)."""
        return await _last(self.astream(input, thread=thread))

    def run(self, input: Mapping[str, Any] | BaseModel | None = None, *, thread: str | None = None) -> RunResult:
        """Run the graph from START on `input` and return how it ended.

        A new thread starts from `input`; a finished thread takes `input` as an update and runs again.

        >>> app.run({"n": 1}, thread="t1").state  # doctest: +SKIP
        """
        return run_sync(self.arun(input, thread=thread))

    async def astream(self, input: Mapping[str, Any] | BaseModel | None = None, *,
                      thread: str | None = None) -> AsyncIterator[Event]:
        """The run's events as they happen, ending with the `RunResult` (async)."""
        run = await self._start(input, thread or uuid.uuid4().hex)
        async with aclosing(self._steps(run)) as steps:  # a consumer that stops early ends the run's lease now
            async for event in steps:
                yield event

    def stream(self, input: Mapping[str, Any] | BaseModel | None = None, *,
               thread: str | None = None) -> Iterator[Event]:
        """The run's events as they happen: NodeStart, NodeEnd, Checkpoint, ..., then the RunResult.

        >>> for event in app.stream({"n": 1}):  # doctest: +SKIP
        ...     print(event)
        """
        return run_sync_iter(self.astream(input, thread=thread))

    async def aresume(self, thread: str, *, value: Any = MISSING,
                      update: Mapping[str, Any] | None = None) -> RunResult:
        """Continue an interrupted, failed or crashed thread from its last checkpoint (async)."""
        return await _last(self.astream_resume(thread, value=value, update=update))

    def resume(self, thread: str, *, value: Any = MISSING, update: Mapping[str, Any] | None = None) -> RunResult:
        """Continue a thread from its last checkpoint: after an interrupt, a failure or a crash.

        `value` is what `ctx.interrupt()` returns to the nodes of the next step (and `ctx.resume`);
        `update` is merged into the state first, as a human's edit.

        >>> app.resume("t1", value="approved")  # doctest: +SKIP
        """
        return run_sync(self.aresume(thread, value=value, update=update))

    def stream_resume(self, thread: str, *, value: Any = MISSING,
                      update: Mapping[str, Any] | None = None) -> Iterator[Event]:
        """The events of `resume` as they happen."""
        return run_sync_iter(self.astream_resume(thread, value=value, update=update))

    async def astream_resume(self, thread: str, *, value: Any = MISSING,
                             update: Mapping[str, Any] | None = None) -> AsyncIterator[Event]:
        """The events of `resume` as they happen."""
        run = self._load_run(thread)
        if update is not None:
            if run.done:
                raise CheckpointError(f"thread {thread!r} has results of an unfinished step; resume it "
                                      f"without update= first")
            self._commit_update(run, "__update__", self.schema.validate_update("__update__", update), run.tasks)
        run.resumed, run.resume_value = value is not MISSING, None if value is MISSING else value
        async with aclosing(self._steps(run)) as steps:  # a consumer that stops early ends the run's lease now
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
                                   first_writes=first, status="pending")
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
                   interrupt_after=self.interrupt_after, recursion_limit=self.recursion_limit)

    # ---- starting and loading runs ----------------------------------------------------------------

    async def _start(self, input: Mapping[str, Any] | BaseModel | None, thread: str) -> _Run:
        cp = self.checkpointer
        existing = cp.thread(thread) if cp is not None else None
        if existing is not None:
            if existing.status != "done":
                raise CheckpointError(f"thread {thread!r} is {existing.status}: resume({thread!r}) continues "
                                      f"it, fork() branches from it")
            run = self._load_run(thread)
            upd = self.schema.validate_update("__input__", input if input is not None else {})
            given = self.schema.apply(run.state, [("__input__", upd)])
            tasks, joins = await self._next(run, given, run.step + 1, [START], {})
            self._commit_update(run, "__input__", upd, tasks, joins)
            return run
        if isinstance(input, self.schema.model):
            state: BaseModel = input
        else:
            try:
                state = self.schema.model.model_validate(input if input is not None else {})
            except ValueError as exc:
                raise InvalidUpdateError(f"input to {self.graph.name!r}: {exc}") from exc
        run = _Run(thread, None, state, 0, None, [], {})
        run.tasks, run.joins = tasks, joins = await self._next(run, state, 0, [START], {})
        if cp is not None:
            snapshot = state.model_dump_json()
            run.thread_id, run.checkpoint = cp.create_thread(thread, self.graph.name, snapshot=snapshot,
                                                             pending=_pending(tasks, joins))
            run.snapshot_bytes = len(snapshot)
        return run

    def _load_run(self, thread: str) -> _Run:
        cp = self._require_checkpointer("resume")
        info = self._thread(thread)
        loaded = cp.load(cp.latest(info.id))
        run = _Run(thread, info.id, self._rebuild(loaded), loaded.info.step, loaded.info.id,
                   [_Task(*t) for t in loaded.pending["tasks"]], loaded.pending["joins"],
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
        state = self.schema.model.model_validate_json(loaded.snapshot)
        by_step: dict[int, list[Write]] = {}
        for write in loaded.writes:
            by_step.setdefault(write.step, []).append(write)
        for step_writes in by_step.values():
            tasks = dict.fromkeys((w.task, w.node) for w in step_writes)
            labels = dict(zip(tasks, _labels([node for _, node in tasks]), strict=True))
            state = self.schema.apply(state, [(labels[w.task, w.node], self.schema.load_update(w.data))
                                              for w in step_writes])
        return state

    def _commit_update(self, run: _Run, node: str, update: BaseModel, tasks: list[_Task],
                       joins: dict[str, list[str]] | None = None) -> None:
        """Apply an update from outside the graph (input, a human) as a step of its own."""
        run.state = self.schema.apply(run.state, [(node, update)])
        run.step += 1
        run.tasks, run.joins = tasks, joins if joins is not None else run.joins
        self._checkpoint(run, [Write(run.step, 0, node, "update", self.schema.dump_update(update))],
                         status="running")

    # ---- the super-step loop ----------------------------------------------------------------------

    async def _steps(self, run: _Run) -> AsyncGenerator[Event, None]:
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

    def _trace(self, run: _Run) -> Span | None:
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

    async def _run_steps(self, run: _Run) -> AsyncIterator[Event]:
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
                outcome = _Outcome(dict(run.done))
                async for event in self._execute(run, step, outcome):
                    yield event
                if outcome.failures:
                    raise self._fail(run, step, outcome.failures)
                if outcome.pauses:
                    signal = outcome.pauses[0][1]
                    nodes_paused = tuple(run.tasks[i].node for i, _ in outcome.pauses)
                    for event in self._pause(run, Interrupt(step, nodes_paused, "inside", signal.payload)):
                        yield event
                    return
                labels = _labels([t.node for t in run.tasks])
                ordered = [(labels[i], u) for i in range(len(run.tasks)) for u in outcome.updates[i]]
                run.state = self.schema.apply(run.state, ordered)
                run.log.extend(u for _, u in ordered)
                ran = [t.node for t in run.tasks]
                run.step = step
                run.tasks, run.joins = await self._next(run, run.state, step, ran, run.joins)
                if run.adopt is not None:
                    outcome.unsaved.extend(self._adopt(run, run.adopt))
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
            for router in dict.fromkeys(r.router for rs in self._routes.values() for r in rs):
                if isinstance(router, Router):
                    await router.finish(run.state, run.thread)
        yield self._result(run, "done")

    async def _execute(self, run: _Run, step: int, outcome: "_Outcome") -> AsyncIterator[Event]:
        """Run the step's tasks not already done: inline if one, concurrently (sync ones in threads) if more."""
        todo = [i for i in range(len(run.tasks)) if i not in outcome.updates]
        commit_each = len(todo) > 1 and self.checkpointer is not None
        for i in todo:
            yield NodeStart(step, run.tasks[i].node, i)
        if len(todo) == 1:
            i = todo[0]
            started = asyncio.get_running_loop().time()
            try:
                result: Any = await self._call(run, step, i, in_thread=False)
            except BaseException as exc:
                result = exc
            event = self._settle(run, step, i, result, started, outcome, commit_each)
            if event is not None:
                yield event
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        running = {asyncio.ensure_future(self._call(run, step, i, in_thread=True)): i for i in todo}
        try:
            while running:
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for future in sorted(finished, key=running.__getitem__):
                    i = running.pop(future)
                    result = future.exception() or future.result()
                    event = self._settle(run, step, i, result, started, outcome, commit_each)
                    if event is not None:
                        yield event
        finally:
            for future in running:
                future.cancel()

    async def _call(self, run: _Run, step: int, i: int, *, in_thread: bool) -> list[BaseModel]:
        task = run.tasks[i]
        spec = self.graph.nodes[task.node]
        ctx = RunContext(run.thread, step, task.node, i, run.resumed, run.resume_value, self.checkpointer)
        arg = run.state if task.arg is MISSING else spec.send_arg(task.arg)
        if run.span is None:
            out = await spec.call(arg, ctx, in_thread=in_thread)
        else:  # the node's span is current inside it: an agent there records its calls under it
            with span("node", task.node, {"step": step, "task": i}, parent=run.span):
                out = await spec.call(arg, ctx, in_thread=in_thread)
        if out is None:
            return []
        if isinstance(out, _SubgraphUpdates):
            return [self.schema.validate_update(task.node, u) for u in out]
        return [self.schema.validate_update(task.node, out)]

    def _settle(self, run: _Run, step: int, i: int, result: list[BaseModel] | BaseException, started: float,
                outcome: "_Outcome", commit_each: bool) -> Event | None:
        node = run.tasks[i].node
        if isinstance(result, NodeInterrupt):
            outcome.pauses.append((i, result))
            return None
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):  # KeyboardInterrupt, cancellation: not the node's failure
                raise result
            outcome.failures.append((i, result))
            return NodeFailed(step, node, i, result)
        outcome.updates[i] = result
        writes = [Write(step, i, node, "update", self.schema.dump_update(u)) for u in result] or [
            Write(step, i, node, "update", "{}")]  # an empty update still marks the task done
        if commit_each and self.checkpointer is not None and run.thread_id is not None:
            for write in writes:
                self.checkpointer.put_write(run.thread_id, write)
        else:
            outcome.unsaved.extend(writes)
        update = {k: getattr(u, k) for u in result for k in u.model_fields_set}
        return NodeEnd(step, node, i, update, asyncio.get_running_loop().time() - started)

    def _fail(self, run: _Run, step: int, failures: list[tuple[int, Exception]]) -> NodeError:
        cp = self.checkpointer
        errors = [(run.tasks[i].node, i, exc) for i, exc in failures]
        if cp is not None and run.thread_id is not None:
            for node, i, exc in errors:
                cp.put_write(run.thread_id, Write(step, i, node, "error", _json_text(
                    {"type": type(exc).__name__, "message": str(exc)})))
            cp.set_status(run.thread_id, "error", {"step": step, "nodes": [n for n, _, _ in errors],
                                                   "error": f"{type(errors[0][2]).__name__}: {errors[0][2]}"})
        node, _, exc = errors[0]
        error = NodeError(node, step, run.thread, exc)
        error.__cause__ = exc
        return error

    def _pause(self, run: _Run, interrupt: Interrupt) -> Iterator[Event]:
        if self.checkpointer is not None and run.thread_id is not None:
            self.checkpointer.set_status(run.thread_id, "interrupted", {
                "when": interrupt.when, "nodes": list(interrupt.nodes), "step": interrupt.step,
                "payload": to_jsonable_python(interrupt.payload, fallback=repr)})
        yield interrupt
        yield self._result(run, "interrupted", interrupt)

    def _result(self, run: _Run, status: Any, interrupt: Interrupt | None = None) -> RunResult:
        return RunResult(run.thread, status, run.state, run.step, run.checkpoint, interrupt)

    def _checkpoint(self, run: _Run, unsaved: list[Write], *, status: str | None = None,
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
                                           _pending(run.tasks, run.joins), snapshot, unsaved, status, detail)

    # ---- routing ----------------------------------------------------------------------------------

    async def _next(self, run: _Run, state: BaseModel, step: int, ran: list[str],
                    joins: dict[str, list[str]]) -> tuple[list[_Task], dict[str, list[str]]]:
        """The tasks that follow the nodes `ran` when they left `state` at `step`; joins still waiting."""
        tasks: list[_Task] = []
        queued: set[str] = set()
        waiting = {target: set(sources) for target, sources in joins.items()}

        def add(node: str) -> None:
            if node != END and node not in queued:
                queued.add(node)
                tasks.append(_Task(node))

        for node in dict.fromkeys(ran):
            for target in self._edges.get(node, ()):
                add(target)
            for target in self._joins_from.get(node, ()):
                seen = waiting.setdefault(target, set())
                seen.add(node)
                if seen >= self._join_sources[target]:
                    del waiting[target]
                    add(target)
            for route in self._routes.get(node, ()):
                ctx = RouteContext(node, route.targets, run.thread, step, self, run.depth,
                                   functools.partial(self._explore, run, state, step))
                choices, decision = await route.choose(state, ctx)
                run.adopt = decision.adopt if decision.adopt is not None and run.depth == 0 else run.adopt
                run.routed.append(Routed(step, node, router_name(route.router), route.targets, tuple(
                    c.node if isinstance(c, Send) else c for c in choices), decision.scores, decision.reason))
                for choice in choices:
                    if isinstance(choice, Send):
                        tasks.append(_Task(choice.node, to_jsonable_python(choice.arg)))
                    else:
                        add(choice)
        still = {target: sorted(seen) for target, seen in waiting.items()}
        if run.adopt is not None and ([t.dump() for t in tasks] != [[run.adopt.target]] or still != joins):
            run.adopt = None  # other tasks run next step too: the branch no longer tells what happens
        return tasks, still

    def _report_routes(self, run: _Run) -> Iterator[Routed]:
        """The run's decisions made since the last report, as events and as `route` spans."""
        for routed in run.routed:
            if run.span is not None:
                run.span.child("route", routed.source, {
                    "router": routed.router, "step": routed.step, "targets": list(routed.targets),
                    "choice": list(routed.choice), "scores": routed.scores, "reason": routed.reason}).end()
            yield routed
        run.routed.clear()

    def _adopt(self, run: _Run, branch: Branch) -> list[Write]:
        """Take over `branch`: its state, step and next tasks become the run's; returns its writes to copy.

        The run's next checkpoint holds a snapshot, so it loads without the branch's checkpoints; the
        copied writes keep the thread's updates complete (a subgraph's net effect replays them).
        """
        run.adopt = None
        taken = branch.run
        assert taken is not None
        run.state, run.step, run.tasks, run.joins = taken.state, taken.step, taken.tasks, taken.joins
        run.log.extend(taken.log)
        run.delta_bytes = run.snapshot_bytes  # forces a snapshot at the next checkpoint
        cp = self.checkpointer
        if cp is None or taken.thread_id is None or run.thread_id is None:
            return []
        cp.set_status(taken.thread_id, "adopted", {"by": run.thread})
        return cp.thread_updates(taken.thread_id)

    async def _explore(self, run: _Run, state: BaseModel, step: int, target: str, steps: int) -> Branch:
        """Run `target` from `state` (reached at `step`) for up to `steps` super-steps, as a branch of `run`.

        With a checkpointer the branch is a thread forked after the run's last checkpoint, left paused
        where its steps ran out, so the viewer shows it and `resume()` continues it.
        """
        branch = _Run(f"{run.thread}~{step}.{target}.{uuid.uuid4().hex[:6]}", None, state, step, None,
                      [_Task(target)], {}, depth=run.depth + 1, stop_at=step + steps)
        cp = self.checkpointer
        if cp is not None and run.checkpoint is not None:
            parent = CheckpointInfo(run.checkpoint, run.thread, step - 1, None, (), 0.0, False)
            snapshot = state.model_dump_json()
            branch.thread_id, branch.checkpoint = cp.create_thread(
                branch.thread, self.graph.name, pending=_pending(branch.tasks, {}),
                snapshot=snapshot, parent=parent)
            branch.snapshot_bytes = len(snapshot)
        tasks, status, error = 0, "paused", None
        try:
            async for event in self._steps(branch):
                tasks += isinstance(event, NodeStart)
                if isinstance(event, RunResult) and event.status == "done":
                    status = "done"
        except (NodeError, GraphError, GraphRecursionError, InvalidUpdateError) as exc:
            status, error = "error", f"{type(exc).__name__}: {exc}"
        return Branch(target, branch.state, status, tasks,
                      branch.thread if branch.thread_id is not None else None, error, branch)

    # ---- subgraphs --------------------------------------------------------------------------------

    async def run_as_node(self, state: BaseModel, ctx: RunContext) -> _SubgraphUpdates:
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
        result = await _last(app._steps(run))
        if result.status == "interrupted":
            assert result.interrupt is not None
            raise NodeInterrupt(result.interrupt.payload)
        updates = (run.log if cp is None or run.thread_id is None else
                   [self.schema.load_update(w.data) for w in cp.thread_updates(run.thread_id)])
        return _SubgraphUpdates(
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


@dataclass
class _Outcome:
    """What the tasks of one step produced."""

    updates: dict[int, list[BaseModel]]
    unsaved: list[Write] = field(default_factory=list)
    pauses: list[tuple[int, NodeInterrupt]] = field(default_factory=list)
    failures: list[tuple[int, Exception]] = field(default_factory=list)


def _json_text(value: Any) -> str:
    """JSON text of any value, unknown objects as their repr."""
    return to_json(value, fallback=repr).decode()


def _pending(tasks: list[_Task], joins: dict[str, list[str]]) -> dict[str, Any]:
    return {"tasks": [t.dump() for t in tasks], "joins": joins}


def _labels(nodes: list[str]) -> list[str]:
    """Writer names for conflict errors: the node, or node[task] when it runs more than once."""
    counts = Counter(nodes)
    return [node if counts[node] == 1 else f"{node}[{i}]" for i, node in enumerate(nodes)]


async def _last(events: AsyncIterator[Event]) -> RunResult:
    last: Event | None = None
    async for last in events:  # noqa: B007 - only the final event, the RunResult, is wanted
        pass
    assert isinstance(last, RunResult)
    return last
