"""Lookahead branches: a run of the graph from a routing decision's state, and its adoption by the run.

A `LookaheadRouter` explores a branch per candidate target; when the chosen target is the step's only
next task, the run takes over that branch's progress instead of running the target again.
"""

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import BaseModel

from baobab.graphs.checkpoint import CheckpointInfo, Write
from baobab.graphs.errors import GraphError, GraphRecursionError, NodeError
from baobab.graphs.events import NodeStart, RunResult
from baobab.graphs.progress import Run, Task, pending
from baobab.graphs.state import InvalidUpdateError

if TYPE_CHECKING:
    from baobab.graphs.runtime import App


@dataclass(frozen=True)
class Branch:
    """A lookahead branch: `target` run for up to `steps` super-steps from a routing decision's state.

    It ended `done` (reached END), `paused` (its steps ran out, or an interrupt) or `error`; `thread` names
    it when the run has a checkpointer (resume it to go on), and `tasks` counts the node runs it cost.

    >>> Branch("fix", state, "paused", tasks=3).status  # doctest: +SKIP
    'paused'
    """

    target: str
    state: BaseModel
    status: str
    tasks: int
    thread: str | None = None
    error: str | None = None
    run: Run | None = field(default=None, repr=False, compare=False)  # where it stopped, to be adopted


async def explore(app: "App", run: Run, state: BaseModel, step: int, target: str, steps: int) -> Branch:
    """Run `target` from `state` (reached at `step`) for up to `steps` super-steps, as a branch of `run`.

    With a checkpointer the branch is a thread forked after the run's last checkpoint, left paused
    where its steps ran out, so the viewer shows it and `resume()` continues it.
    """
    branch = Run(f"{run.thread}~{step}.{target}.{uuid.uuid4().hex[:6]}", None, state, step, None,
                 [Task(target)], {}, depth=run.depth + 1, stop_at=step + steps)
    cp = app.checkpointer
    if cp is not None and run.checkpoint is not None:
        parent = CheckpointInfo(run.checkpoint, run.thread, step - 1, None, (), 0.0, False)
        snapshot = state.model_dump_json()
        branch.thread_id, branch.checkpoint = cp.create_thread(
            branch.thread, app.graph.name, pending=pending(branch.tasks, {}), snapshot=snapshot, parent=parent,
            fingerprint=app.schema.fingerprint)
        branch.snapshot_bytes = len(snapshot)
    tasks, status, error = 0, "paused", None
    try:
        async for event in app.steps(branch):
            tasks += isinstance(event, NodeStart)
            if isinstance(event, RunResult) and event.status == "done":
                status = "done"
    except (NodeError, GraphError, GraphRecursionError, InvalidUpdateError) as exc:
        status, error = "error", f"{type(exc).__name__}: {exc}"
    return Branch(target, branch.state, status, tasks,
                  branch.thread if branch.thread_id is not None else None, error, branch)


def adopt(app: "App", run: Run, branch: Branch) -> list[Write]:
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
    cp = app.checkpointer
    if cp is None or taken.thread_id is None or run.thread_id is None:
        return []
    cp.set_status(taken.thread_id, "adopted", {"by": run.thread})
    return cp.thread_updates(taken.thread_id)
