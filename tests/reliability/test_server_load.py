"""`baobab serve` on the embedded model under more concurrent clients than it admits: every request is
answered (200, or 503 with Retry-After at once), none hangs or is lost, the server lives, its memory stays
bounded. Prints throughput and p99 latency. `pytest -m long` runs a longer, heavier load."""

import asyncio
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

CAPACITY = 8


@pytest.fixture(scope="module")
def small_server(port_finder: Callable[[], int], serving: Callable[..., None]) -> Iterator[tuple[str, int]]:
    port = port_finder()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(["baobab", "serve", "--model", "local:smollm2-135m", "--port", str(port),
                             "--max-pending", str(CAPACITY)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    serving(proc, f"{url}/models", timeout=120)
    yield url, proc.pid
    assert proc.poll() is None, "the server died under load"
    proc.terminate()
    proc.wait(timeout=30)


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


async def load(url: str, clients: int, seconds: float) -> tuple[Counter[str], list[float], int]:
    """`clients` loops posting small chat requests for `seconds`; statuses, latencies of the 200s, requests sent."""
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    sent = [0]
    end = time.monotonic() + seconds

    async def client(i: int) -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            while time.monotonic() < end:
                sent[0] += 1
                started = time.monotonic()
                try:
                    response = await http.post(f"{url}/chat/completions", json={
                        "model": "m", "max_tokens": 8, "temperature": 0,
                        "messages": [{"role": "user", "content": f"Say a word about the number {i}."}]})
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    continue
                if response.status_code == 200:
                    latencies.append(time.monotonic() - started)
                    assert response.json()["choices"][0]["message"]["content"] is not None
                elif response.status_code == 503:
                    assert response.headers["retry-after"] == "1" and "at capacity" in response.json()["error"][
                        "message"]
                    await asyncio.sleep(0.2)  # a polite client backs off (shorter than asked, to keep the pressure)
                statuses[str(response.status_code)] += 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    return statuses, latencies, sent[0]


def check_load(server: tuple[str, int], clients: int, seconds: float) -> None:
    url, pid = server
    asyncio.run(load(url, 2, 2))  # warm up (prefix cache, allocator) before measuring memory
    before = rss_mb(pid)
    started = time.monotonic()
    statuses, latencies, sent = asyncio.run(load(url, clients, seconds))
    took = time.monotonic() - started
    grown = rss_mb(pid) - before
    p99 = sorted(latencies)[int(0.99 * (len(latencies) - 1))] if latencies else float("nan")
    print(f"{clients} clients, {took:.1f} s: {dict(statuses)}; {len(latencies) / took:.1f} completions/s, "
          f"p99 latency {p99:.2f} s, RSS {before:.0f} MB -> +{grown:.0f} MB")
    assert set(statuses) <= {"200", "503"}, statuses  # no connection error, no timeout, no 500
    assert sum(statuses.values()) == sent  # every request answered
    assert statuses["200"] > 0 and statuses["503"] > 0  # served what it could, turned the rest away at once
    assert grown < 300, grown


def test_more_clients_than_capacity_are_served_or_turned_away_at_once(small_server: tuple[str, int]) -> None:
    check_load(small_server, clients=3 * CAPACITY, seconds=10)


@pytest.mark.long
def test_a_longer_heavier_load(small_server: tuple[str, int]) -> None:
    check_load(small_server, clients=8 * CAPACITY, seconds=45)
