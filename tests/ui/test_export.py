"""`baobab trace export`: one self-contained HTML file that Chromium renders with the network cut off."""

import re
import subprocess
from pathlib import Path
from typing import Any

from browser import open_view


def export(ui_db: str, run: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["baobab", "trace", "export", run, "--db", ui_db, "--html", str(out)],
                          capture_output=True, text=True, timeout=60)


def test_an_exported_thread_renders_offline_with_its_diffs(page: Any, ui_db: str, tmp_path: Path,
                                                            artifacts: Path) -> None:
    out = tmp_path / "demo.html"
    done = export(ui_db, "thread:demo", out)
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html), "the file must not load anything"
    assert "static/" not in re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # every script inlined
    requests: list[str] = []
    page.route(re.compile(r"^(https?|wss?|ftp)://"), lambda route: (requests.append(route.request.url), route.abort()))
    open_view(page, out.as_uri(), "thread")
    assert requests == []
    assert page.get_by_test_id("step-row").count() == 4
    assert page.evaluate("window.viewer.cy.nodes().length") == 5
    assert page.get_by_test_id("fork-button").count() == 0  # forking needs the live app
    page.get_by_test_id("diff-a").select_option(index=0)
    page.get_by_test_id("diff-button").click()
    page.get_by_test_id("diff-row").first.wait_for()
    assert page.get_by_test_id("diff-row").count() == 2  # log appended, answer set
    page.screenshot(path=str(artifacts / "export-thread.png"), full_page=True)


def test_an_exported_search_renders_its_tree(page: Any, ui_db: str, tmp_path: Path) -> None:
    out = tmp_path / "toy.html"
    assert export(ui_db, "toy", out).returncode == 0  # a bare name: the thread or search of that name
    open_view(page, out.as_uri(), "search")
    count = page.get_by_test_id("tree-count").inner_text()
    assert count.endswith(" nodes") and page.evaluate("window.viewer.cy.nodes().length") == int(count.split()[0])


def test_an_unknown_run_is_an_error_naming_it(ui_db: str, tmp_path: Path) -> None:
    done = export(ui_db, "nope", tmp_path / "x.html")
    assert done.returncode == 1 and "'nope'" in done.stderr and not (tmp_path / "x.html").exists()
