"""Real headless Chromium (Debian's, driven by Playwright) and `baobab ui` on a loopback port, over a store
that holds the runs of scenes.py."""

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # scenes.py and browser.py, beside this file
import scenes
from browser import ARGS, CHROMIUM, off_loop

from baobab.store import Store
from baobab.store.trace import tracer_for

ARTIFACTS = Path(os.environ.get("BAOBAB_ARTIFACTS") or Path(__file__).parents[1] / ".artifacts") / "ui"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go ($BAOBAB_ARTIFACTS/ui, else tests/.artifacts/ui)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def ui_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SQLite file with the scenes: thread `demo`, searches `toy` and `big`."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ui') / 'runs.db'}"
    def fill() -> None:
        store = Store(url)
        scenes.report_app(store).run({"task": "what is the sum of 2 and 3?"}, thread="demo")
        scenes.small_search(store)
        scenes.big_tree(store)
        scenes.solo_agent(store)
        tracer_for(store).flush()  # before close: the background writer would reopen the store
        store.close()

    off_loop(fill)
    yield url


@pytest.fixture(scope="session")
def ui_server(ui_db: str, port_finder: Callable[[], int], serving: Callable[..., None]) -> Iterator[str]:
    """`baobab ui --db ...` really started on a free loopback port; yields its base URL."""
    port = port_finder()
    proc = subprocess.Popen(["baobab", "ui", "--db", ui_db, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    serving(proc, f"{base}/api/runs")
    yield base
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's Chromium, headless, with nothing that reaches the network."""
    if not CHROMIUM.exists():
        if os.environ.get("BAOBAB_REQUIRE_POSTGRES"):  # set by .ci/run, which installs chromium
            pytest.fail(f"{CHROMIUM} not found; .ci/run installs it")
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium to run the browser tests)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object, request: pytest.FixtureRequest, artifacts: Path) -> Iterator[object]:
    """A fresh page; page errors fail the test; a screenshot of the last view is saved as NAME-end.png."""
    context = browser.new_context(viewport={"width": 1300, "height": 950})  # type: ignore[attr-defined]
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(str(exc)))
    yield tab
    tab.screenshot(path=str(artifacts / f"{request.node.name}-end.png"), full_page=True)
    context.close()
    assert not problems, problems
