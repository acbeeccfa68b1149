"""A workflow or graph as an A2A v1.0 agent, on a2a-sdk's server: an Agent Card at /.well-known/agent-card.json and
JSON-RPC at /.

A message starts a task; the task's contextId is the Baobab thread it runs on, so the tasks of one context continue
one conversation. The task streams a `working` status per node finished (the node's update as a data part), the
text the node's models stream as chunks of a `NODE-text` artifact, and ends `completed` with the final state as the
`state` data artifact (and the state's `output`, if any, as `output`). A graph interrupt ends the request
`input-required`; the next message on that task is the value the run resumes with (a data part, JSON text, or text).
A message the target cannot take as input (or one on a context whose run is going on) is `rejected`; a run that
raises is `failed`, its error in the status.

>>> routes, handler = a2a_routes(graph_target(app), "http://127.0.0.1:8000/")  # doctest: +SKIP
"""

import json
from typing import Any

from a2a.helpers import get_data_parts, get_text_parts, new_data_part, new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Message, TaskState
from a2a.utils.constants import PROTOCOL_VERSION_1_0, TransportProtocol
from pydantic_core import to_jsonable_python
from starlette.routing import BaseRoute

from baobab.agents import ConfigError
from baobab.graphs import Interrupt, NodeEnd, RunResult, Token
from baobab.serve.target import InputError, Target


def agent_card(target: Target, url: str) -> AgentCard:
    """The Agent Card of `target` served at `url` (JSON-RPC, streaming; one skill: the workflow).

    >>> agent_card(target, "http://127.0.0.1:8000").capabilities.streaming  # doctest: +SKIP
    True
    """
    takes = "; ".join(f"{name}: {what}" for name, what in target.inputs.items())
    how = (f"Send the {target.text_input} as text, or the inputs as a JSON object ({takes})." if target.text_input
           else f"Send the inputs as a JSON object ({takes}).")
    skill = AgentSkill(id=target.name, name=target.name, description=f"{target.description} {how}",
                       tags=target.tags or [target.name], examples=target.examples)
    return AgentCard(name=target.name, description=target.description, version=target.version,
                     supported_interfaces=[AgentInterface(url=url, protocol_binding=TransportProtocol.JSONRPC.value,
                                                          protocol_version=PROTOCOL_VERSION_1_0)],
                     capabilities=AgentCapabilities(streaming=True),
                     default_input_modes=["text/plain", "application/json"],
                     default_output_modes=["application/json", "text/plain"], skills=[skill])


class GraphExecutor(AgentExecutor):
    """Runs the target's graph for each A2A request and reports its events on the task."""

    def __init__(self, target: Target) -> None:
        self.target = target

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Start a run on the context's thread, or resume it when the task waits for input."""
        assert context.message is not None and context.task_id and context.context_id  # set by the request handler
        task = context.current_task
        if task is None:
            await event_queue.enqueue_event(new_task_from_user_message(context.message))
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        parts = context.message.parts
        data, text = get_data_parts(parts), "\n".join(get_text_parts(parts))
        waiting = task is not None and task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        try:
            events = self.target.events(context.context_id, data[0] if data else text, resume=waiting,
                                        value=data[0] if data else _value(text), tokens=True)
        except (InputError, ConfigError) as exc:
            await updater.reject(_say(updater, str(exc)))
            return
        await updater.start_work()
        streamed: set[str] = set()  # nodes whose text artifact has its first chunk
        try:
            with self.target.running():
                async for event in events:
                    if isinstance(event, Token):
                        await updater.add_artifact([new_text_part(event.text)], artifact_id=f"{event.path[0]}-text",
                                                   name=f"{event.path[0]} text", append=event.path[0] in streamed)
                        streamed.add(event.path[0])
                    elif isinstance(event, NodeEnd):
                        await updater.update_status(TaskState.TASK_STATE_WORKING, _say(
                            updater, f"step {event.step}: {event.node} done",
                            {"node": event.node, "step": event.step, "update": to_jsonable_python(event.update)}))
                    elif isinstance(event, RunResult):
                        await self._finish(updater, event)
        except Exception as exc:  # the run stopped: the thread keeps its last checkpoint; the client gets why
            await updater.failed(_say(updater, f"{type(exc).__name__}: {exc}"))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """The SDK has cancelled the running `execute` (the thread keeps its last checkpoint); mark the task."""
        assert context.task_id and context.context_id
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    async def _finish(self, updater: TaskUpdater, result: RunResult) -> None:
        if result.status == "interrupted":
            pause = result.interrupt
            assert pause is not None
            await updater.requires_input(_say(
                updater, f"paused {pause.when} {', '.join(pause.nodes)}: send the value to resume with", _pause(pause)))
            return
        state = result.state.model_dump(mode="json")
        await updater.add_artifact([new_data_part(state)], artifact_id="state", name="state")
        output = state.get("output")
        if output is not None:
            part = new_text_part(output) if isinstance(output, str) else new_data_part(output)
            await updater.add_artifact([part], artifact_id="output", name="output")
        await updater.complete()


def a2a_routes(target: Target, url: str) -> tuple[list[BaseRoute], DefaultRequestHandler]:
    """The card and JSON-RPC routes for `target` (JSON-RPC at `url`'s path), and their request handler, whose
    `aclose()` ends the tasks still running."""
    card = agent_card(target, url)
    handler = DefaultRequestHandler(agent_executor=GraphExecutor(target), task_store=InMemoryTaskStore(),
                                    agent_card=card)
    path = "/" + url.split("://", 1)[-1].partition("/")[2]
    return [*create_agent_card_routes(card), *create_jsonrpc_routes(handler, rpc_url=path)], handler


def _value(text: str) -> Any:
    """A resume value sent as text: JSON if it parses, else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _say(updater: TaskUpdater, text: str, data: Any = None) -> Message:
    """An agent message on the task: `text`, then `data` as a data part."""
    return updater.new_agent_message([new_text_part(text), *([new_data_part(data)] if data is not None else [])])


def _pause(pause: Interrupt) -> dict[str, Any]:
    return {"when": pause.when, "nodes": list(pause.nodes), "step": pause.step,
            "payload": to_jsonable_python(pause.payload)}
