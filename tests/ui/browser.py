"""How the viewer tests drive Chromium: its path, its flags, and waiting for a view to be drawn."""

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
FIRST_RENDER_LIMIT = 2.0  # seconds: the bound for a 5,000-node tree and a 10,000-note memory


def contention() -> float:
    """How many runnable processes share each core (1 on an idle machine): the wall-clock bound scales with it,
    as a machine shared by other jobs gives the browser that fraction of a core."""
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def open_view(page: Any, url: str, ready: str, timeout_ms: float = 30_000) -> float:
    """Go to `url`, wait until the viewer drew view `ready` and painted a frame; the seconds it took."""
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_function(f"window.viewer && window.viewer.ready === {ready!r}",
                           timeout=timeout_ms)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    return time.perf_counter() - started


def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a worker thread: Playwright's sync API marks its event loop as running in this
    thread, and Baobab's sync calls (rightly) refuse to run inside a running loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args, **kwargs).result()
