"""Provider faults through a real OpenAI-compatible server with scripted faults (tests/fault_server.py):
streams that stall, connections reset, truncated tool calls, and retries that must not re-run tools."""

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from fault_server import FaultServer

from baobab.agents import Agent
from baobab.engine import Request
from baobab.engine.remote import RemoteError, RemoteLLM
from baobab.tools import tool

HI = [{"role": "user", "content": "hi"}]


def test_a_stream_that_stalls_mid_answer_ends_with_a_clear_error_in_bounded_time(faulty: FaultServer) -> None:
    llm = faulty.remote("stall", ["stall"], timeout=2.0)

    async def read() -> list[str]:
        seen = []
        async for chunk in llm.stream(Request(messages=HI, max_tokens=5)):
            seen.append(chunk.text)
        return seen

    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"openai/fake: the stream broke: no data for 2 s \(ReadTimeout\)"):
        asyncio.run(read())
    took = time.monotonic() - started
    assert took < 10, took  # the 2 s read timeout, not the server's 30 s silence
    assert faulty.received["stall"] == 1  # text was already sent: a broken stream is not retried


@pytest.fixture
def resetting() -> Iterator[tuple[str, list[int]]]:
    """A loopback port that accepts each connection and resets it at once (RST, no HTTP answer)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = [0]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted[0] += 1
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1", accepted
    listener.close()
    thread.join(timeout=5)


def test_reset_connections_are_retried_then_named(resetting: tuple[str, list[int]]) -> None:
    url, accepted = resetting
    llm = RemoteLLM("openai/fake", api_base=url, api_key="k", retries=2, max_wait=0.1)
    with pytest.raises(RemoteError, match=r"openai/fake: still failing after 3 attempts: .*Connection"):
        llm.complete_sync(messages=HI, max_tokens=5)
    assert llm.attempts == 3 and accepted[0] >= 3


def counter() -> tuple[list[int], object]:
    runs: list[int] = []

    @tool
    def count(n: int) -> str:
        """Count something once.

        Args:
            n: how many.
        """
        runs.append(n)
        return f"counted {n}"

    return runs, count


def test_a_retried_model_call_does_not_run_the_tool_again(faulty: FaultServer) -> None:
    runs, count = counter()
    llm = faulty.remote("agent-retry", ["tool", "500", "ok"], max_wait=0.2)
    result = Agent("worker", model=llm, tools=[count], max_steps=4).run("count once")  # type: ignore[list-item]
    assert result.output == "fine" and runs == [1]  # the tool ran once, though the model was called 3 times
    assert faulty.received["agent-retry"] == 3 and llm.attempts == 3


def test_a_truncated_tool_call_is_an_observation_and_the_tool_does_not_run(faulty: FaultServer) -> None:
    runs, count = counter()
    llm = faulty.remote("agent-truncated", ["tool-truncated", "ok"])
    result = Agent("worker", model=llm, tools=[count], max_steps=4).run("count once")  # type: ignore[list-item]
    assert result.output == "fine" and runs == []
    assert faulty.received["agent-truncated"] == 2
