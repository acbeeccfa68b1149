"""Workflows and graphs offered as MCP tools, over stdio or streamable HTTP.

    baobab mcp examples/team.yaml graph.py:graph [--transport http --port 8000] [--agents]

Each target is one tool: its name is the workflow's (the YAML file's stem) or the graph's, its input schema
the workflow's inputs or the graph's state. A call runs the workflow to its end and returns the final state
(structured content) and its output as text, reporting progress as each node finishes. Runs are threads of
the checkpoint store: `thread` names one; calling again with the thread of an interrupted run (a node asked
for input, or the server died) continues it from its last checkpoint, with `resume` as the interrupt's answer.
"""

import contextlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from pydantic_core import to_jsonable_python

from baobab.agents import Workflow, pipeline
from baobab.agents.config import InputEntry
from baobab.errors import BaobabError
from baobab.graphs import App, Event, NodeEnd, RunResult
from baobab.store import Store

CONTROL: dict[str, dict[str, Any]] = {
    "thread": {"type": "string", "description": "The run's thread (default: a new one). The thread of an "
                                                "interrupted run continues it from its last checkpoint; the "
                                                "other inputs are then not used."},
    "resume": {"description": "The answer to an interrupted run's question (any JSON value); needs thread."},
}
JSON_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}
OUTPUT_SCHEMA = {"type": "object", "required": ["thread", "status", "state"], "properties": {
    "thread": {"type": "string"}, "status": {"enum": ["done", "interrupted"]}, "state": {"type": "object"},
    "interrupt": {"type": ["object", "null"], "properties": {"when": {"type": "string"},
                                                              "nodes": {"type": "array", "items": {"type": "string"}},
                                                              "payload": {}}}}}
Progress = Callable[[int, str], Awaitable[None]]  # (nodes finished so far, what finished)
log = logging.getLogger(__name__)


class OfferError(BaobabError, ValueError):
    """A target that cannot be offered as an MCP tool (a name taken twice, an input named like a control)."""


class ToolCallError(BaobabError, ValueError):
    """A call that cannot run as asked; its message goes back to the caller as the tool's error."""


@dataclass(frozen=True)
class WorkflowTool:
    """A graph offered as one MCP tool: `start` turns the tool's inputs into the run's input; `scope` wraps each
    run (a workflow's budget).

    >>> tool = graph_tool(graph.compile(checkpointer="sqlite:///runs.db"))  # doctest: +SKIP
    >>> tool.spec().input_schema["properties"]  # doctest: +SKIP
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    app: App
    start: Callable[[dict[str, Any]], dict[str, Any]]
    scope: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext

    def spec(self) -> types.Tool:
        """The tool as tools/list shows it."""
        return types.Tool(name=self.name, description=self.description, input_schema=self.input_schema,
                          output_schema=OUTPUT_SCHEMA)

    async def call(self, arguments: Mapping[str, Any], progress: Progress) -> types.CallToolResult:
        """Run (or continue) the graph to its end or its next interrupt; progress is reported per finished node."""
        inputs = dict(arguments)
        thread, resume = inputs.pop("thread", None), inputs.pop("resume", ...)
        finished, result = 0, None
        with self.scope():
            async for event in self._events(thread, resume, inputs):
                if isinstance(event, NodeEnd):
                    finished += 1
                    await progress(finished, f"step {event.step}: {event.node} done in {event.seconds:.2f} s")
                elif isinstance(event, RunResult):
                    result = event
        assert result is not None, "a run's events end with its RunResult"
        return self._result(result)

    async def _events(self, thread: Any, resume: Any, inputs: dict[str, Any]) -> AsyncIterator[Event]:
        if thread is not None and (not isinstance(thread, str) or not thread):
            raise ToolCallError(f"thread: expected a non-empty string, got {thread!r}")
        checkpointer = self.app.require_checkpointer("a tool's run")
        info = checkpointer.thread(thread) if thread is not None else None
        if info is not None and info.graph != self.app.graph.name:
            raise ToolCallError(f"thread {thread!r} is a run of {info.graph!r}, not of {self.app.graph.name!r}: "
                                f"give another thread")
        if info is not None and info.status == "running":
            raise ToolCallError(f"thread {thread!r} is running now (another call): wait for it to end")
        if info is None or info.status == "done":
            if resume is not ...:
                raise ToolCallError(f"resume: thread {thread!r} has no interrupted run to continue"
                                    if thread is not None else "resume: give the thread of the interrupted run")
            events = self.app.astream(self.start(inputs), thread=thread or uuid.uuid4().hex)
        else:
            events = self.app.astream_resume(info.name, **({} if resume is ... else {"value": resume}))
        async for event in events:
            yield event

    def _result(self, result: RunResult) -> types.CallToolResult:
        state: dict[str, Any] = to_jsonable_python(result.state, fallback=repr)
        pause = result.interrupt
        interrupt = None if pause is None else {"when": pause.when, "nodes": list(pause.nodes),
                                                "payload": to_jsonable_python(pause.payload, fallback=repr)}
        if interrupt is not None:
            text = (f"Interrupted {interrupt['when']} {', '.join(interrupt['nodes'])}"
                    + (f": {json.dumps(interrupt['payload'])}" if interrupt["payload"] is not None else "")
                    + f"\nCall {self.name} again with thread={result.thread!r} (and resume=your answer) to continue.")
        else:
            output = state.get("output")
            shown = output if isinstance(output, str) else json.dumps(output if output is not None else state)
            text = f"{shown}\n(thread {result.thread})"
        structured = {"thread": result.thread, "status": result.status, "state": state, "interrupt": interrupt}
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content=structured)


def graph_tool(app: App) -> WorkflowTool:
    """A compiled graph (with a checkpointer) as a tool whose inputs are its state's fields.

    >>> graph_tool(graph.compile(checkpointer=Store("sqlite:///runs.db"))).name  # doctest: +SKIP
    'State'
    """
    if app.checkpointer is None:
        raise OfferError(f"graph {app.graph.name!r}: compile it with a checkpointer, where its runs' threads are kept")
    model = app.schema.model
    schema = model.model_json_schema()
    own_doc = model.__doc__ if "__doc__" in vars(model) and model.__doc__ else ""
    nodes = ", ".join(app.graph.nodes)
    description = (own_doc.strip() + "\n\n" if own_doc else "") + f"Runs graph {app.graph.name} (nodes: {nodes})."
    return WorkflowTool(tool_name(app.graph.name), description, with_control(schema, app.graph.name), app,
                        lambda inputs: inputs)


def workflow_tools(workflow: Workflow, name: str, store: Store, *, agents: bool = False) -> list[WorkflowTool]:
    """A YAML workflow as a tool whose inputs are its declared inputs; with `agents`, each of its agents too (one
    tool each, named NAME.AGENT, that takes a task).

    >>> workflow_tools(await Workflow.load("examples/team.yaml"), "team", Store())[0].name  # doctest: +SKIP
    'team'
    """
    config = workflow.config
    if config.search is not None:
        raise OfferError(f"{name}: workflows with a search: section are not offered as MCP tools yet")
    flow = config.workflow
    declared = config.inputs or {"task": InputEntry(description="the task")}
    schema = {"type": "object", "properties": {n: input_schema(e) for n, e in declared.items()},
              "required": [n for n, e in declared.items() if e.default is None]}
    team = "; ".join(f"{a}: {workflow.agents[a].description}" for a in workflow.agents)
    description = flow.description or f"Runs the {flow.type} workflow {name} (agents: {team})."
    tools = [WorkflowTool(tool_name(name), description, with_control(schema, name), workflow.compile(store),
                          lambda inputs: {"task": workflow.task(inputs)}, workflow.spending)]
    for agent in workflow.agents.values() if agents else ():
        alone = pipeline([agent], name=f"{name}.{agent.name}").compile(checkpointer=store)
        task = {"type": "object", "properties": {"task": {"type": "string", "description": "What to do."}},
                "required": ["task"]}
        tools.append(WorkflowTool(tool_name(alone.graph.name), f"Agent {agent.name}: {agent.description}",
                                  with_control(task, alone.graph.name), alone, _task, workflow.spending))
    return tools


def _task(inputs: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(inputs.get("task"), str):
        raise ToolCallError(f"task: expected a string, got {inputs.get('task')!r}")
    return {"task": inputs["task"]}


def input_schema(entry: InputEntry) -> dict[str, Any]:
    """The JSON schema of one declared workflow input.

    >>> input_schema(InputEntry(type="integer", default=3, description="how many"))
    {'type': 'integer', 'description': 'how many', 'default': 3}
    """
    schema: dict[str, Any] = {"type": JSON_TYPES[entry.type]}
    if entry.description:
        schema["description"] = entry.description
    if entry.default is not None:
        schema["default"] = entry.default
    return schema


def with_control(schema: dict[str, Any], what: str) -> dict[str, Any]:
    """`schema` with the `thread` and `resume` inputs added; an input of the same name is refused."""
    taken = sorted(set(schema.get("properties", {})) & set(CONTROL))
    if taken:
        raise OfferError(f"{what}: its inputs {taken} clash with the MCP tool's own thread and resume inputs: "
                         f"rename them to offer it as a tool")
    return {**schema, "properties": {**schema.get("properties", {}), **CONTROL}}


def tool_name(name: str) -> str:
    """`name` as an MCP tool name: letters, digits, `_`, `-` and `.` (others become `_`), at most 128.

    >>> tool_name("my flow!")
    'my_flow_'
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:128] or "workflow"


def create_server(tools: Sequence[WorkflowTool]) -> Server[Any]:
    """An MCP server (the SDK's low-level one, which takes tools' schemas as given) that offers `tools`.

    >>> server = create_server([graph_tool(app)])  # doctest: +SKIP
    """
    by_name: dict[str, WorkflowTool] = {}
    for tool in tools:
        if tool.name in by_name:
            raise OfferError(f"two targets are both named {tool.name!r}: tool names must differ")
        by_name[tool.name] = tool

    async def list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                         ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[t.spec() for t in by_name.values()])

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = by_name.get(params.name)
        if tool is None:
            return _error(f"no tool named {params.name!r}; tools: {sorted(by_name)}")

        async def progress(done: int, message: str) -> None:
            await ctx.session.report_progress(done, None, message)

        try:
            return await tool.call(params.arguments or {}, progress)
        except Exception as exc:  # the caller reads why; a failed run keeps its checkpoints to resume from
            log.info("tool %s failed: %r", params.name, exc)
            thread = (params.arguments or {}).get("thread")
            hint = f"\nCall {tool.name} again with thread={thread!r} to continue from the last checkpoint." \
                if thread and not isinstance(exc, ToolCallError) else ""
            return _error(f"{exc}{hint}" if isinstance(exc, ToolCallError) else f"{type(exc).__name__}: {exc}{hint}")

    return Server("baobab", instructions="Baobab workflows: each tool runs one to its end.",
                  get_tool_input_schema=lambda name: by_name[name].input_schema if name in by_name else None,
                  on_list_tools=list_tools, on_call_tool=call_tool)


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


async def serve_mcp(apps: Sequence[App], flows: Sequence[str], *, store: Store, model: str | None = None,
                    agents: bool = False, transport: str = "stdio", host: str = "127.0.0.1", port: int = 8000,
                    on_ready: Callable[[list[str]], None] = lambda names: None) -> None:
    """Offer compiled `apps` and the YAML workflows `flows` as MCP tools until the client leaves (stdio) or the
    process is stopped (http, at http://HOST:PORT/mcp). `model` replaces the workflows' models.

    >>> run_sync(serve_mcp([app], ["team.yaml"], store=Store(), transport="http"))  # doctest: +SKIP
    """
    from baobab.agents.agent import close_shared_models

    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(close_shared_models)
        tools = [graph_tool(app) for app in apps]
        for path in flows:
            workflow = await Workflow.load(path, model=model)
            stack.push_async_callback(workflow.aclose)
            tools += workflow_tools(workflow, Path(path).stem, store, agents=agents)
        server = create_server(tools)
        on_ready([t.name for t in tools])
        if transport == "stdio":
            from mcp.server.stdio import stdio_server

            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
            return
        import uvicorn

        app = server.streamable_http_app(host=host)
        await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).serve()
