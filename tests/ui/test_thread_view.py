"""A finished thread in the browser: graph and path taken, timeline with agent calls, node detail, diff, fork."""

from typing import Any

import scenes
from browser import off_loop, open_view

from baobab.graphs import Checkpointer
from baobab.store import Store
from baobab.ui import data
from baobab.ui.memory import memory_available


def test_the_graph_shows_every_node_and_the_path_taken(page: Any, ui_server: str) -> None:
    open_view(page, f"{ui_server}/#/thread/demo", "thread")
    cy = "window.viewer.cy"
    assert page.evaluate(f"{cy}.nodes().map(n => n.id())") == ["__start__", "plan", "research", "write", "__end__"]
    assert page.evaluate(f"{cy}.nodes('.ran').map(n => n.id())") == ["plan", "research", "write"]
    taken = page.evaluate(f"{cy}.edges('.taken').map(e => e.id())")
    assert sorted(taken) == ["__start__->plan", "plan->research", "research->write", "write->__end__"]
    assert "1\N{MULTIPLICATION SIGN}" in page.evaluate(f"{cy}.$id('research').data('label')")  # ran once, with its time
    assert page.get_by_test_id("status").first.inner_text() == "done"
    nav = page.get_by_test_id("runs").inner_text()
    assert "demo · done" in nav and "toy · mcts" in nav and "solo · ok" in nav
    assert ("notes and links" in nav) == memory_available()  # the memory view only where baobab.memory is


def test_the_timeline_has_a_row_per_step_with_model_and_tool_calls(page: Any, ui_server: str) -> None:
    open_view(page, f"{ui_server}/#/thread/demo", "thread")
    assert page.get_by_test_id("step-row").count() == 4  # the input and three nodes
    assert page.get_by_test_id("span-agent").count() == 1
    assert page.get_by_test_id("span-model").count() == 2
    tool = page.get_by_test_id("span-tool")
    assert tool.count() == 1 and 'add({"a": 2, "b": 3}) → 5' in tool.inner_text()
    assert "prompt" in page.get_by_test_id("span-model").first.inner_text()
    assert page.get_by_test_id("route").all_inner_texts() == ["<lambda> on plan → research"]  # the routing decision


def test_clicking_a_node_shows_its_runs_and_outputs(page: Any, ui_server: str, artifacts: Any) -> None:
    open_view(page, f"{ui_server}/#/thread/demo", "thread")
    page.evaluate("() => { window.viewer.cy.$id('research').emit('tap'); }")
    detail = page.get_by_test_id("node-detail")
    assert detail.get_by_test_id("node-run").count() == 1
    assert "The sum is 5." in detail.inner_text()
    page.screenshot(path=str(artifacts / "thread-node-detail.png"), full_page=True)


def test_a_checkpoint_diff_between_two_steps(page: Any, ui_server: str) -> None:
    open_view(page, f"{ui_server}/#/thread/demo", "thread")
    page.get_by_test_id("diff-a").select_option(index=1)  # after plan
    page.get_by_test_id("diff-b").select_option(index=3)  # after write
    page.get_by_test_id("diff-button").click()
    rows = page.get_by_test_id("diff-row")
    rows.first.wait_for()
    text = {rows.nth(i).locator("td").first.inner_text(): rows.nth(i).inner_text() for i in range(rows.count())}
    assert sorted(text) == ["answer", "log"]
    assert "appended" in text["log"] and "The sum is 5." in text["log"] and "plan for" not in text["log"]


def test_forking_from_the_ui_makes_a_pending_thread(page: Any, ui_server: str, ui_db: str) -> None:
    open_view(page, f"{ui_server}/#/thread/demo", "thread")
    page.get_by_test_id("fork-from").select_option(index=1)
    page.get_by_test_id("fork-update").fill('{"task": "just write"}')
    page.get_by_test_id("fork-button").click()
    link = page.get_by_test_id("fork-result").locator("a")
    link.wait_for()
    name = link.inner_text().removeprefix("new thread ")
    checkpointer = Checkpointer(ui_db)
    info, demo = checkpointer.thread(name), checkpointer.thread("demo")
    assert info is not None and demo is not None and info.status == "pending" and info.graph == "report"
    after_plan = next(c for c in checkpointer.history(demo.id, "demo") if c.step == 1)
    assert info.forked_from == after_plan.id
    link.click()  # the new thread opens in the viewer, its fork write in the timeline
    page.wait_for_url(f"**/#/thread/{name}")
    page.wait_for_function("document.querySelector('[data-testid=status]')?.innerText === 'pending'",
                           timeout=10_000)  # the old thread's view may still show for a moment
    assert page.get_by_test_id("status").first.inner_text() == "pending"
    assert "just write" in page.get_by_test_id("timeline").inner_text()
    resumed = off_loop(scenes.report_app(Store(ui_db)).resume, name)  # the fork runs on from after plan
    assert resumed.status == "done" and resumed.state.task == "just write"  # type: ignore[attr-defined]
    assert resumed.state.log == ["plan for what is the sum of 2 and 3?", "The sum is 5."]  # type: ignore[attr-defined]


def test_states_are_exact_with_the_graphs_app(ui_db: str) -> None:
    store = Store(ui_db)
    app = scenes.report_app(store)
    last = Checkpointer(store).history(Checkpointer(store).thread("demo").id, "demo")[0]  # type: ignore[union-attr]
    exact, replayed = data.state(store, last.id, {"report": app}), data.state(store, last.id)
    assert exact["exact"] and replayed["exact"] and exact["state"] == replayed["state"]
    assert exact["state"]["log"] == ["plan for what is the sum of 2 and 3?", "The sum is 5."]


def test_a_bad_fork_request_is_refused_with_its_reason(ui_server: str) -> None:
    import httpx

    answer = httpx.post(f"{ui_server}/api/fork", json={"update": {}})
    assert answer.status_code == 400 and "checkpoint" in answer.json()["error"]
    assert httpx.post(f"{ui_server}/api/fork", json={"checkpoint": 99999}).status_code == 404
    form = httpx.post(f"{ui_server}/api/fork", content='{"checkpoint": 1}', headers={"content-type": "text/plain"})
    assert form.status_code == 415  # what another site's page could send without a preflight


def test_an_agent_run_recorded_on_its_own_shows_its_calls(page: Any, ui_server: str) -> None:
    open_view(page, f"{ui_server}/#/trace/agent%3Asolo", "trace")
    assert page.get_by_test_id("span-agent").count() == 1
    assert page.get_by_test_id("span-model").count() == 2 and page.get_by_test_id("span-tool").count() == 1
    assert "agent:solo" in page.get_by_test_id("view").inner_text()
