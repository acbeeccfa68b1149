"""What a run reports: typed events from `stream()` and the `RunResult` of `run()`."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class NodeStart:
    """A task began: node `node` as task `task` of super-step `step`."""

    step: int
    node: str
    task: int


@dataclass(frozen=True, slots=True)
class NodeQueued:
    """A task is ready but waits for a slot: `limit` tasks (of its node, or of the run) are running."""

    step: int
    node: str
    task: int
    limit: int


@dataclass(frozen=True, slots=True)
class Token:
    """Text a model streamed inside a running node; `path` says where: node, nested nodes, then the source.

    >>> Token(("research", "writer"), "Hel").path[0]
    'research'
    """

    path: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class NodeEnd:
    """A task finished with `update` (the fields it set) after `seconds`."""

    step: int
    node: str
    task: int
    update: dict[str, Any]
    seconds: float


@dataclass(frozen=True, slots=True)
class NodeFailed:
    """A task raised `error` after its retries; the run stops and can be resumed."""

    step: int
    node: str
    task: int
    error: BaseException


@dataclass(frozen=True, slots=True)
class Routed:
    """After `step`, the router on `source` (for its task `task`) chose `choice` among `targets` (with
    `scores` and a `reason` when the router gives them)."""

    step: int
    source: str
    router: str
    targets: tuple[str, ...]
    choice: tuple[str, ...]
    scores: dict[str, float]
    reason: str | None = None
    task: int = 0


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A super-step's updates were merged into `state` and, with a checkpointer, committed as `id`."""

    step: int
    id: int | None
    state: BaseModel
    next: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Interrupt:
    """The run paused: `before`/`after` a node named in compile(), or a node called ctx.interrupt()."""

    step: int
    nodes: tuple[str, ...]
    when: Literal["before", "after", "inside"]
    payload: Any = None


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended: `done` with the final state, or `interrupted` with the pause's details."""

    thread: str
    status: Literal["done", "interrupted"]
    state: BaseModel
    step: int
    checkpoint: int | None = None
    interrupt: Interrupt | None = None


Event = NodeStart | NodeQueued | Token | NodeEnd | NodeFailed | Routed | Checkpoint | Interrupt | RunResult


async def result_of(events: AsyncIterator[Event]) -> RunResult:
    """The `RunResult` that ends a run's events, the others consumed and dropped."""
    last: Event | None = None
    async for last in events:  # noqa: B007 - only the final event, the RunResult, is wanted
        pass
    assert isinstance(last, RunResult)
    return last
