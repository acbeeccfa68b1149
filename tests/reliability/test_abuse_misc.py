"""Issue 26, findings 4, 8, 9 and 10, each replayed against the real thing.

4: `http_get` against a real HTTP server on 127.0.0.1 that sends a nested gzip bomb (`Content-Encoding: gzip,
   gzip`, 7 KB that inflate to 3 GiB), a slow drip and slow redirects: the decoded body stops at max_bytes with
   the parent's memory and event loop untouched, and `timeout` bounds the whole fetch.
8: YAML merge keys through the real `baobab validate`.
9: corrupt, truncated and folder databases through the real `baobab` commands: one line, no traceback.
10: the real viewer app: ids out of range are 404s, foreign Host headers are refused (DNS rebinding), also by a
    started `baobab ui`.
"""

import asyncio
import gzip
import os
import socket
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel
from starlette.testclient import TestClient

from baobab.graphs import END, START, Graph
from baobab.store import Store
from baobab.tools import Observation
from baobab.tools.http import http_get
from baobab.ui import data
from baobab.ui.app import create_app

BOMB_GIB = 3


def gzip_bomb(gib: int) -> bytes:
    """`gib` GiB of zeros, gzipped, then gzipped again: a few KB (one member, its CRC and size right).

    Each MiB is deflated once and repeated (a full flush makes every MiB's deflate bytes the same)."""
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    mib = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(gib << 10):
        crc = zlib.crc32(zeros, crc)
    inner = (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + mib * (gib << 10) + deflate.flush()
             + struct.pack("<II", crc, (gib << 30) & 0xFFFFFFFF))
    return gzip.compress(inner, 9)


class Hostile(BaseHTTPRequestHandler):
    """Bombs, drips and honest compressed pages."""

    protocol_version = "HTTP/1.1"
    bomb = b""
    page = ("hello, agent " * 400).encode()

    def do_GET(self) -> None:
        if self.path == "/bomb":
            self.reply(self.bomb, "gzip, gzip")
        elif self.path == "/drip":  # a byte a second, each well within the read timeout
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.trickle(30)
        elif self.path.startswith("/slow-redirect/"):  # each hop within the read timeout, all of them not
            time.sleep(1)
            self.send_response(302)
            self.send_header("Location", f"/slow-redirect/{int(self.path.rsplit('/', 1)[1]) + 1}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/gzip":
            self.reply(gzip.compress(self.page), "gzip")
        elif self.path == "/deflate-gzip":  # gzip applied first, then deflate
            self.reply(zlib.compress(gzip.compress(self.page)), "gzip, deflate")
        elif self.path == "/members":  # two gzip members, as `cat a.gz b.gz` makes
            self.reply(gzip.compress(b"first ") + gzip.compress(b"second"), "x-gzip")
        elif self.path == "/broken":
            self.reply(b"\x1f\x8b\x08\x00 this is not deflate data at all", "gzip")
        elif self.path == "/brotli":
            self.reply(b"\x0b\x02\x80hello\x03", "br")
        elif self.path == "/accept-encoding":
            self.reply(self.headers["Accept-Encoding"].encode(), "identity")
        else:
            self.reply(b"?", "identity")

    def reply(self, body: bytes, encoding: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def trickle(self, seconds: float) -> None:
        """One byte a second until the client hangs up or `seconds` pass."""
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(1)
        except OSError:  # the client gave up: what this test wants
            return

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    Hostile.bomb = gzip_bomb(BOMB_GIB)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def rss() -> int:
    """This process's resident memory in bytes."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_nested_gzip_bomb_is_cut_at_max_bytes_without_memory_growth_or_a_stall(hostile: str) -> None:
    assert len(Hostile.bomb) < 10_000
    get = http_get(["127.0.0.1"], max_bytes=1_000_000, timeout=10)
    peak = [rss()]
    done = threading.Event()

    def sample() -> None:  # from a thread: it sees the memory even while the event loop is blocked
        while not done.is_set():
            peak.append(rss())
            time.sleep(0.002)

    async def fetch() -> tuple[Observation, float]:
        stalls = [0.0]

        async def tick() -> None:
            while True:
                before = time.perf_counter()
                await asyncio.sleep(0.005)
                stalls.append(time.perf_counter() - before - 0.005)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.05)
        observation = await get.run({"url": f"{hostile}/bomb"})
        await asyncio.sleep(0.05)  # the ticker's overdue tick measures a stall that lasted to the fetch's end
        ticker.cancel()
        return observation, max(stalls)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    try:
        observation, stall = asyncio.run(fetch())
    finally:
        done.set()
        sampler.join()
    took = time.perf_counter() - start
    growth = (max(peak) - peak[0]) / 2**20
    print(f"\nhttp_get, {len(Hostile.bomb)} B of `gzip, gzip` inflating to {BOMB_GIB} GiB: parent grew "
          f"{growth:.1f} MiB, event loop stalled at most {stall * 1000:.0f} ms, fetch took {took:.2f} s")
    assert not observation.error
    assert observation.content.startswith("HTTP 200 OK\n\n\x00\x00")
    # 1,000,000 bytes and the cut note, of which the observation keeps its first 20,000 characters
    assert observation.content.endswith("\x00\n... [980040 more characters cut]")
    assert growth < 64, growth
    assert stall < 0.25, stall


def test_the_bomb_gives_exactly_max_bytes(hostile: str) -> None:
    observation = http_get(["127.0.0.1"], max_bytes=100).run_sync({"url": f"{hostile}/bomb"})
    assert observation.content == "HTTP 200 OK\n\n" + "\x00" * 100 + "\n... [cut at 100 bytes]"


def test_a_slow_drip_ends_at_the_timeout(hostile: str) -> None:
    get = http_get(["127.0.0.1"], timeout=3)
    start = time.perf_counter()
    observation = get.run_sync({"url": f"{hostile}/drip"})
    took = time.perf_counter() - start
    print(f"\nhttp_get, a byte a second with timeout 3 s: ended after {took:.2f} s")
    assert observation == Observation(tool="http_get", content="http_get: timed out after 3 s", error=True)
    assert took < 3.5, took


def test_the_timeout_covers_the_redirects_too(hostile: str) -> None:
    start = time.perf_counter()
    observation = http_get(["127.0.0.1"], timeout=3).run_sync({"url": f"{hostile}/slow-redirect/0"})
    took = time.perf_counter() - start
    assert observation.content == "http_get: timed out after 3 s"
    assert took < 3.5, took


@pytest.mark.parametrize(("path", "content"), [
    ("/gzip", "HTTP 200 OK\n\n" + "hello, agent " * 400),
    ("/deflate-gzip", "HTTP 200 OK\n\n" + "hello, agent " * 400),
    ("/members", "HTTP 200 OK\n\nfirst second"),
])
def test_honest_compressed_pages_decode_whole(hostile: str, path: str, content: str) -> None:
    assert http_get(["127.0.0.1"], max_bytes=10_000).run_sync({"url": hostile + path}).content == content


def test_compressed_pages_are_cut_at_max_bytes_of_their_text(hostile: str) -> None:
    observation = http_get(["127.0.0.1"], max_bytes=20).run_sync({"url": f"{hostile}/deflate-gzip"})
    assert observation.content == "HTTP 200 OK\n\nhello, agent hello, \n... [cut at 20 bytes]"


def test_corrupt_or_unknown_codings_are_error_observations(hostile: str) -> None:
    get = http_get(["127.0.0.1"])
    broken = get.run_sync({"url": f"{hostile}/broken"})
    assert broken.error and broken.content.startswith("the response body is not valid gzip data (Error -3")
    assert get.run_sync({"url": f"{hostile}/brotli"}) == Observation(
        tool="http_get", content="the response's Content-Encoding 'br' cannot be decoded (gzip, deflate and "
                                 "identity can)", error=True)


def test_only_codings_it_can_bound_are_asked_for(hostile: str) -> None:
    observation = http_get(["127.0.0.1"]).run_sync({"url": f"{hostile}/accept-encoding"})
    assert observation.content == "HTTP 200 OK\n\ngzip, deflate"  # httpx adds br and zstd when installed


def baobab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed `baobab` command, as a user runs it."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(["baobab", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


MERGED = """\
agents:
  writer: &agent
    model: scripted:done
    role: writer
    max_steps: 3
  editor:
    <<: *agent
    role: editor
  critic:
    <<: [*agent, {instructions: be brief}]
    max_steps: 5
workflow:
  type: sequential
  agents: [writer, editor, critic]
"""


def test_yaml_merge_keys_are_supported(tmp_path: Path) -> None:
    (tmp_path / "team.yaml").write_text(MERGED)
    result = baobab("validate", "team.yaml", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.strip() == "team.yaml: ok (3 agents, sequential workflow)"
    from baobab.agents.yaml_source import YamlSource

    source = YamlSource.read(tmp_path / "team.yaml")
    assert source.data["agents"]["editor"] == {"model": "scripted:done", "role": "editor", "max_steps": 3}
    assert source.data["agents"]["critic"] == {"model": "scripted:done", "role": "writer", "max_steps": 5,
                                               "instructions": "be brief"}
    assert source.where(("agents", "editor", "model")) == f"{tmp_path / 'team.yaml'}:3"  # where it is written


@pytest.mark.parametrize(("text", "expected"), [
    (MERGED.replace("    role: editor\n", "    role: editor\n    max_stepz: 2\n"),
     "team.yaml:9: agents.editor.max_stepz: unknown field"),
    (MERGED.replace("  writer: &agent\n    model: scripted:done\n", "  writer: &agent\n    model: scripted:done\n"
                    "    colour: red\n"),
     "team.yaml:4: agents.writer.colour: unknown field\nteam.yaml:4: agents.editor.colour: unknown field\n"
     "team.yaml:4: agents.critic.colour: unknown field"),
    (MERGED.replace("<<: *agent", "<<: [1, 2]"), "team.yaml:7: agents.editor: `<<` merges a mapping or a list "
                                                 "of mappings, got int"),
    (MERGED.replace("  editor:\n    <<: *agent", "  editor: &loop\n    <<: *loop"),
     "team.yaml:6: agents.editor: an alias refers to a value that contains it"),
])
def test_bad_merge_keys_are_located_errors(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "team.yaml").write_text(text)
    result = baobab("validate", "team.yaml", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr.strip()) == (2, "", expected)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A database file full of random bytes, one cut short, and a folder where the file should be."""
    folder = tmp_path_factory.mktemp("damaged")
    Store(f"sqlite:///{folder / 'whole.db'}").close()
    whole = (folder / "whole.db").read_bytes()
    (folder / "noise.db").write_bytes(os.urandom(4096))
    (folder / "cut.db").write_bytes(whole[:len(whole) // 2])
    (folder / "folder.db").mkdir()
    return {"noise": folder / "noise.db", "cut": folder / "cut.db", "folder": folder / "folder.db"}


CAUSES = {
    "noise": "the file is not a SQLite database (another kind of file, or its header is damaged) (file is not a "
             "database); restore it from a backup or move it aside to start a new one",
    "cut": "the database file is corrupt or truncated (database disk image is malformed); restore it from a backup "
           "or move it aside to start a new one",
    "folder": "{path} is a folder, not a database file",
}


def one_line_error(damaged: dict[str, Path], kind: str, command: list[str], cwd: Path) -> None:
    """`baobab COMMAND --db` on the `kind` database says the file and the cause in one line, exit status 1."""
    path = damaged[kind]
    result = baobab(*command, "--db", f"sqlite:///{path}", cwd=cwd)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"error: sqlite:///{path}: {CAUSES[kind].format(path=path)}\n"


@pytest.mark.parametrize("kind", CAUSES)
def test_a_damaged_database_is_one_line_naming_the_file_and_the_cause(
        damaged: dict[str, Path], tmp_path: Path, kind: str) -> None:
    one_line_error(damaged, kind, ["threads", "list"], tmp_path)


@pytest.mark.parametrize("command", [["threads", "show", "t"], ["search", "show", "s"], ["memory", "search", "word"],
                                     ["trace", "export", "r", "--html", "out.html"], ["ui", "--port", "1"]])
def test_every_command_says_so_in_one_line(damaged: dict[str, Path], tmp_path: Path, command: list[str]) -> None:
    one_line_error(damaged, "cut", command, tmp_path)


def small_store(path: Path) -> Store:
    """A store holding thread `demo`: one run of a one-node graph."""
    class Count(BaseModel):
        n: int = 0

    graph = Graph(Count)
    graph.node("inc", lambda state: {"n": state.n + 1})
    graph.edge(START, "inc")
    graph.edge("inc", END)
    store = Store(f"sqlite:///{path}")
    graph.compile(checkpointer=store).run({"n": 1}, thread="demo")
    return store


def test_viewer_ids_that_name_nothing_are_404s(tmp_path: Path) -> None:
    client = TestClient(create_app(small_store(tmp_path / "runs.db")), base_url="http://127.0.0.1:8765")
    huge = "1" * 26
    for path, error in [(f"/api/memory/history/{huge}", f"no note '{huge}' in the memory (note ids are numbers)"),
                        (f"/api/memory/history/{2**63}", f"no note '{2**63}' in the memory (note ids are numbers)"),
                        ("/api/memory/history/5", "no note 5 in the memory"),
                        (f"/api/state/{huge}", f"no checkpoint with id {huge}"),
                        (f"/api/state/{2**63}", f"no checkpoint with id {2**63}")]:
        response = client.get(path)
        assert (response.status_code, response.json()) == (404, {"error": error}), path
    fork = client.post("/api/fork", json={"checkpoint": 10**26})
    assert (fork.status_code, fork.json()) == (404, {"error": f"no checkpoint with id {10**26}"})


def test_the_viewer_answers_only_loopback_host_names(tmp_path: Path) -> None:
    store = small_store(tmp_path / "runs.db")
    client = TestClient(create_app(store), base_url="http://127.0.0.1:8765")
    checkpoint = client.get("/api/thread/demo").json()["checkpoints"][-1]["id"]
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.evil.example", "localhost.evil.example", ""):
        refused = client.post("/api/fork", json={"checkpoint": checkpoint}, headers={"host": host})
        assert refused.status_code == 400, host
        assert refused.json() == {"error": f"host {host!r} is not served here (allowed: localhost, 127.0.0.1, "
                                           f"[::1]; `baobab ui --allow-host NAME` adds one)"}
        assert client.get("/api/runs", headers={"host": host}).status_code == 400
    assert [t["name"] for t in data.runs(store)["threads"]] == ["demo"]  # no fork was made
    for host in ("localhost", "LOCALHOST:8765", "127.0.0.1:1", "[::1]", "[::1]:8765"):
        assert client.get("/api/runs", headers={"host": host}).status_code == 200, host
    forked = client.post("/api/fork", json={"checkpoint": checkpoint}, headers={"host": "localhost:8765"})
    assert forked.status_code == 200
    configured = TestClient(create_app(store, allow_hosts=["Viewer.LAN"]), base_url="http://viewer.lan:8765")
    assert configured.get("/api/runs").status_code == 200
    assert configured.get("/api/runs", headers={"host": "evil.example"}).status_code == 400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_started_viewer_refuses_foreign_hosts_and_takes_allow_host(tmp_path: Path) -> None:
    small_store(tmp_path / "runs.db").close()
    port = free_port()
    server = subprocess.Popen(["baobab", "ui", "--db", f"sqlite:///{tmp_path / 'runs.db'}", "--port", str(port),
                               "--allow-host", "viewer.lan"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"{base}/api/runs").status_code == 200
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, server.communicate()
                time.sleep(0.2)
        assert httpx.get(f"{base}/api/runs", headers={"host": "viewer.lan:80"}).status_code == 200
        assert httpx.get(f"{base}/api/runs", headers={"host": f"evil.example:{port}"}).status_code == 400
        assert httpx.post(f"{base}/api/fork", json={"checkpoint": 1},
                          headers={"host": f"evil.example:{port}"}).status_code == 400
    finally:
        server.terminate()
        server.wait(timeout=30)
