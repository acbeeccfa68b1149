"""Nodes: what the runtime calls for a task, with its context, its retry policy and its fan-out input."""

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from baobab.graphs.errors import GraphError, NodeInterrupt

START = "__start__"
END = "__end__"


@dataclass(frozen=True)
class Send:
    """A router's order to run `node` with `arg` as its input instead of the state (map-reduce).

    `arg` must be JSON-compatible (a pydantic model, dict, list, str, number): it is stored with the
    checkpoint; a node whose first parameter is annotated gets it validated as that type.

    >>> def fan_out(state):
    ...     return [Send("summarise", doc) for doc in state.docs]
    """

    node: str
    arg: Any


@dataclass(frozen=True)
class Retry:
    """Retry a node on the exceptions in `on`, `attempts` times in all, waiting `backoff` s doubling.

    >>> Retry(on=(TimeoutError,), attempts=3)
    Retry(on=(<class 'TimeoutError'>,), attempts=3, backoff=0.1, max_backoff=10.0)
    """

    on: tuple[type[BaseException], ...]
    attempts: int = 3
    backoff: float = 0.1
    max_backoff: float = 10.0


def concurrency_limit(value: int | None, what: str) -> int | None:
    """`value` checked as a limit on tasks running at once: None (no limit) or a positive integer.

    >>> concurrency_limit(4, "max_concurrency")
    4
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise GraphError(f"{what} must be a positive integer or None, got {value!r}")
    return value


@dataclass(frozen=True)
class Failure:
    """What failed, for a node's `on_error` handler: the node, its step and task, the error's type and text.

    >>> Failure("fetch", 3, 0, "TimeoutError", "no answer in 5 s").type
    'TimeoutError'
    """

    node: str
    step: int
    task: int
    type: str
    message: str


@dataclass
class RunContext:
    """What a node may ask of the run: where it is, and `interrupt()` to pause for a human's value.

    In an `on_error` handler, `failure` says which node failed and how.
    """

    thread: str
    step: int
    node: str
    task: int
    resumed: bool = False
    resume: Any = None
    checkpointer: Any = None  # the run's Checkpointer, for subgraphs
    failure: Failure | None = None

    def interrupt(self, payload: Any = None) -> Any:
        """Pause the run showing `payload`; once resumed with `value`, the re-run node gets `value` here.

        >>> def review(state, ctx):
        ...     verdict = ctx.interrupt({"draft": state.draft})
        ...     return {"approved": verdict == "yes"}
        """
        if self.resumed:
            return self.resume
        raise NodeInterrupt(payload)


@dataclass
class NodeSpec:
    """A node of a graph: its callable and how to call it."""

    name: str
    fn: Callable[..., Any]
    retry: Retry | None = None
    writes: frozenset[str] = frozenset()
    threaded: bool = False
    on_error: str | None = None  # the node a failure goes to, after the retries
    max_concurrency: int | None = None  # tasks of this node running at once (Send fan-out waits beyond it)
    is_async: bool = field(init=False)
    takes_context: bool = field(init=False)
    arg_type: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        target = self.fn if inspect.isroutine(self.fn) else getattr(self.fn, "__call__", self.fn)  # noqa: B004
        self.is_async = inspect.iscoroutinefunction(target)
        try:
            params = [p for p in inspect.signature(self.fn, eval_str=True).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError, NameError):  # no signature to read: call with the state only
            params = []
        # a second parameter is the context unless it has a default and is not annotated as one
        self.takes_context = len(params) >= 2 and (
            params[1].default is inspect.Parameter.empty or params[1].annotation is RunContext)
        if params and params[0].annotation is not inspect.Parameter.empty:
            self.arg_type = params[0].annotation

    @cached_property
    def _arg_adapter(self) -> TypeAdapter[Any] | None:
        return None if self.arg_type is None else TypeAdapter(self.arg_type)

    def send_arg(self, arg: Any) -> Any:
        """A fan-out input as the node will get it: the same fresh or after a resume from JSON."""
        plain = to_jsonable_python(arg)
        return plain if self._arg_adapter is None else self._arg_adapter.validate_python(plain)

    async def call(self, arg: Any, ctx: RunContext, *, in_thread: bool) -> Any:
        """Run the node once, or under its retry policy; sync nodes go to a thread if `in_thread`."""
        args = (arg, ctx) if self.takes_context else (arg,)
        if self.retry is None:
            return await self._once(args, in_thread or self.threaded)
        retry = self.retry
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(retry.attempts),
            wait=wait_exponential(multiplier=retry.backoff, max=retry.max_backoff),
            retry=retry_if_exception(lambda e: isinstance(e, retry.on) and not isinstance(e, NodeInterrupt)),
            reraise=True,
        ):
            with attempt:
                return await self._once(args, in_thread or self.threaded)
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    async def _once(self, args: tuple[Any, ...], in_thread: bool) -> Any:
        if self.is_async:
            return await self.fn(*args)
        if in_thread:
            return await asyncio.to_thread(self.fn, *args)
        return self.fn(*args)
