"""Batch runs of a YAML workflow over many inputs on any executor: one thread per input, each run to its end once.

Each input's run is a thread in the store named after the batch and the input's place, so a worker that
dies has its call retried, which resumes the thread from its last checkpoint, and running the whole batch
again reads back what finished and resumes what did not.

>>> rows = read_inputs("inputs.jsonl")  # doctest: +SKIP
>>> results = await run_workflow_batch("flow.yaml", rows, db="sqlite:///r.db", executor=RayExecutor())  # doctest: +SKIP
"""

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from baobab.agents.config import read_config
from baobab.agents.workflow import Workflow
from baobab.agents.yaml_source import ConfigError
from baobab.executors import Executor, LocalExecutor, open_store, portable_url
from baobab.graphs.batch import run_batch, run_thread
from baobab.jsonl import read_objects

_WORKFLOWS: dict[tuple[str, str | None], Workflow] = {}  # built once per process; a workflow holds no run's state


def read_inputs(path: str | Path) -> list[dict[str, Any]]:
    """The inputs of a batch: one JSON object a line (blank lines skipped); a bad line is a ConfigError naming it.

    >>> read_inputs("inputs.jsonl")  # doctest: +SKIP
    """
    return read_objects(path, ConfigError, "a JSON object of inputs")


def batch_threads(path: str | Path, rows: list[dict[str, Any]], prefix: str | None = None) -> list[str]:
    """One thread name per input: `prefix` (default: `batch-` and a digest of the workflow file and the inputs)
    and the input's number, so the same batch run again finds its threads.

    >>> batch_threads("flow.yaml", [{"a": 1}, {"a": 2}], "b1")
    ['b1-1', 'b1-2']
    """
    if prefix is None:
        digest = hashlib.sha256(json.dumps([str(Path(path).resolve()), rows], sort_keys=True).encode()).hexdigest()
        prefix = f"batch-{digest[:10]}"
    return [f"{prefix}-{i}" for i in range(1, len(rows) + 1)]


async def run_input(path: str, model: str | None, db: str, inputs: dict[str, Any], thread: str) -> dict[str, Any]:
    """One input's run of the workflow at `path`, stored as `thread` in the store at `db`, run to its end once
    (see `baobab.graphs.batch.run_thread`; a workflow with a search section searches, resumable by the name).

    Returns JSON: the thread, its status, the final state.
    """
    key = (path, model)
    if key not in _WORKFLOWS:
        _WORKFLOWS[key] = await Workflow.load(path, model=model)
    workflow, store = _WORKFLOWS[key], open_store(db)
    if workflow.config.search is not None:
        result = (await workflow.asearch(inputs, run=thread, checkpointer=store)).best
    else:
        with workflow.spending():
            result = await run_thread(workflow.compile(store), {"task": workflow.task(inputs)}, thread)
    return {"thread": result.thread, "status": result.status, "state": result.state.model_dump(mode="json")}


async def run_workflow_batch(path: str | Path, rows: list[dict[str, Any]], *, db: str,
                             executor: Executor | None = None, model: str | None = None, prefix: str | None = None,
                             concurrency: int = 32) -> list[dict[str, Any] | BaseException]:
    """Run the workflow at `path` once per input in `rows`, on `executor` (default: this process), storing each
    run in `db` (a file or PostgreSQL URL the workers can open); results in input order, a failed input's
    exception in its place (the others go on; running the batch again resumes it).

    >>> results = await run_workflow_batch("flow.yaml", [{"word": "hi"}], db="sqlite:///runs.db")  # doctest: +SKIP
    >>> results[0]["state"]["output"]  # doctest: +SKIP
    """
    workflow_path = str(Path(path).resolve())
    url = portable_url(db)
    read_config(workflow_path)  # a bad config is reported here, once, not by every worker
    task = functools.partial(run_input, workflow_path, model, url)
    return await run_batch(executor or LocalExecutor(), task, rows, batch_threads(workflow_path, rows, prefix),
                           concurrency=concurrency)


async def close_workflows() -> None:
    """Close the workflows this process loaded for batch runs (their MCP connections)."""
    workflows = list(_WORKFLOWS.values())
    _WORKFLOWS.clear()
    for workflow in workflows:
        await workflow.aclose()
