"""A run in progress: the viewer shows it live and stops polling once it is done."""

import threading
from typing import Any

import scenes
from browser import open_view

from baobab.store import Store


def test_a_running_thread_updates_live_until_done(page: Any, ui_server: str, ui_db: str, artifacts: Any) -> None:
    steps, store = 6, Store(ui_db)
    app = scenes.slow_app(store, steps, pause=0.5)
    worker = threading.Thread(target=app.run, kwargs={"thread": "live"})
    worker.start()
    try:
        page.wait_for_timeout(300)  # the thread exists once its first checkpoint is committed
        open_view(page, f"{ui_server}/#/thread/live", "thread")
        assert page.get_by_test_id("live").inner_text() == "● live"
        assert page.get_by_test_id("status").first.inner_text() == "running"
        seen_first = page.get_by_test_id("step-row").count()
        assert page.evaluate("window.viewer.cy.nodes('.next').map(n => n.id())") == ["tick"]  # running now
        assert seen_first < steps + 1
        page.screenshot(path=str(artifacts / "live-running.png"), full_page=True)
        page.wait_for_function(f"document.querySelectorAll('[data-testid=step-row]').length === {steps + 1}",
                               timeout=20_000)
        page.wait_for_function("document.querySelector('[data-testid=status]').textContent === 'done'",
                               timeout=10_000)
    finally:
        worker.join()
    assert page.get_by_test_id("live").inner_text() == ""
    assert page.evaluate("window.viewer.cy.nodes('.next').length") == 0
    assert "6\N{MULTIPLICATION SIGN}" in page.evaluate("window.viewer.cy.$id('tick').data('label')")
