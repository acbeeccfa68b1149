"""What an agent reports as it works: each model call, each tool call, its answer.

Listeners registered with `listen` (a context variable, so concurrent runs keep their own) see the
events of every agent run inside the `with` block, graph nodes included; the CLI shows them live.
"""

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from baobab.engine.types import Choice, Request, ToolCall, Usage
from baobab.store.trace import Span, current, excerpt
from baobab.tools import Observation


@dataclass(frozen=True, slots=True)
class ModelCalled:
    """Step `step` of agent `agent` asked its model `request` and got `choice` (text or tool calls)."""

    agent: str
    step: int
    choice: Choice
    usage: Usage
    seconds: float
    request: Request


@dataclass(frozen=True, slots=True)
class ToolCalled:
    """A tool call of step `step` and what it returned."""

    agent: str
    step: int
    call: ToolCall
    observation: Observation
    seconds: float


@dataclass(frozen=True, slots=True)
class AgentFinished:
    """The agent answered `output` after `steps` model calls (or handed off to `handoff`)."""

    agent: str
    output: Any
    steps: int
    usage: Usage
    handoff: str | None = None


AgentEvent = ModelCalled | ToolCalled | AgentFinished
Listener = Callable[[AgentEvent], None]

_listeners: ContextVar[tuple[Listener, ...]] = ContextVar("baobab_agent_listeners", default=())


@contextlib.contextmanager
def listen(listener: Listener) -> Iterator[None]:
    """Call `listener` with every agent event inside the block.

    >>> with listen(print):  # doctest: +SKIP
    ...     agent.run("What is 2 + 2?")
    """
    token = _listeners.set((*_listeners.get(), listener))
    try:
        yield
    finally:
        _listeners.reset(token)


def emit(event: AgentEvent) -> None:
    """Send `event` to the listeners of the current context, and record it when a trace is current."""
    parent = current.get()
    if parent is not None and not isinstance(event, AgentFinished):  # the agent's own span records that one
        _record(parent, event)
    for listener in _listeners.get():
        listener(event)


def _record(parent: Span, event: ModelCalled | ToolCalled) -> None:
    """A finished model or tool call as a span under `parent`, timed back from now."""
    if isinstance(event, ModelCalled):
        choice = event.choice
        attrs: dict[str, Any] = {"step": event.step, **event.usage.model_dump(), "text": excerpt(choice.text),
                                 "tool_calls": [{"name": c.name, "arguments": excerpt(c.arguments)}
                                                for c in choice.tool_calls or ()],
                                 "finish_reason": choice.finish_reason}
        child = parent.child("model", event.agent, attrs)
        error = None
    else:
        attrs = {"step": event.step, "arguments": excerpt(event.call.arguments),
                 "result": excerpt(event.observation.content)}
        child = parent.child("tool", event.call.name, attrs)
        error = event.observation.content[:500] if event.observation.error else None
    child.started -= event.seconds
    child.end("error" if error else "ok", error)
