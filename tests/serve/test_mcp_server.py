"""`baobab mcp` started for real, over stdio (a subprocess the official MCP client spawns) and over streamable HTTP
(a server on a free loopback port), driven by the official client: tools and their schemas, runs with progress
notifications, interrupts answered by thread, a killed server's run resumed, and a YAML workflow on the embedded
model."""

import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from baobab.cli import load_target
from baobab.serve.mcp_server import create_server, tool_name, with_control
from baobab.serve.target import OfferError, graph_target

HERE = Path(__file__).parent
GRAPH = f"{HERE / 'mcp_graph.py'}:graph"
Notes = list[tuple[float, str | None]]


@asynccontextmanager
async def stdio_session(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    """A client session with `baobab mcp ARGS` run as a subprocess over stdio."""
    server = StdioServerParameters(command="baobab", args=["mcp", *args], env={**os.environ, **(env or {})})
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def call(session: ClientSession, arguments: dict[str, Any], name: str = "orders") -> tuple[Any, Notes]:
    """Call a tool; its result and the progress notifications it sent, as (progress, message)."""
    notes: Notes = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        notes.append((done, message))

    return await session.call_tool(name, arguments, progress_callback=progress), notes


async def check_order_tool(session: ClientSession) -> None:
    """The order graph is listed with its state's schema and runs to its end with a progress note per node."""
    (tool,) = (await session.list_tools()).tools
    assert tool.name == "orders" and tool.description is not None
    assert tool.description.startswith("Prices an order, asks a human to approve it")
    schema = tool.input_schema
    assert schema["required"] == ["item"]
    assert schema["properties"]["quantity"] == {"default": 1, "title": "Quantity", "type": "integer"}
    assert {"thread", "resume"} <= set(schema["properties"]) and schema["properties"]["thread"]["type"] == "string"
    result, notes = await call(session, {"item": "pen", "quantity": 2})
    assert not result.is_error
    state = result.structured_content["state"]
    assert result.structured_content["status"] == "done" and result.structured_content["interrupt"] is None
    assert (state["price"], state["approved"], state["log"]) == (5.0, True, ["price", "approve", "book"])
    assert result.content[0].text.startswith("booked 2 pen\n")
    assert [n for n, _ in notes] == [1, 2, 3]
    assert [m.split(" done")[0] for _, m in notes if m] == ["step 1: price", "step 2: approve", "step 3: book"]


def test_stdio_lists_and_runs_a_graph_with_progress(tmp_path: Path) -> None:
    async def main() -> None:
        async with stdio_session(GRAPH, "--db", f"sqlite:///{tmp_path / 'runs.db'}") as session:
            await check_order_tool(session)

    anyio.run(main)


def test_interrupt_answered_by_thread_and_bad_calls(tmp_path: Path) -> None:
    async def main() -> None:
        async with stdio_session(GRAPH, "--db", f"sqlite:///{tmp_path / 'runs.db'}") as session:
            paused, notes = await call(session, {"item": "bike", "quantity": 8, "thread": "order-1"})
            assert paused.structured_content["status"] == "interrupted" and len(notes) == 1
            assert paused.structured_content["interrupt"] == {
                "when": "inside", "nodes": ["approve"], "payload": {"question": "approve 8 bike for 20.0?"}}
            assert "thread='order-1'" in paused.content[0].text
            done, notes = await call(session, {"thread": "order-1", "resume": False})
            assert done.structured_content["state"]["output"] == "refused bike"
            assert done.structured_content["state"]["log"] == ["price", "approve", "book"]
            assert [m.split(" done")[0] for _, m in notes if m] == ["step 2: approve", "step 3: book"]
            again, _ = await call(session, {"thread": "order-1", "resume": True})
            assert again.is_error and "thread 'order-1' has no interrupted run" in again.content[0].text
            bad, _ = await call(session, {"item": "pen", "quantity": "many"})
            assert bad.is_error and "quantity" in bad.content[0].text and "valid integer" in bad.content[0].text
            missing, _ = await call(session, {"item": "pen"}, name="nothing")
            assert missing.is_error and "no tool named 'nothing'; tools: ['orders']" in missing.content[0].text

    anyio.run(main)


def test_a_killed_servers_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    gate, db = tmp_path / "gate", f"sqlite:///{tmp_path / 'runs.db'}"

    async def killed_mid_run() -> None:
        async with stdio_session(GRAPH, "--db", db, env={"MCP_TEST_GATE": str(gate)}) as session, \
                anyio.create_task_group() as group:
            async def run() -> None:
                with pytest.raises(MCPError, match="Connection closed"):
                    await call(session, {"item": "pen", "quantity": 2, "thread": "crash-1"})
            group.start_soon(run)
            with anyio.fail_after(60):
                while not Path(f"{gate}.pid").exists():  # `book` is running: two steps are committed
                    await anyio.sleep(0.05)
            os.kill(int(Path(f"{gate}.pid").read_text()), signal.SIGKILL)

    async def resumed() -> None:
        gate.write_text("open")
        async with stdio_session(GRAPH, "--db", db, env={"MCP_TEST_GATE": str(gate)}) as session:
            result, notes = await call(session, {"thread": "crash-1"})
            assert result.structured_content["state"]["log"] == ["price", "approve", "book"]
            assert [m.split(" done")[0] for _, m in notes if m] == ["step 3: book"]  # price and approve not rerun

    anyio.run(killed_mid_run)
    anyio.run(resumed)


def test_streamable_http(tmp_path: Path, port_finder: Callable[[], int]) -> None:
    port = port_finder()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(["baobab", "mcp", GRAPH, "--transport", "http", "--port", str(port),
                                 "--db", f"sqlite:///{tmp_path / 'runs.db'}"], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(proc, port, log)

        async def main() -> None:
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write), \
                    ClientSession(read, write) as session:
                await session.initialize()
                await check_order_tool(session)
                paused, _ = await call(session, {"item": "kayak", "quantity": 5, "thread": "h1"})
                assert paused.structured_content["status"] == "interrupted"
                done, _ = await call(session, {"thread": "h1", "resume": True})
                assert done.structured_content["state"]["output"] == "booked 5 kayak"

        anyio.run(main)
        assert proc.poll() is None, log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert f"MCP tools orders on http://127.0.0.1:{port}/mcp" in log.read_text()


def wait_for_port(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 60) -> None:
    """Wait until something listens on the loopback `port`; fail with the server's output if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert time.monotonic() < deadline, f"nothing listens on port {port} after {timeout} s:\n{log.read_text()}"
        time.sleep(0.1)


def test_yaml_workflow_on_the_embedded_model(tmp_path: Path) -> None:
    async def main() -> None:
        async with stdio_session(str(HERE / "mcp_flow.yaml"), "--agents", "--db",
                                 f"sqlite:///{tmp_path / 'runs.db'}") as session:
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert sorted(tools) == ["mcp_flow", "mcp_flow.geographer"]
            flow = tools["mcp_flow"]
            assert flow.description == "Names the capital city of a country."
            assert flow.input_schema["required"] == ["country"]
            assert flow.input_schema["properties"]["country"] == {"type": "string",
                                                                  "description": "the country's name"}
            assert tools["mcp_flow.geographer"].input_schema["required"] == ["task"]
            for country, city in [("France", "Paris"), ("Japan", "Tokyo")]:
                result, notes = await call(session, {"country": country}, name="mcp_flow")
                assert result.structured_content["state"]["output"] == {"city": city}, result
                assert result.content[0].text.startswith(f'{{"city": "{city}"}}')
                assert [m.split(" done")[0] for _, m in notes if m] == ["step 1: geographer"]
            missing, _ = await call(session, {}, name="mcp_flow")
            assert missing.is_error and "country: required" in missing.content[0].text

    anyio.run(main)


def test_names_and_clashes() -> None:
    assert tool_name("my flow/v2") == "my_flow_v2"
    with pytest.raises(OfferError, match=r"flow: its inputs \['thread'\] clash"):
        with_control({"properties": {"thread": {"type": "string"}}}, "flow")
    with pytest.raises(OfferError, match="two targets are both named 'orders'"):
        create_server([graph_target(load_target(GRAPH).compile(checkpointer="sqlite://"))] * 2)


def test_a_graph_without_a_checkpointer_is_refused() -> None:
    graph = load_target(GRAPH)
    with pytest.raises(OfferError, match="graph 'orders': compile it with a checkpointer"):
        graph_target(graph.compile())
