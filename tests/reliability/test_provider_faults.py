"""Provider faults through a real OpenAI-compatible server with scripted faults (tests/fault_server.py),
reached as users reach it, `load_llm("http://.../v1")`: 5xx and 429 retried with the promised waits (measured
at the server), a model that never answers, streams that stall, connections reset, bodies that are not JSON,
truncated tool calls, and retries that must not re-run tools."""

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator
from itertools import pairwise

import pytest
from fault_server import FaultServer

from baobab.agents import Agent
from baobab.engine import Request, load_llm
from baobab.engine.remote import RemoteError, RemoteLLM
from baobab.tools import tool

HI = [{"role": "user", "content": "hi"}]


def gaps(times: list[float]) -> list[float]:
    """Seconds between consecutive requests."""
    return [later - earlier for earlier, later in pairwise(times)]


def test_two_500s_then_an_answer_succeed_on_the_third_request_after_backoff(
        faulty: FaultServer, capfd: pytest.CaptureFixture[str]) -> None:
    llm = load_llm(faulty.plan("twice", ["500", "500", "ok"]))
    assert llm.complete_sync(messages=HI, max_tokens=5).text == "fine"
    waits = gaps(faulty.arrivals["twice"])
    assert len(waits) == 2 and waits[0] >= 0.5 and waits[1] >= 1.0, waits  # exponential backoff from 0.5 s
    assert "Give Feedback" not in capfd.readouterr().out  # litellm's banner: retried failures are not printed


def test_a_429_waits_its_retry_after_at_the_server(faulty: FaultServer) -> None:
    llm = load_llm(faulty.plan("rate-measured", ["429", "ok"]))
    assert llm.complete_sync(messages=HI, max_tokens=5).text == "fine"
    waits = gaps(faulty.arrivals["rate-measured"])
    assert len(waits) == 1 and 1.0 <= waits[0] < 3.0, waits  # Retry-After: 1, not the 0.5 s backoff


def test_a_stream_refused_before_its_first_byte_is_retried(faulty: FaultServer) -> None:
    llm = load_llm(faulty.plan("stream-500", ["500", "ok"]), max_wait=0.1)
    assert "".join(chunk.text for chunk in llm.stream_sync(messages=HI, max_tokens=5)) == "fine"
    assert len(faulty.arrivals["stream-500"]) == 2


def test_a_model_that_never_answers_fails_with_its_name_and_the_timeout_in_bounded_time(faulty: FaultServer) -> None:
    url = faulty.plan("silent", ["hang"])
    llm = load_llm(url, timeout=0.5, retries=2, max_wait=0.1)
    started = time.monotonic()
    with pytest.raises(RemoteError, match=rf"^{url}: still failing after 3 attempts: no data for 0.5 s \(ReadTimeout"):
        llm.complete_sync(messages=HI, max_tokens=5)
    took = time.monotonic() - started
    assert 1.5 <= took < 5.0, took  # 3 timeouts of 0.5 s and 2 waits of 0.1 s, not the server's 5 s per answer
    assert len(faulty.arrivals["silent"]) == 3


def test_a_body_that_is_not_json_ends_after_the_retry_limit_with_the_parse_error(faulty: FaultServer) -> None:
    url = faulty.plan("garbage-always", ["garbage"])
    llm = load_llm(url, max_wait=0.05)  # the default 4 retries
    with pytest.raises(RemoteError, match=rf"^{url}: still failing after 5 attempts: .*Expecting property name"):
        llm.complete_sync(messages=HI, max_tokens=5)
    assert len(faulty.arrivals["garbage-always"]) == 5


async def read(llm: RemoteLLM, seen: list[str]) -> None:
    """Stream a short answer into `seen`, chunk by chunk (what came before a failure stays there)."""
    async for chunk in llm.stream(Request(messages=HI, max_tokens=5)):
        seen.append(chunk.text)


def test_a_stream_that_stalls_mid_answer_ends_with_a_clear_error_in_bounded_time(faulty: FaultServer) -> None:
    llm = faulty.remote("stall", ["stall"], timeout=2.0)
    seen: list[str] = []
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"openai/fake: the stream broke: no data for 2 s \(ReadTimeout\)"):
        asyncio.run(read(llm, seen))
    took = time.monotonic() - started
    assert took < 10, took  # the 2 s read timeout, not the server's 30 s silence
    assert seen == ["a", "b"] and len(faulty.arrivals["stall"]) == 1  # text was sent: a broken stream is not retried


def test_a_stream_silent_before_its_first_chunk_is_retried(faulty: FaultServer) -> None:
    llm = faulty.remote("stall-first-once", ["stall-first", "ok"], timeout=0.5, max_wait=0.1)
    seen: list[str] = []
    asyncio.run(read(llm, seen))
    assert "".join(seen) == "fine" and len(faulty.arrivals["stall-first-once"]) == 2  # nothing was passed on before


def test_a_stream_that_stays_silent_fails_with_its_name_and_the_timeout_in_bounded_time(faulty: FaultServer) -> None:
    llm = faulty.remote("stall-first", ["stall-first"], timeout=0.5, retries=2, max_wait=0.1)
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"^openai/fake: still failing after 3 attempts: no data for 0.5 s "
                                          r"\(ReadTimeout\)$"):
        asyncio.run(read(llm, []))
    assert time.monotonic() - started < 5, "3 read timeouts of 0.5 s, not the server's 30 s silence"
    assert len(faulty.arrivals["stall-first"]) == 3


def test_a_stream_whose_connection_drops_mid_answer_names_the_reset(faulty: FaultServer) -> None:
    llm = faulty.remote("stream-reset", ["stream-reset"], timeout=5.0)
    seen: list[str] = []
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"^openai/fake: the stream broke: .*(reset|closed|incomplete)"):
        asyncio.run(read(llm, seen))
    assert time.monotonic() - started < 5, "a dropped connection is seen at once, not after the read timeout"
    assert seen == ["a", "b"] and len(faulty.arrivals["stream-reset"]) == 1


def test_a_chunk_that_is_not_json_breaks_the_stream_with_the_parse_error(faulty: FaultServer) -> None:
    llm = faulty.remote("stream-garbage", ["stream-garbage"])
    seen: list[str] = []
    with pytest.raises(RemoteError, match=r"^openai/fake: the stream broke: JSONDecodeError: Expecting property"):
        asyncio.run(read(llm, seen))
    assert seen == ["a"] and len(faulty.arrivals["stream-garbage"]) == 1  # no text after it, none twice


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
    listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
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
    assert len(faulty.arrivals["agent-retry"]) == 3 and llm.attempts == 3


def test_a_model_that_fails_for_good_after_a_tool_ran_ends_the_run_with_its_name(faulty: FaultServer) -> None:
    runs, count = counter()
    llm = faulty.remote("agent-down", ["tool", "500"], retries=1, max_wait=0.1)
    with pytest.raises(RemoteError, match=r"^openai/fake: still failing after 2 attempts: .*fault 500"):
        Agent("worker", model=llm, tools=[count], max_steps=4).run("count once")  # type: ignore[list-item]
    assert runs == [1] and len(faulty.arrivals["agent-down"]) == 3


def test_a_truncated_tool_call_is_an_observation_and_the_tool_does_not_run(faulty: FaultServer) -> None:
    runs, count = counter()
    llm = faulty.remote("agent-truncated", ["tool-truncated", "ok"])
    result = Agent("worker", model=llm, tools=[count], max_steps=4).run("count once")  # type: ignore[list-item]
    assert result.output == "fine" and runs == []
    assert len(faulty.arrivals["agent-truncated"]) == 2
