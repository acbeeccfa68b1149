"""A run's thread in the store: started or loaded, rebuilt from its checkpoints, committed step by step.

Without a checkpointer a run lives in memory only and these commit nothing. With one, every super-step
is one transaction, and now and then the state itself is stored (a snapshot) so a read replays few rows.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from baobab.graphs.checkpoint import LoadedCheckpoint, Write
from baobab.graphs.errors import CheckpointError, NodeError
from baobab.graphs.events import Interrupt
from baobab.graphs.node import START
from baobab.graphs.progress import Run, Task, labels, pending
from baobab.graphs.state import InvalidUpdateError
from baobab.graphs.tasks import error_write

if TYPE_CHECKING:
    from baobab.graphs.runtime import App

ROW_COST = 256  # bytes a delta row counts for when choosing snapshots: bounds the rows a read replays


async def start(app: "App", input: Mapping[str, Any] | BaseModel | None, thread: str) -> Run:
    """A new run of `thread` from `input`, or a finished thread's next run with `input` as an update."""
    cp = app.checkpointer
    existing = cp.thread(thread) if cp is not None else None
    if existing is not None:
        if existing.status != "done":
            raise CheckpointError(f"thread {thread!r} is {existing.status}: resume({thread!r}) continues "
                                  f"it, fork() branches from it")
        run = load(app, thread)
        upd = app.schema.validate_update("__input__", input if input is not None else {})
        given = app.schema.apply(run.state, [("__input__", upd)])
        tasks, joins = await app.next_tasks(run, run.step + 1, [(0, START, given)], {})
        commit_update(app, run, "__input__", upd, tasks, joins)
        return run
    if isinstance(input, app.schema.model):
        state: BaseModel = input
    else:
        try:
            state = app.schema.model.model_validate(input if input is not None else {})
        except ValueError as exc:
            raise InvalidUpdateError(f"input to {app.graph.name!r}: {exc}") from exc
    run = Run(thread, None, state, 0, None, [], {})
    run.tasks, run.joins = tasks, joins = await app.next_tasks(run, 0, [(0, START, state)], {})
    if cp is not None:
        snapshot = state.model_dump_json()
        run.thread_id, run.checkpoint = cp.create_thread(thread, app.graph.name, snapshot=snapshot,
                                                         pending=pending(tasks, joins),
                                                         fingerprint=app.schema.fingerprint)
        run.snapshot_bytes = len(snapshot)
    return run


def load(app: "App", thread: str) -> Run:
    """The run of `thread` where its last checkpoint left it, with the tasks of the next step already done."""
    cp = app.require_checkpointer("resume")
    info = app.thread_info(thread)
    cp.upgrade(info, app.schema)  # its rows in this state class's shape (the graph's migrate hook)
    loaded = cp.load(cp.latest(info.id))
    run = Run(thread, info.id, rebuild(app, loaded), loaded.info.step, loaded.info.id,
              [Task.load(t) for t in loaded.pending["tasks"]], loaded.pending["joins"],
              delta_bytes=sum(len(w.data) for w in loaded.writes), snapshot_bytes=len(loaded.snapshot),
              chain_length=loaded.chain_length)
    # an interrupt before this step's nodes was shown to a human; a crash before them was not
    run.paused_before = info.status == "interrupted" and (info.detail or {}).get("when") == "before"
    for write in cp.step_writes(info.id, run.step + 1):
        if write.kind == "update":
            run.done.setdefault(write.task, []).append(app.schema.load_update(write.data))
    cp.claim(info.id)  # running again, and this process's: a crashed owner's lease is taken over
    return run


def rebuild(app: "App", loaded: LoadedCheckpoint) -> BaseModel:
    """The state at a loaded checkpoint: its snapshot with the later steps' updates applied in task order."""
    thread = loaded.info.thread  # each row is read as the state class its thread was written with
    state = app.schema.load_state(loaded.snapshot, loaded.snapshot_fingerprint, thread)
    by_step: dict[int, list[tuple[Write, BaseModel]]] = {}
    for write, made in zip(loaded.writes, loaded.write_fingerprints, strict=True):
        by_step.setdefault(write.step, []).append((write, app.schema.load_update(write.data, made, thread)))
    for step_writes in by_step.values():
        tasks = dict.fromkeys((w.task, w.node) for w, _ in step_writes)
        names = dict(zip(tasks, labels([node for _, node in tasks]), strict=True))
        state = app.schema.apply(state, [(names[w.task, w.node], u) for w, u in step_writes])
    return state


def commit_update(app: "App", run: Run, node: str, update: BaseModel, tasks: list[Task],
                  joins: dict[str, list[str]] | None = None) -> None:
    """Apply an update from outside the graph (input, a human) as a step of its own."""
    run.state = app.schema.apply(run.state, [(node, update)])
    run.step += 1
    run.tasks, run.joins = tasks, joins if joins is not None else run.joins
    commit_step(app, run, [Write(run.step, 0, node, "update", app.schema.dump_update(update))], status="running")


def commit_step(app: "App", run: Run, unsaved: list[Write], *, status: str | None = None,
                detail: Any = None) -> None:
    """Commit the step: its writes, the checkpoint and now and then a snapshot, in one transaction."""
    cp = app.checkpointer
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


def commit_failure(app: "App", run: Run, step: int, failures: list[tuple[int, Exception]]) -> NodeError:
    """Record the step's failed tasks and the thread's error status; the error to raise (the first task's)."""
    cp = app.checkpointer
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


def commit_pause(app: "App", run: Run, interrupt: Interrupt) -> None:
    """Record that the thread paused, and where, for a human to see and resume."""
    if app.checkpointer is not None and run.thread_id is not None:
        app.checkpointer.set_status(run.thread_id, "interrupted", {
            "when": interrupt.when, "nodes": list(interrupt.nodes), "step": interrupt.step,
            "payload": to_jsonable_python(interrupt.payload, fallback=repr)})
