"""http_get against a real HTTP server on 127.0.0.1; other hosts are refused before any connection."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from baobab.tools import Observation, Tool
from baobab.tools.http import http_get


class Handler(BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        routes = {"/hello": (200, "hello, agent"), "/big": (200, "z" * 5000), "/missing": (404, "no such page")}
        if self.path.startswith("/redirect"):
            location = "/hello" if self.path == "/redirect-here" else "http://elsewhere.invalid/hello"
            self.send_response(302)
            self.send_header("Location", location)
            self.end_headers()
            return
        status, body = routes.get(self.path, (500, "?"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def get() -> Tool:
    Handler.requests.clear()
    return http_get(["127.0.0.1"], max_bytes=1000, timeout=5)


def test_get_returns_status_and_text(get: Tool, base_url: str) -> None:
    assert get.run_sync({"url": f"{base_url}/hello"}) == Observation(tool="http_get",
                                                                     content="HTTP 200 OK\n\nhello, agent")


def test_bodies_are_cut_at_max_bytes(get: Tool, base_url: str) -> None:
    assert get.run_sync({"url": f"{base_url}/big"}).content == "HTTP 200 OK\n\n" + "z" * 1000 + \
        "\n... [cut at 1000 bytes]"


def test_http_errors_are_error_observations(get: Tool, base_url: str) -> None:
    assert get.run_sync({"url": f"{base_url}/missing"}) == Observation(
        tool="http_get", content="HTTP 404 Not Found\n\nno such page", error=True)


def test_redirects_are_followed_on_allowed_hosts_only(get: Tool, base_url: str) -> None:
    assert get.run_sync({"url": f"{base_url}/redirect-here"}).content == "HTTP 200 OK\n\nhello, agent"
    away = get.run_sync({"url": f"{base_url}/redirect-away"})
    assert away == Observation(tool="http_get", content="host 'elsewhere.invalid' is not allowed (allowed: 127.0.0.1)",
                               error=True)
    assert Handler.requests == ["/redirect-here", "/hello", "/redirect-away"]


def test_hosts_not_in_the_list_are_refused_without_a_request(get: Tool, base_url: str) -> None:
    port = base_url.rsplit(":", 1)[1]
    for url in (f"http://localhost:{port}/hello", "https://example.invalid/", "http://127.0.0.1@evil.invalid/"):
        obs = get.run_sync({"url": url})
        assert obs.error and "is not allowed (allowed: 127.0.0.1)" in obs.content
    assert get.run_sync({"url": "file:///etc/passwd"}).content == \
        "only http and https URLs can be fetched, not 'file'"
    assert Handler.requests == []


def test_wildcards_allow_subdomains_only() -> None:
    wild = http_get(["*.example.invalid"])
    assert wild.run_sync({"url": "http://badexample.invalid/"}).content == \
        "host 'badexample.invalid' is not allowed (allowed: *.example.invalid)"
    assert wild.run_sync({"url": "http://example.invalid.evil/"}).error
