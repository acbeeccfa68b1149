"""An ASGI app served for real by uvicorn on a free loopback port, in a thread of the test process."""

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn


@contextlib.contextmanager
def served(make_app: Callable[[str], Any], timeout: float = 30) -> Iterator[str]:
    """Serve the app `make_app(base_url)` returns (its lifespan run) until the block ends; yields the base URL,
    `http://127.0.0.1:PORT` (an app may need it, e.g. for an A2A Agent Card)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    config = uvicorn.Config(make_app(url), host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting (see its log above)"
        assert time.monotonic() < deadline, f"the server did not start in {timeout} s"
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the server did not stop in 30 s"
