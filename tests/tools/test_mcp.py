"""MCP servers' tools used like local tools, over stdio and over streamable HTTP on a loopback port."""

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from baobab.tools import MCPTools, Observation, load_mcp_tools

SERVER = Path(__file__).with_name("mcp_server.py")


async def exercise(server: MCPTools) -> None:
    tools = {t.name: t for t in server}
    assert sorted(tools) == ["add", "getenv", "pid", "refuse"]
    assert tools["add"].spec() == {
        "name": "add", "description": "Add two integers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                       "required": ["a", "b"]},
    }
    assert await tools["add"].run('{"a": 1, "b": 2}') == Observation(tool="add", content="3")
    bad = await tools["add"].run({"a": "x", "b": 2})
    assert bad.error and "a" in bad.content and "valid integer" in bad.content
    assert await tools["refuse"].run({"reason": "no"}) == Observation(
        tool="refuse", content="Error executing tool refuse: refused: no", error=True)


def test_stdio_server() -> None:
    async def main() -> None:
        server = await load_mcp_tools(command=[sys.executable, str(SERVER)], env={"BAOBAB_MCP_GREETING": "hi"})
        async with server:
            await exercise(server)
            getenv = next(t for t in server if t.name == "getenv")
            assert (await getenv.run({"name": "BAOBAB_MCP_GREETING"})).content == "hi"
            assert (await getenv.run({"name": "BAOBAB_TEST_SECRET"})).content == "<unset>"
            pid = int((await next(t for t in server if t.name == "pid").run({})).content)
        with pytest.raises(ProcessLookupError):  # closing stopped the server process
            os.kill(pid, 0)
        closed = await server.tools[0].run({"a": 1, "b": 2})
        assert closed == Observation(tool="add", content="add: the connection to its MCP server is closed", error=True)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BAOBAB_TEST_SECRET", "s3cret")  # a stdio server inherits only a few safe variables
        asyncio.run(main())


@pytest.fixture
def http_url() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(SERVER), "--http", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "the MCP server did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_streamable_http_server(http_url: str) -> None:
    async def main() -> None:
        async with await load_mcp_tools(url=http_url) as server:
            await exercise(server)

    asyncio.run(main())


def test_bad_arguments_and_unreachable_servers_are_clear_errors() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match=r"exactly one of command= \(stdio\) or url="):
            await load_mcp_tools()
        with pytest.raises(ValueError, match="env= only applies"):
            await load_mcp_tools(url="http://127.0.0.1:1/mcp", env={"A": "b"})
        with pytest.raises(ConnectionError, match="could not connect to the MCP server"):
            await load_mcp_tools(command=[sys.executable, "-c", "import sys; sys.exit(1)"], timeout=10)

    asyncio.run(main())
