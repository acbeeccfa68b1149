"""`baobab serve` on the embedded model under more concurrent clients than it admits (plain requests, streams
read to the end, streams left after their first event): every request is answered (200, or 503 with Retry-After
at once), none hangs or is lost, the server lives, its memory stays bounded, and afterwards its full capacity is
free again. Prints throughput and p99 latency. `pytest -m long` runs a longer, heavier load."""

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from baobab.engine import load_llm

CAPACITY = 8


@pytest.fixture(scope="module")
def small_server(serve_local: Callable[..., AbstractContextManager[tuple[str, int]]],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with serve_local(["--max-pending", str(CAPACITY)], tmp_path_factory.mktemp("serve") / "serve.log") as server:
        yield server


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def prompt(i: int) -> dict[str, object]:
    return {"model": "local:smollm2-135m", "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": f"Say a word about the number {i}."}]}


def turned_away(response: httpx.Response) -> bool:
    """A 503 that says why and when to come back."""
    return response.status_code == 503 and response.headers.get("retry-after") == "1" and \
        "at capacity" in response.json()["error"]["message"]


async def ask(http: httpx.AsyncClient, url: str, i: int) -> tuple[str, float]:
    """One request of client `i`'s kind: a plain completion, a stream read to its end, or a stream the
    client leaves after its first event. Its outcome and how long it took."""
    started = time.monotonic()
    kind = ("plain", "stream", "leave")[i % 3]
    try:
        if kind == "plain":
            response = await http.post(f"{url}/chat/completions", json=prompt(i))
            if response.status_code == 200:
                assert response.json()["choices"][0]["message"]["content"] is not None
                return "200", time.monotonic() - started
            return ("503" if turned_away(response) else str(response.status_code)), time.monotonic() - started
        async with http.stream("POST", f"{url}/chat/completions", json={**prompt(i), "stream": True}) as response:
            if response.status_code != 200:
                await response.aread()
                return ("503" if turned_away(response) else str(response.status_code)), time.monotonic() - started
            lines = response.aiter_lines()
            if kind == "leave":
                await anext(lines)  # the first event; then the client goes, closing the connection
                return "left", time.monotonic() - started
            events = [line async for line in lines if line.startswith("data: ")]
    except httpx.HTTPError as exc:  # a refused or dropped connection, a timeout: what must never happen
        return type(exc).__name__, time.monotonic() - started
    assert events[-1] == "data: [DONE]", events
    return "200", time.monotonic() - started


async def load(url: str, clients: int, seconds: float) -> dict[str, list[float]]:
    """`clients` loops sending requests for `seconds`; how long each took, by outcome."""
    took: dict[str, list[float]] = defaultdict(list)
    end = time.monotonic() + seconds

    async def client(i: int) -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            while time.monotonic() < end:
                outcome, spent = await ask(http, url, i)
                took[outcome].append(spent)
                if outcome == "503":
                    await asyncio.sleep(0.2)  # a polite client backs off (shorter than asked, to keep the pressure)

    await asyncio.gather(*(client(i) for i in range(clients)))
    return took


def percentile(seconds: list[float], q: float) -> float:
    return sorted(seconds)[int(q * (len(seconds) - 1))] if seconds else float("nan")


async def peak_rss_mb(pid: int, until: "asyncio.Future[object]") -> float:
    """The server's largest resident memory, sampled every 0.2 s until `until` is done."""
    peak = rss_mb(pid)
    while not until.done():
        await asyncio.sleep(0.2)
        peak = max(peak, rss_mb(pid))
    return peak


async def all_admitted(url: str, deadline: float) -> bool:
    """Whether CAPACITY requests at once are all served again before `deadline` (no place leaked)."""
    async with httpx.AsyncClient(timeout=60) as http:
        while time.monotonic() < deadline:
            answers = await asyncio.gather(*(http.post(f"{url}/chat/completions", json=prompt(i))
                                             for i in range(CAPACITY)))
            if all(a.status_code == 200 for a in answers):
                return True
            await asyncio.sleep(0.2)  # streams just left may still be giving their places back
    return False


def check_load(server: tuple[str, int], clients: int, seconds: float) -> None:
    url, pid = server
    asyncio.run(load(url, 3, 2))  # warm up (prefix cache, allocator) before measuring memory
    before = rss_mb(pid)

    async def measured() -> tuple[dict[str, list[float]], float]:
        running = asyncio.ensure_future(load(url, clients, seconds))
        peak = await peak_rss_mb(pid, running)
        return dict(await running), peak

    started = time.monotonic()
    took, peak = asyncio.run(measured())
    elapsed = time.monotonic() - started
    served, refused = took.get("200", []), took.get("503", [])
    counts = {outcome: len(times) for outcome, times in took.items()}
    print(f"{clients} clients, capacity {CAPACITY}, {elapsed:.1f} s: {counts}; "
          f"{len(served) / elapsed:.1f} completions/s, latency p50 {percentile(served, 0.5):.2f} s "
          f"p99 {percentile(served, 0.99):.2f} s, a 503 in p50 {1000 * percentile(refused, 0.5):.0f} ms "
          f"p99 {1000 * percentile(refused, 0.99):.0f} ms, RSS {before:.0f} MB, peak +{peak - before:.0f} MB")
    assert set(took) == {"200", "503", "left"}, counts  # each answered or turned away; no error, timeout or hang
    # turned away at once: a refusal waits for no generation, so it takes less than a served request
    assert percentile(refused, 0.5) < percentile(served, 0.5), (percentile(refused, 0.5), percentile(served, 0.5))
    assert peak - before < 300, peak - before
    assert asyncio.run(all_admitted(url, time.monotonic() + 20)), "places of finished or abandoned requests leaked"


def test_more_clients_than_capacity_are_served_or_turned_away_at_once(small_server: tuple[str, int]) -> None:
    check_load(small_server, clients=3 * CAPACITY, seconds=10)


def test_a_baobab_client_waits_out_a_full_server(small_server: tuple[str, int]) -> None:
    """RemoteLLM against `baobab serve` with every place taken: it waits each 503's Retry-After, and is served
    once a place frees."""
    url, _ = small_server
    long = {"model": "local:smollm2-135m", "max_tokens": 1000, "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": "Count from 1 to 1000, one number a line."}]}

    async def scenario() -> tuple[str, int, float]:
        async with httpx.AsyncClient(timeout=60) as http, contextlib.AsyncExitStack() as hogs:
            held = []  # the streams' readers: one dropped would close its connection, and give its place back
            for _ in range(CAPACITY):  # long answers hold every place; the first event says it was taken
                response = await hogs.enter_async_context(http.stream("POST", f"{url}/chat/completions", json=long))
                assert response.status_code == 200
                held.append(response.aiter_lines())
                await anext(held[-1])
            llm = load_llm(url, retries=20, max_wait=2.0)
            started = time.monotonic()
            asking = asyncio.create_task(llm.complete(messages=[{"role": "user", "content": "Say hi."}], max_tokens=4))
            deadline = time.monotonic() + 10
            while llm.attempts < 3:  # turned away twice
                assert time.monotonic() < deadline and not asking.done(), (llm.attempts, asking)
                await asyncio.sleep(0.05)
        answer = await asking  # the long answers' clients have left: their places are free again
        return answer.text, llm.attempts, time.monotonic() - started

    text, attempts, took = asyncio.run(scenario())
    print(f"served on attempt {attempts}, after {took:.1f} s")
    assert text and attempts >= 3 and took >= attempts - 1, (attempts, took)  # Retry-After: 1 before each retry


@pytest.mark.long
def test_a_longer_heavier_load(small_server: tuple[str, int]) -> None:
    check_load(small_server, clients=8 * CAPACITY, seconds=45)
