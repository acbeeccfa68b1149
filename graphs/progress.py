"""Where one thread's run stands in memory: its state, step, next tasks and waiting joins.

The store holds the same at each checkpoint (`pending()` is what it keeps of the tasks); a run loaded
from there or carried on in memory behaves the same.
"""

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from baobab.graphs.events import Routed, Token
from baobab.store.trace import Span

if TYPE_CHECKING:
    from baobab.graphs.branches import Branch

MISSING: Any = object()


@dataclass(slots=True)
class Task:
    """One run of `node` in a super-step: on the state, or on a Send's `arg`; `failure` for an error handler."""

    node: str
    arg: Any = MISSING  # a Send's input, JSON-compatible
    failure: dict[str, Any] | None = None  # what failed, when this task handles another's error

    def dump(self) -> list[Any]:
        """The task as stored with a checkpoint: [node], [node, arg] or, for a handler, [node, None, failure]."""
        if self.failure is not None:
            return [self.node, None, self.failure]
        return [self.node] if self.arg is MISSING else [self.node, self.arg]

    @classmethod
    def load(cls, stored: list[Any]) -> "Task":
        """The task `dump()` stored."""
        return cls(stored[0], failure=stored[2]) if len(stored) == 3 else cls(*stored)


@dataclass
class Run:
    """Where one thread's run stands; the store holds the same at each checkpoint."""

    thread: str
    thread_id: int | None
    state: BaseModel
    step: int
    checkpoint: int | None
    tasks: list[Task]
    joins: dict[str, list[str]]
    done: dict[int, list[BaseModel]] = field(default_factory=dict)  # tasks of step+1 already committed
    resumed: bool = False  # the first step's tasks get the resume value
    paused_before: bool = False  # the run stopped before this step's nodes, so resuming runs them
    resume_value: Any = None
    max_concurrency: int | None = None  # tasks of a step running at once (None: all)
    tokens: "asyncio.Queue[Token] | None" = None  # where nodes' streamed text goes, when the stream asks for it
    delta_bytes: int = 0
    snapshot_bytes: int = 0
    chain_length: int = 0
    log: list[BaseModel] = field(default_factory=list)  # updates applied, for a subgraph in memory
    span: Span | None = None  # the run's span, when it is recorded (a checkpointer's store)
    routed: list[Routed] = field(default_factory=list)  # decisions not yet reported
    depth: int = 0  # 1 inside a lookahead branch
    stop_at: int | None = None  # a branch pauses before running step stop_at + 1
    adopt: "Branch | None" = None  # a lookahead branch to take over after this step's routing


def pending(tasks: list[Task], joins: dict[str, list[str]]) -> dict[str, Any]:
    """What a checkpoint keeps of the tasks to run next and the joins still waiting."""
    return {"tasks": [t.dump() for t in tasks], "joins": joins}


def labels(nodes: list[str]) -> list[str]:
    """Writer names for conflict errors: the node, or node[task] when it runs more than once."""
    counts = Counter(nodes)
    return [node if counts[node] == 1 else f"{node}[{i}]" for i, node in enumerate(nodes)]
