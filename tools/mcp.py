"""Tools served by an MCP server (over stdio or streamable HTTP), usable like local tools."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, create_model

from baobab.errors import require_extra
from baobab.tools.tool import Tool, ToolError, clean_schema

if TYPE_CHECKING:  # the mcp package takes most of a second to import: only load_mcp_tools imports it
    import mcp_types
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

# MCP validates arguments on the server, against the tool's input schema; locally any object passes.
_AnyArguments: type[BaseModel] = create_model("MCPArguments", __config__=ConfigDict(extra="allow"))


class MCPTools:
    """An open connection to an MCP server and its tools; close it with `aclose()` or `async with`."""

    def __init__(self, tools: list[Tool], stop: asyncio.Event, holder: asyncio.Task[None]) -> None:
        self.tools = tools
        self._stop = stop
        self._holder = holder

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.tools)

    def __len__(self) -> int:
        return len(self.tools)

    async def aclose(self) -> None:
        """Close the connection (and stop a stdio server)."""
        self._stop.set()
        with contextlib.suppress(Exception):
            await self._holder

    async def __aenter__(self) -> MCPTools:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.aclose()


async def load_mcp_tools(*, command: list[str] | None = None, url: str | None = None,
                         env: dict[str, str] | None = None, timeout: float = 30.0) -> MCPTools:
    """Connect to an MCP server, started from `command` (stdio) or at `url` (streamable HTTP), and list its tools.

    `env` adds variables to the few a stdio server inherits (PATH, HOME, ...); `timeout` bounds each call.

    >>> async with await load_mcp_tools(command=["python", "server.py"]) as server:  # doctest: +SKIP
    ...     print(await server.tools[0].run({"a": 1, "b": 2}))
    """
    if (command is None) == (url is None):
        raise ValueError("load_mcp_tools needs exactly one of command= (stdio) or url= (streamable HTTP)")
    if command is not None and not command:
        raise ValueError("load_mcp_tools: command= is empty")
    if url is not None and env is not None:
        raise ValueError("load_mcp_tools: env= only applies to a server started with command=")
    require_extra("mcp", "MCP tools", "mcp")
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    server: StdioServerParameters | str = (
        StdioServerParameters(command=command[0], args=command[1:], env=env) if command else str(url))
    opened: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    async def hold() -> None:
        # The client's task group must be entered and left by one task: this one, for the connection's life.
        try:
            async with Client(server, read_timeout_seconds=timeout) as client:
                opened.set_result(client)
                await stop.wait()
        except BaseException as exc:
            if not opened.done():
                opened.set_exception(ConnectionError(f"could not connect to the MCP server {command or url}: "
                                                     f"{_first_error(exc)}"))
            raise

    holder = asyncio.create_task(hold())
    try:
        client = await opened
        listed = await _list_tools(client)
    except BaseException:
        stop.set()
        await asyncio.gather(holder, return_exceptions=True)
        raise
    return MCPTools([_remote_tool(client, spec, timeout, stop) for spec in listed], stop, holder)


async def _list_tools(client: Client) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor)
        tools += page.tools
        cursor = page.next_cursor
        if cursor is None:
            return tools


def _remote_tool(client: Client, spec: mcp_types.Tool, timeout: float, closed: asyncio.Event) -> Tool:
    """A local Tool whose call is a tools/call request on the server."""

    async def call(**arguments: Any) -> str:
        if closed.is_set():
            raise ToolError(f"{spec.name}: the connection to its MCP server is closed")
        result = await client.call_tool(spec.name, arguments)
        text = "\n".join(_text(part) for part in result.content)
        if result.is_error:
            raise ToolError(text or f"{spec.name} failed")
        return text

    return Tool(call, name=spec.name, description=spec.description or "", timeout=timeout, args=_AnyArguments,
                parameters=clean_schema(spec.input_schema))


def _text(part: Any) -> str:
    """A content block as text (non-text blocks are named, not inlined)."""
    if part.type == "text":
        return str(part.text)
    return f"[{part.type} content: {getattr(part, 'mime_type', None) or 'no type'}]"


def _first_error(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (anyio wraps a failed connection in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
