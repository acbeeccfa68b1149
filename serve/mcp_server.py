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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from pydantic_core import to_jsonable_python

from baobab.agents.agent import close_shared_models
from baobab.graphs import App, NodeEnd, RunResult
from baobab.graphs.progress import MISSING
from baobab.serve.target import InputError, OfferError, Target, graph_target, workflow_target
from baobab.store import Store

CONTROL: dict[str, dict[str, Any]] = {
    "thread": {"type": "string", "description": "The run's thread (default: a new one). The thread of an "
                                                "interrupted run continues it from its last checkpoint; the "
                                                "other inputs are then not used."},
    "resume": {"description": "The answer to an interrupted run's question (any JSON value); needs thread."},
}
OUTPUT_SCHEMA = {"type": "object", "required": ["thread", "status", "state"], "properties": {
    "thread": {"type": "string"}, "status": {"enum": ["done", "interrupted"]}, "state": {"type": "object"},
    "interrupt": {"type": ["object", "null"], "properties": {"when": {"type": "string"},
                                                              "nodes": {"type": "array", "items": {"type": "string"}},
                                                              "payload": {}}}}}
Progress = Callable[[int, str], Awaitable[None]]  # (nodes finished so far, what finished)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetTool:
    """A target offered as one MCP tool: its name as MCP spells names, its inputs with `thread` and `resume` added.

    >>> tool = TargetTool.of(graph_target(graph.compile(checkpointer="sqlite:///runs.db")))  # doctest: +SKIP
    >>> tool.spec().input_schema["properties"]  # doctest: +SKIP
    """

    target: Target
    name: str
    input_schema: dict[str, Any]

    @classmethod
    def of(cls, target: Target) -> "TargetTool":
        """`target` as a tool; OfferError if one of its inputs is named like a control input."""
        return cls(target, tool_name(target.name), with_control(target.input_schema, target.name))

    def spec(self) -> types.Tool:
        """The tool as tools/list shows it."""
        return types.Tool(name=self.name, description=self.target.description, input_schema=self.input_schema,
                          output_schema=OUTPUT_SCHEMA)

    async def call(self, arguments: Mapping[str, Any], progress: Progress) -> types.CallToolResult:
        """Run (or continue) the graph to its end or its next interrupt; progress is reported per finished node."""
        inputs = dict(arguments)
        thread, resume = inputs.pop("thread", None), inputs.pop("resume", MISSING)
        if thread is not None and (not isinstance(thread, str) or not thread):
            raise InputError(f"thread: expected a non-empty string, got {thread!r}")
        if thread is None and resume is not MISSING:
            raise InputError("resume: give the thread of the interrupted run")
        info = self.target.thread(thread) if thread is not None else None
        unfinished = info is not None and info.status != "done"
        finished, result = 0, None
        with self.target.running():
            async for event in self.target.events(thread or uuid.uuid4().hex, inputs, value=resume,
                                                  resume=unfinished or resume is not MISSING):
                if isinstance(event, NodeEnd):
                    finished += 1
                    await progress(finished, f"step {event.step}: {event.node} done in {event.seconds:.2f} s")
                elif isinstance(event, RunResult):
                    result = event
        assert result is not None, "a run's events end with its RunResult"
        return self._result(result)

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


def create_server(targets: Sequence[Target]) -> Server[Any]:
    """An MCP server (the SDK's low-level one, which takes tools' schemas as given) offering each target as a tool.

    >>> server = create_server([graph_target(app)])  # doctest: +SKIP
    """
    by_name: dict[str, TargetTool] = {}
    for tool in map(TargetTool.of, targets):
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
                if thread and not isinstance(exc, InputError) else ""
            return _error(f"{exc}{hint}" if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}{hint}")

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
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(close_shared_models)
        targets = [graph_target(app) for app in apps]
        for path in flows:
            flow = workflow_target(path, model=model, checkpointer=store)
            await flow.open()
            stack.push_async_callback(flow.aclose)
            targets += [flow, *(flow.agents() if agents else ())]
        server = create_server(targets)
        on_ready([tool_name(t.name) for t in targets])
        if transport == "stdio":
            from mcp.server.stdio import stdio_server

            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
            return
        import uvicorn

        app = server.streamable_http_app(host=host)
        await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).serve()
